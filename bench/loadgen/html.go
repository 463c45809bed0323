package loadgen

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
)

// WriteHTML writes a self-contained HTML page (inline SVG, no scripts, no
// external assets) with, per run, latency percentiles and throughput over
// time, followed by the text report.
func (r *Report) WriteHTML(w io.Writer) error {
	var text strings.Builder
	if err := r.WriteText(&text); err != nil {
		return err
	}
	type chart struct {
		Title   string
		Latency template.HTML
		Thru    template.HTML
	}
	var charts []chart
	for _, run := range r.Runs {
		var xs []float64
		lat := make([][]float64, 4)
		var calls, items []float64
		for _, p := range run.Series {
			xs = append(xs, p.T)
			for i, v := range []float64{p.Latency.P50, p.Latency.P90, p.Latency.P99, p.Latency.P999} {
				lat[i] = append(lat[i], v)
			}
			calls = append(calls, p.CallsPerS)
			items = append(items, p.ItemsPerS)
		}
		thru := []line{{"calls/s", "#1f77b4", calls}}
		if run.Profile == nil || run.Profile.Batch > 1 {
			thru = append(thru, line{"items/s", "#ff7f0e", items})
		}
		charts = append(charts, chart{
			Title: fmt.Sprintf("%s (%s @ %s)", run.Name, run.Target, run.Address),
			Latency: svgChart("latency (ms)", xs, []line{
				{"p50", "#2ca02c", lat[0]}, {"p90", "#1f77b4", lat[1]}, {"p99", "#ff7f0e", lat[2]}, {"p99.9", "#d62728", lat[3]},
			}),
			Thru: svgChart("throughput (per s)", xs, thru),
		})
	}
	return pageTmpl.Execute(w, struct {
		Report *Report
		Charts []chart
		Text   string
	}{r, charts, text.String()})
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>tvbench {{.Report.Command}}</title>
<style>body{font-family:sans-serif;margin:2em;max-width:1100px}pre{background:#f6f6f6;padding:1em;overflow-x:auto}
.row{display:flex;gap:1em;flex-wrap:wrap}svg{background:#fff;border:1px solid #ddd}</style></head>
<body><h1>tvbench {{.Report.Command}}</h1>
<p>{{.Report.Started.Format "2006-01-02 15:04:05 MST"}} — {{.Report.Host.CPUs}} CPUs, {{.Report.Host.CPUModel}}, {{.Report.Host.MemTotal}}</p>
{{range .Charts}}<h2>{{.Title}}</h2><div class="row">{{.Latency}}{{.Thru}}</div>{{end}}
<h2>Report</h2><pre>{{.Text}}</pre></body></html>
`))

type line struct {
	name, color string
	ys          []float64
}

// svgChart draws lines over a shared x axis (seconds), 520x300.
func svgChart(ylabel string, xs []float64, lines []line) template.HTML {
	const W, H, L, R, T, B = 520.0, 300.0, 60.0, 90.0, 20.0, 35.0
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-size="11">`, W, H)
	if len(xs) == 0 {
		b.WriteString(`<text x="20" y="40">no data</text></svg>`)
		return template.HTML(b.String())
	}
	xmax := xs[len(xs)-1]
	ymax := 0.0
	for _, l := range lines {
		for _, y := range l.ys {
			ymax = math.Max(ymax, y)
		}
	}
	ymax = niceCeil(ymax)
	px := func(x float64) float64 { return L + (W-L-R)*x/math.Max(xmax, 1e-9) }
	py := func(y float64) float64 { return H - B - (H-T-B)*y/ymax }
	// Axes and grid.
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000"/>`, L, H-B, W-R, H-B)
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000"/>`, L, T, L, H-B)
	for i := 0; i <= 4; i++ {
		y := ymax * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>`, L, py(y), W-R, py(y))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`, L-4, py(y)+4, short(y))
		x := xmax * float64(i) / 4
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%.0fs</text>`, px(x), H-B+14, x)
	}
	fmt.Fprintf(&b, `<text x="12" y="%.1f" transform="rotate(-90 12 %.1f)" text-anchor="middle">%s</text>`, (H-B+T)/2, (H-B+T)/2, template.HTMLEscapeString(ylabel))
	for i, l := range lines {
		var pts []string
		for j, y := range l.ys {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(xs[j]), py(y)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, l.color, strings.Join(pts, " "))
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="10" height="3" fill="%s"/><text x="%.1f" y="%.1f">%s</text>`,
			W-R+8, T+10+float64(i)*16, l.color, W-R+22, T+14+float64(i)*16, template.HTMLEscapeString(l.name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func short(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.3gk", v/1e3)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}
