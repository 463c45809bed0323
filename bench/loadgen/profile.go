// Package loadgen is tvbench's engine: it drives a tokenvault (or the echo
// baseline, or HashiCorp Vault transit) with a bounded load — closed loop
// (N calls in flight) or open loop (a fixed call rate) — records every
// call's latency in a log-linear histogram, and reports throughput, errors
// by code and latency percentiles as text, JSON and an HTML chart.
//
// Load is always bounded: a run stops by itself after its duration or its
// request cap, whichever comes first, and it only ever sends to the
// addresses it is given.
package loadgen

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tokenvault/tokenvault/vault/format"
)

// Op is one kind of call.
type Op string

// The operations tvbench can issue.
const (
	OpTokenize   Op = "tokenize"
	OpDetokenize Op = "detokenize"
	OpMask       Op = "mask"
	OpEncrypt    Op = "encrypt"
	OpDecrypt    Op = "decrypt"
)

// AllOps lists the operations in report order.
var AllOps = []Op{OpTokenize, OpDetokenize, OpMask, OpEncrypt, OpDecrypt}

func opIndex(o Op) int { return slices.Index(AllOps, o) }

// Hard bounds, so a typo cannot turn the tool into an unbounded flood.
const (
	MaxDuration    = 24 * time.Hour
	MaxConcurrency = 10_000
	MaxBatch       = 1000 // tokenvault's per-call limit
	MaxPool        = 10_000_000
)

// Profile is the load to apply. The zero value is not valid: use
// SetDefaults then Validate.
type Profile struct {
	// Concurrency is the number of calls in flight (closed loop). With
	// Rate set it is the cap on calls in flight (open loop).
	Concurrency int
	// Rate, when > 0, makes the run open loop: calls start at this fixed
	// rate (per second) whether or not earlier ones have finished, and
	// latency is measured from each call's scheduled start, so a stalled
	// server shows up in the percentiles (no coordinated omission).
	Rate float64
	// Duration is how long the measured part lasts; Warmup runs first and
	// is not measured.
	Duration time.Duration
	Warmup   time.Duration
	// MaxRequests caps the calls sent in total (warm-up included); 0 means
	// no cap besides the duration.
	MaxRequests int64
	// Mix weighs the operations, e.g. {tokenize: 3, detokenize: 1}.
	Mix map[Op]float64
	// Batch is the number of fields, tokens or items per call.
	Batch int
	// Subjects is how many distinct data subjects calls spread over.
	Subjects int
	// Kinds are the value kinds tokenized (round robin).
	Kinds []format.Kind
	// Deterministic asks for deterministic tokens: each field's lookup is
	// read (and, for a new value, written) besides its record.
	Deterministic bool
	// Distinct, if set, draws tokenize values from this many fixed values
	// per kind instead of fresh random ones: with Deterministic, a value a
	// subject tokenized before is a lookup hit (the usual case for an
	// e-mail tokenized at every order).
	Distinct int
	// Pool is how many tokens and blobs are made before the run, for
	// detokenize, mask and decrypt to draw from.
	Pool int
	// Connections is the number of gRPC connections (or HTTP keep-alive
	// connections for Vault) the calls are spread over.
	Connections int
	// Timeout bounds each call.
	Timeout time.Duration
	// Interval is the time-series resolution of the chart.
	Interval time.Duration
	// SubjectPrefix namespaces the subjects this run creates.
	SubjectPrefix string
}

