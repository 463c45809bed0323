package loadgen

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
)

// WriteRSSSVG writes the run's server memory over time (VmRSS, RssAnon,
// RssFile in MiB, one point per -interval) as a standalone SVG chart.
//
// The SVG is written by hand (svgChart, shared with the HTML report)
// rather than with a plotting library: three polylines and two axes are
// ~40 lines, and a dependency would add code to a security project's
// module graph for a chart nobody ships.
func (r *RunResult) WriteRSSSVG(w io.Writer) error {
	var xs, rss, anon, file []float64
	for _, p := range r.Series {
		if p.RSSBytes == 0 {
			continue
		}
		xs = append(xs, p.T)
		rss = append(rss, mib(p.RSSBytes))
		anon = append(anon, mib(p.RSSAnonBytes))
		file = append(file, mib(p.RSSFileBytes))
	}
	_, err := fmt.Fprintln(w, svgChart(fmt.Sprintf("%s: server memory (MiB)", r.Name), xs, []line{
		{"VmRSS", "#1f77b4", rss}, {"RssAnon", "#d62728", anon}, {"RssFile", "#2ca02c", file},
	}))
	return err
}

// WriteRSSCSV writes the same series as CSV: seconds into the run, items
// stored so far by the run (successful items), and the three figures in
// bytes.
func (r *RunResult) WriteRSSCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"t_s", "items_ok_total", "vm_rss_bytes", "rss_anon_bytes", "rss_file_bytes"})
	var items uint64
	for _, p := range r.Series {
		items += p.Items
		if p.RSSBytes == 0 {
			continue
		}
		cw.Write([]string{strconv.FormatFloat(p.T, 'f', 1, 64), strconv.FormatUint(items, 10),
			strconv.FormatInt(p.RSSBytes, 10), strconv.FormatInt(p.RSSAnonBytes, 10), strconv.FormatInt(p.RSSFileBytes, 10)})
	}
	cw.Flush()
	return cw.Error()
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// CompareCPU adds the ratio of tokenvault's server CPU per call (and per
// item) to a baseline's, when both were measured.
func CompareCPU(tv, base *RunResult) []Ratio {
	a, b := tv.ServerCPU, base.ServerCPU
	if a == nil || b == nil || a.Error != "" || b.Error != "" || b.PerCallUS == 0 {
		return nil
	}
	out := []Ratio{{Name: fmt.Sprintf("%s cpu per call vs %s", tv.Name, base.Name), Value: a.PerCallUS / b.PerCallUS,
		Of: fmt.Sprintf("%.1f µs / %.1f µs", a.PerCallUS, b.PerCallUS)}}
	if b.PerItemUS > 0 && tv.Profile != nil && tv.Profile.Batch > 1 {
		out = append(out, Ratio{Name: fmt.Sprintf("%s cpu per item vs %s", tv.Name, base.Name), Value: a.PerItemUS / b.PerItemUS,
			Of: fmt.Sprintf("%.2f µs / %.2f µs", a.PerItemUS, b.PerItemUS)})
	}
	return out
}
