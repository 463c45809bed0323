package loadgen

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/tokenvault/tokenvault/bench/hist"
)

// Latency holds percentiles in milliseconds.
type Latency struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p99_9_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

func latencyOf(h *hist.Hist) Latency {
	return Latency{P50: ms(h.Quantile(0.5)), P90: ms(h.Quantile(0.9)), P99: ms(h.Quantile(0.99)),
		P999: ms(h.Quantile(0.999)), Max: ms(h.Max()), Mean: h.Mean() / 1e6}
}

// OpResult is the outcome of one operation (or all of a run).
type OpResult struct {
	Calls     uint64  `json:"calls"`
	OKCalls   uint64  `json:"ok_calls"`
	Items     uint64  `json:"items_ok"`
	CallsPerS float64 `json:"calls_per_s"`
	// ItemsPerS counts items (fields, tokens, blobs) of successful calls
	// that succeeded themselves.
	ItemsPerS float64 `json:"items_per_s"`
	// Errors counts failed calls by gRPC code (or "HTTP nnn" for Vault).
	Errors map[string]uint64 `json:"errors"`
	// ItemErrors counts failed items inside successful batch calls.
	ItemErrors map[string]uint64 `json:"item_errors"`
	// Latency is over successful calls.
	Latency Latency `json:"latency"`
}

func opResult(s *opStats, elapsed float64) *OpResult {
	errs := sum(s.errs)
	return &OpResult{Calls: s.calls, OKCalls: s.calls - errs, Items: s.items,
		CallsPerS: float64(s.calls-errs) / elapsed, ItemsPerS: float64(s.items) / elapsed,
		Errors: maps.Clone(s.errs), ItemErrors: maps.Clone(s.itemErrs), Latency: latencyOf(&s.lat)}
}

// Point is one interval of the time series.
type Point struct {
	T         float64 `json:"t_s"` // end of the interval, seconds into the measured window
	Calls     uint64  `json:"calls"`
	Items     uint64  `json:"items_ok"`
	CallsPerS float64 `json:"calls_per_s"` // successful calls
	ItemsPerS float64 `json:"items_per_s"`
	Errors    uint64  `json:"errors"`
	Latency   Latency `json:"latency"`
	RSSBytes  int64   `json:"rss_bytes,omitempty"`
	// RSSAnonBytes and RSSFileBytes split RSSBytes (RssAnon, RssFile).
	RSSAnonBytes int64 `json:"rss_anon_bytes,omitempty"`
	RSSFileBytes int64 `json:"rss_file_bytes,omitempty"`
}

// RunResult is one measured run against one target.
type RunResult struct {
	Name    string  `json:"name"`
	Target  string  `json:"target"` // tokenvault, echo, vault-transit
	Address string  `json:"address"`
	Ops     []Op    `json:"ops"`
	Setup   float64 `json:"setup_s"`
	Elapsed float64 `json:"elapsed_s"`
	OpResult
	// Dropped counts open-loop calls not sent because every worker was
	// busy (the target fell behind the rate).
	Dropped     uint64           `json:"dropped"`
	PerOp       map[Op]*OpResult `json:"per_op"`
	Series      []Point          `json:"series"`
	MaxRSSBytes int64            `json:"max_rss_bytes,omitempty"`
	// MaxRSSAnonBytes is the largest anonymous share sampled (RssAnon).
	MaxRSSAnonBytes int64 `json:"max_rss_anon_bytes,omitempty"`
	// ServerCPU is the servers' CPU in the measured window (nil: not asked).
	ServerCPU *ServerCPU `json:"server_cpu,omitempty"`
	// DBCPU is the database server's CPU in the same window (nil: not
	// asked), per call of the target.
	DBCPU   *ServerCPU         `json:"db_cpu,omitempty"`
	Profile *ProfileSummary    `json:"profile,omitempty"`
	Extra   map[string]float64 `json:"extra,omitempty"`
}