// SetDefaults fills unset fields.
func (p *Profile) SetDefaults() {
	if p.Concurrency == 0 {
		p.Concurrency = 64
	}
	if p.Duration == 0 {
		p.Duration = 10 * time.Second
	}
	if len(p.Mix) == 0 {
		p.Mix = map[Op]float64{OpTokenize: 1}
	}
	if p.Batch == 0 {
		p.Batch = 1
	}
	if p.Subjects == 0 {
		p.Subjects = 1000
	}
	if len(p.Kinds) == 0 {
		p.Kinds = []format.Kind{format.PAN}
	}
	if p.Pool == 0 {
		p.Pool = 1000
	}
	if p.Connections == 0 {
		p.Connections = 1
	}
	if p.Timeout == 0 {
		p.Timeout = 10 * time.Second
	}
	if p.Interval == 0 {
		p.Interval = time.Second
	}
	if p.SubjectPrefix == "" {
		p.SubjectPrefix = "tvbench-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	}
}

// Validate names the offending setting (by its tvbench flag).
func (p *Profile) Validate() error {
	switch {
	case p.Concurrency < 1 || p.Concurrency > MaxConcurrency:
		return fmt.Errorf("-c: %d is not in [1, %d]", p.Concurrency, MaxConcurrency)
	case p.Rate < 0:
		return errors.New("-rate: must not be negative")
	case p.Duration <= 0 || p.Duration > MaxDuration:
		return fmt.Errorf("-d: %v is not in (0, %v]", p.Duration, MaxDuration)
	case p.Warmup < 0 || p.Warmup > MaxDuration:
		return fmt.Errorf("-warmup: %v is not in [0, %v]", p.Warmup, MaxDuration)
	case p.MaxRequests < 0:
		return errors.New("-max-requests: must not be negative")
	case p.Batch < 1 || p.Batch > MaxBatch:
		return fmt.Errorf("-batch: %d is not in [1, %d]", p.Batch, MaxBatch)
	case p.Subjects < 1:
		return errors.New("-subjects: must be at least 1")
	case p.Distinct < 0 || p.Distinct > MaxPool:
		return fmt.Errorf("-distinct: %d is not in [0, %d]", p.Distinct, MaxPool)
	case p.Pool < 1 || p.Pool > MaxPool:
		return fmt.Errorf("-pool: %d is not in [1, %d]", p.Pool, MaxPool)
	case p.Connections < 1 || p.Connections > 1000:
		return fmt.Errorf("-conns: %d is not in [1, 1000]", p.Connections)
	case p.Timeout <= 0:
		return errors.New("-timeout: must be positive")
	case p.Interval < 10*time.Millisecond:
		return errors.New("-interval: must be at least 10ms")
	}
	total := 0.0
	for op, w := range p.Mix {
		if opIndex(op) < 0 {
			return fmt.Errorf("-mix: unknown operation %q (want %s)", op, opNames())
		}
		if w < 0 {
			return fmt.Errorf("-mix: weight of %s is negative", op)
		}
		total += w
	}
	if total <= 0 {
		return errors.New("-mix: no operation has a positive weight")
	}
	for _, k := range p.Kinds {
		if _, ok := generators[k]; !ok {
			return fmt.Errorf("-kinds: tvbench cannot generate values of kind %q (supported: %s)", k, supportedKinds())
		}
	}
	return nil
}

// Ops returns the operations with positive weight, in report order.
func (p *Profile) Ops() []Op {
	var out []Op
	for _, o := range AllOps {
		if p.Mix[o] > 0 {
			out = append(out, o)
		}
	}
	return out
}

func opNames() string {
	s := make([]string, len(AllOps))
	for i, o := range AllOps {
		s[i] = string(o)
	}
	return strings.Join(s, ", ")
}

// ParseMix parses "tokenize=3,detokenize=1" (a bare name weighs 1).
func ParseMix(s string) (map[Op]float64, error) {
	m := map[Op]float64{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, ws, hasW := strings.Cut(part, "=")
		w := 1.0
		if hasW {
			var err error
			if w, err = strconv.ParseFloat(ws, 64); err != nil || w < 0 {
				return nil, fmt.Errorf("-mix: weight %q of %s is not a non-negative number", ws, name)
			}
		}
		op := Op(strings.ToLower(name))
		if opIndex(op) < 0 {
			return nil, fmt.Errorf("-mix: unknown operation %q (want %s)", name, opNames())
		}
		m[op] += w
	}
	if len(m) == 0 {
		return nil, errors.New("-mix: empty")
	}
	return m, nil
}

// ParseKinds parses "pan,email".
func ParseKinds(s string) ([]format.Kind, error) {
	var out []format.Kind
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, err := format.ParseKind(part)
		if err != nil {
			return nil, fmt.Errorf("-kinds: %w", err)
		}
		if _, ok := generators[k]; !ok {
			return nil, fmt.Errorf("-kinds: tvbench cannot generate values of kind %q (supported: %s)", k, supportedKinds())
		}
		out = append(out, k)
	}
	if len(out) == 0 {
		return nil, errors.New("-kinds: empty")
	}
	return out, nil
}

func supportedKinds() string {
	var s []string
	for k := range generators {
		s = append(s, k.String())
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}
