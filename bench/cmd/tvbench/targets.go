package main

import (
	"context"
	"fmt"
	"io"

	"github.com/tokenvault/tokenvault/bench/loadgen"
)

// phase is one measured run of the targets suite.
type phase struct {
	name  string
	tv    bool // against tokenvault (else the baseline named by base)
	base  string
	op    loadgen.Op
	batch int
}

// targetsCmd measures every target of BENCHMARKS.md in one invocation, in
// an order that keeps each comparison's two runs adjacent.
func targetsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommon("targets", false)
	if err := c.parse(args); err != nil {
		return err
	}
	if c.echo == "off" {
		return fmt.Errorf("-echo: the targets are ratios to the echo baseline; it cannot be off")
	}
	s, err := c.open(stderr)
	if err != nil {
		return err
	}
	defer s.close()
	phases := []phase{
		{name: "echo tokenize x1", base: "echo", op: loadgen.OpTokenize, batch: 1},
		{name: "tokenvault tokenize x1", tv: true, op: loadgen.OpTokenize, batch: 1},
		{name: "echo detokenize x1", base: "echo", op: loadgen.OpDetokenize, batch: 1},
		{name: "tokenvault detokenize x1", tv: true, op: loadgen.OpDetokenize, batch: 1},
		{name: "tokenvault tokenize x100", tv: true, op: loadgen.OpTokenize, batch: 100},
		{name: "tokenvault encrypt x1", tv: true, op: loadgen.OpEncrypt, batch: 1},
	}
	if s.transit != nil {
		phases = append(phases, phase{name: "vault-transit encrypt x1", base: "transit", op: loadgen.OpEncrypt, batch: 1})
	}
	rep := newReport("targets")
	got := map[string]*loadgen.RunResult{}
	for _, ph := range phases {
		p := c.p
		p.Mix = map[loadgen.Op]float64{ph.op: 1}
		p.Batch = ph.batch
		t := s.tv
		switch ph.base {
		case "echo":
			t = s.echo
		case "transit":
			t = s.transit
		}
		res, err := s.measure(ctx, ph.name, t, p, ph.tv)
		if err != nil {
			return err
		}
		got[ph.name] = res
		rep.Runs = append(rep.Runs, res)
	}

	e := got["echo tokenize x1"]
	tok := got["tokenvault tokenize x1"]
	eDet := got["echo detokenize x1"]
	det := got["tokenvault detokenize x1"]
	tok100 := got["tokenvault tokenize x100"]
	enc := got["tokenvault encrypt x1"]
	rep.Ratios = append(rep.Ratios, loadgen.Compare(tok, e)...)
	rep.Ratios = append(rep.Ratios, loadgen.Compare(det, eDet)...)
	rep.Checks = append(rep.Checks,
		atLeast("tokenize x1 throughput / E", tok.CallsPerS, e.CallsPerS, 0.5),
		atMost("tokenize x1 p99 / echo p99", tok.Latency.P99, e.Latency.P99, 2),
		atLeast("detokenize x1 throughput / E", det.CallsPerS, eDet.CallsPerS, 0.8),
		atLeast("tokenize x100 fields/s / E", tok100.ItemsPerS, e.CallsPerS, 4),
	)
	if tr := got["vault-transit encrypt x1"]; tr != nil {
		rep.Ratios = append(rep.Ratios, loadgen.Compare(enc, tr)...)
		rep.Checks = append(rep.Checks, atLeast("encrypt: tokenvault / Vault transit", enc.ItemsPerS, tr.ItemsPerS, 20))
	} else {
		rep.Notes = append(rep.Notes, "no -vault-addr: the encrypt-vs-Vault-transit target was not measured")
	}
	if c.rssPid > 0 {
		var maxRSS int64
		for _, r := range rep.Runs {
			maxRSS = max(maxRSS, r.MaxRSSBytes)
		}
		rep.Checks = append(rep.Checks, atMost("server RSS under load (GiB)", float64(maxRSS)/(1<<30), 1, 1))
		rep.Notes = append(rep.Notes, "the RSS target is for 10 million stored tokens: load them first (see BENCHMARKS.md)")
	}
	for _, r := range rep.Runs {
		if r.OKCalls == 0 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s: no call succeeded; its ratios are meaningless", r.Name))
		}
	}
	return c.write(rep, stdout)
}

// atLeast checks num/den >= want.
func atLeast(name string, num, den, want float64) loadgen.Check {
	v := safeDiv(num, den)
	ch := loadgen.Check{Name: name, Target: fmt.Sprintf(">= %g", want), Measured: v, Met: v >= want,
		Explained: fmt.Sprintf("%.1f / %.1f", num, den)}
	if ch.Met {
		ch.Margin = percent(v/want-1) + " above the target"
	} else {
		ch.Margin = percent(1-v/want) + " short of the target"
	}
	return ch
}

// atMost checks num/den <= want.
func atMost(name string, num, den, want float64) loadgen.Check {
	v := safeDiv(num, den)
	ch := loadgen.Check{Name: name, Target: fmt.Sprintf("<= %g", want), Measured: v, Met: v <= want,
		Explained: fmt.Sprintf("%.3f / %.3f", num, den)}
	if ch.Met {
		ch.Margin = percent(1-v/want) + " under the limit"
	} else {
		ch.Margin = percent(v/want-1) + " over the limit"
	}
	return ch
}

// percent formats a fraction as a percentage, with a decimal below 10%
// so that a near miss does not read "0% short".
func percent(f float64) string {
	if f*100 < 10 {
		return fmt.Sprintf("%.1f%%", f*100)
	}
	return fmt.Sprintf("%.0f%%", f*100)
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