// ProfileSummary is the load profile as reported.
type ProfileSummary struct {
	Mode        string         `json:"mode"` // closed-loop or open-loop
	Concurrency int            `json:"concurrency"`
	Rate        float64        `json:"rate_per_s,omitempty"`
	Duration    float64        `json:"duration_s"`
	Warmup      float64        `json:"warmup_s"`
	MaxRequests int64          `json:"max_requests,omitempty"`
	Mix         map[Op]float64 `json:"mix"`
	Batch       int            `json:"batch"`
	Subjects    int            `json:"subjects"`
	Kinds       []string       `json:"kinds"`
	Pool        int            `json:"pool"`
	Connections int            `json:"connections"`
	Timeout     float64        `json:"timeout_s"`
}

// Summary describes p for reports.
func (p *Profile) Summary() *ProfileSummary {
	s := &ProfileSummary{Mode: "closed-loop", Concurrency: p.Concurrency, Rate: p.Rate,
		Duration: p.Duration.Seconds(), Warmup: p.Warmup.Seconds(), MaxRequests: p.MaxRequests,
		Mix: p.Mix, Batch: p.Batch, Subjects: p.Subjects, Pool: p.Pool, Connections: p.Connections,
		Timeout: p.Timeout.Seconds()}
	if p.Rate > 0 {
		s.Mode = "open-loop"
	}
	for _, k := range p.Kinds {
		s.Kinds = append(s.Kinds, k.String())
	}
	return s
}

// Ratio compares tokenvault with a baseline.
type Ratio struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	// What is divided by what, in words.
	Of string `json:"of"`
}

// Check is one of the performance targets (tvbench targets).
type Check struct {
	Name      string  `json:"name"`
	Target    string  `json:"target"` // e.g. ">= 0.5"
	Measured  float64 `json:"measured"`
	Met       bool    `json:"met"`
	Margin    string  `json:"margin"`
	Explained string  `json:"explained"`
	// Status is MET, NOT MET or NOT MEASURED (then Reason says why, and
	// Measured, Met and Margin are empty).
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// Check statuses.
const (
	StatusMet         = "MET"
	StatusNotMet      = "NOT MET"
	StatusNotMeasured = "NOT MEASURED"
)

// Host describes the machine the load generator ran on.
type Host struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model,omitempty"`
	MemTotal  string `json:"mem_total,omitempty"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
}

// HostInfo reads the local machine's description.
func HostInfo() Host {
	h := Host{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	h.CPUModel = procField("/proc/cpuinfo", "model name")
	h.MemTotal = procField("/proc/meminfo", "MemTotal")
	return h
}

func procField(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Report is everything one tvbench invocation measured.
type Report struct {
	Tool    string       `json:"tool"`
	Command string       `json:"command"`
	Started time.Time    `json:"started"`
	Host    Host         `json:"host"`
	Runs    []*RunResult `json:"runs"`
	Ratios  []Ratio      `json:"ratios"`
	Checks  []Check      `json:"targets,omitempty"`
	Notes   []string     `json:"notes,omitempty"`
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes a human-readable summary.
func (r *Report) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "tvbench %s — %s, %d CPUs (%s), %s\n", r.Command, r.Started.Format(time.RFC3339), r.Host.CPUs, r.Host.CPUModel, r.Host.MemTotal)
	for _, run := range r.Runs {
		fmt.Fprintf(bw, "\n== %s (%s @ %s)", run.Name, run.Target, run.Address)
		if p := run.Profile; p != nil {
			fmt.Fprintf(bw, "  %s c=%d", p.Mode, p.Concurrency)
			if p.Rate > 0 {
				fmt.Fprintf(bw, " rate=%.0f/s", p.Rate)
			}
			fmt.Fprintf(bw, " batch=%d conns=%d d=%.0fs", p.Batch, p.Connections, p.Duration)
		}
		fmt.Fprintln(bw)
		fmt.Fprintf(bw, "  %-11s %9s %11s %11s %9s %9s %9s %9s %9s  %s\n", "op", "calls", "calls/s", "items/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "errors")
		line := func(name string, o *OpResult) {
			l := o.Latency
			fmt.Fprintf(bw, "  %-11s %9d %11.0f %11.0f %9.3f %9.3f %9.3f %9.3f %9.3f  %s\n", name, o.Calls, o.CallsPerS, o.ItemsPerS,
				l.P50, l.P90, l.P99, l.P999, l.Max, errString(o))
		}
		for _, op := range run.Ops {
			line(string(op), run.PerOp[op])
		}
		if len(run.Ops) > 1 {
			line("all", &run.OpResult)
		}
		if run.Dropped > 0 {
			fmt.Fprintf(bw, "  dropped (open loop fell behind): %d\n", run.Dropped)
		}
		if run.MaxRSSBytes > 0 {
			fmt.Fprintf(bw, "  server max RSS: %.1f MiB (max RssAnon %.1f MiB)\n", float64(run.MaxRSSBytes)/(1<<20), float64(run.MaxRSSAnonBytes)/(1<<20))
		}
		for _, x := range []struct {
			what string
			c    *ServerCPU
		}{{"server CPU", run.ServerCPU}, {"database CPU", run.DBCPU}} {
			c := x.c
			if c == nil {
				continue
			}
			if c.Error != "" {
				fmt.Fprintf(bw, "  %s: not measured (%s)\n", x.what, c.Error)
			} else {
				fmt.Fprintf(bw, "  %s: %.2f s, %.1f µs per call", x.what, c.Seconds, c.PerCallUS)
				if run.Profile != nil && run.Profile.Batch > 1 {
					fmt.Fprintf(bw, ", %.2f µs per item", c.PerItemUS)
				}
				fmt.Fprintf(bw, "  (%s)\n", strings.Join(c.Sources, ", "))
			}
		}
		for _, k := range slices.Sorted(maps.Keys(run.Extra)) {
			fmt.Fprintf(bw, "  %s: %.4g\n", k, run.Extra[k])
		}
	}
	if len(r.Ratios) > 0 {
		fmt.Fprintln(bw, "\nratios:")
		for _, x := range r.Ratios {
			fmt.Fprintf(bw, "  %-40s %8.3f   (%s)\n", x.Name, x.Value, x.Of)
		}
	}
	if len(r.Checks) > 0 {
		fmt.Fprintln(bw, "\ntargets:")
		for _, c := range r.Checks {
			if c.Status == StatusNotMeasured {
				fmt.Fprintf(bw, "  %-28s (target %s)  NOT MEASURED: %s\n", c.Name, c.Target, c.Reason)
				continue
			}
			met := StatusMet
			if !c.Met {
				met = StatusNotMet
			}
			fmt.Fprintf(bw, "  %-28s %s (target %s)  %s  %s\n", c.Name, c.Explained, c.Target, met, c.Margin)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(bw, "note: %s\n", n)
	}
	return bw.Flush()
}

func errString(o *OpResult) string {
	if len(o.Errors) == 0 && len(o.ItemErrors) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(o.Errors)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, o.Errors[k]))
	}
	for _, k := range slices.Sorted(maps.Keys(o.ItemErrors)) {
		parts = append(parts, fmt.Sprintf("item:%s=%d", k, o.ItemErrors[k]))
	}
	return strings.Join(parts, " ")
}

// Compare adds the ratios of run tv to a baseline run: items/s per common
// op, and p99 latency.
func Compare(tv, base *RunResult) []Ratio {
	var out []Ratio
	for _, op := range tv.Ops {
		b, ok := base.PerOp[op]
		if !ok || b.ItemsPerS == 0 {
			continue
		}
		t := tv.PerOp[op]
		out = append(out, Ratio{Name: fmt.Sprintf("%s %s items/s vs %s", tv.Name, op, base.Name),
			Value: t.ItemsPerS / b.ItemsPerS, Of: fmt.Sprintf("%.0f / %.0f", t.ItemsPerS, b.ItemsPerS)})
		if b.Latency.P99 > 0 {
			out = append(out, Ratio{Name: fmt.Sprintf("%s %s p99 vs %s", tv.Name, op, base.Name),
				Value: t.Latency.P99 / b.Latency.P99, Of: fmt.Sprintf("%.3f ms / %.3f ms", t.Latency.P99, b.Latency.P99)})
		}
	}
	return out
}
