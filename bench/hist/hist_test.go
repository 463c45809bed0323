package hist

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestIndexBounds(t *testing.T) {
	// Every bucket's bounds map back to it, buckets tile the line without
	// gaps, and widths respect the relative error.
	prevHi := int64(-1)
	for i := range index(math.MaxInt64) + 1 {
		lo, hi := bounds(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevHi)
		}
		if index(lo) != i || index(hi) != i {
			t.Fatalf("bucket %d = [%d, %d] but index(lo)=%d index(hi)=%d", i, lo, hi, index(lo), index(hi))
		}
		if lo >= subCount && float64(hi-lo+1)/float64(lo) > 1.0/subCount+1e-12 {
			t.Fatalf("bucket %d = [%d, %d] is wider than 1/%d of its value", i, lo, hi, subCount)
		}
		prevHi = hi
		if hi == math.MaxInt64 {
			return
		}
	}
	t.Fatalf("buckets end at %d, not MaxInt64", prevHi)
}

func TestQuantilesAgainstSorted(t *testing.T) {
	for _, tc := range []struct {
		name string
		gen  func(r *rand.Rand) int64
	}{
		{"small", func(r *rand.Rand) int64 { return r.Int64N(300) }},
		{"exponential-ms", func(r *rand.Rand) int64 { return int64(r.ExpFloat64() * 1e6) }},
		{"bimodal", func(r *rand.Rand) int64 {
			if r.IntN(100) == 0 {
				return 50e6 + r.Int64N(1e6)
			}
			return 200e3 + r.Int64N(50e3)
		}},
		{"huge", func(r *rand.Rand) int64 { return r.Int64N(math.MaxInt64) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			var h Hist
			vals := make([]int64, 100_000)
			for i := range vals {
				vals[i] = tc.gen(r)
				h.Record(vals[i])
			}
			slices.Sort(vals)
			if h.Count() != uint64(len(vals)) || h.Min() != vals[0] || h.Max() != vals[len(vals)-1] {
				t.Fatalf("count/min/max = %d/%d/%d, want %d/%d/%d", h.Count(), h.Min(), h.Max(), len(vals), vals[0], vals[len(vals)-1])
			}
			for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
				rank := max(int(math.Ceil(q*float64(len(vals)))), 1)
				want := vals[rank-1]
				got := h.Quantile(q)
				if got < want || float64(got-want) > float64(want)/subCount+1 {
					t.Errorf("q%.3f = %d, exact %d: outside [exact, exact*(1+1/%d)]", q, got, want, subCount)
				}
			}
		})
	}
}

func TestMergeEqualsRecordingAll(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var a, b, all Hist
	for i := range 10_000 {
		v := int64(r.ExpFloat64() * 1e5)
		all.Record(v)
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	var m Hist
	m.Merge(&a)
	m.Merge(&b)
	m.Merge(nil)
	m.Merge(&Hist{})
	if m.Count() != all.Count() || m.Min() != all.Min() || m.Max() != all.Max() || math.Abs(m.Mean()-all.Mean()) > 1e-6 {
		t.Fatalf("merged count/min/max/mean %d/%d/%d/%f, want %d/%d/%d/%f", m.Count(), m.Min(), m.Max(), m.Mean(), all.Count(), all.Min(), all.Max(), all.Mean())
	}
	for q := 0.0; q <= 1; q += 0.001 {
		if m.Quantile(q) != all.Quantile(q) {
			t.Fatalf("q%.3f: merged %d, direct %d", q, m.Quantile(q), all.Quantile(q))
		}
	}
	m.Reset()
	if m.Count() != 0 || m.Quantile(0.5) != 0 || m.Max() != 0 || m.Mean() != 0 {
		t.Fatalf("after Reset: count %d q50 %d max %d", m.Count(), m.Quantile(0.5), m.Max())
	}
}

func TestEdgeValues(t *testing.T) {
	var h Hist
	if h.Quantile(0.99) != 0 || h.Mean() != 0 {
		t.Fatal("empty histogram must report 0")
	}
	h.Record(-5) // clamps to 0
	h.Record(math.MaxInt64)
	if h.Min() != 0 || h.Max() != math.MaxInt64 || h.Quantile(0.5) != 0 || h.Quantile(1) != math.MaxInt64 {
		t.Fatalf("min %d max %d q50 %d q100 %d", h.Min(), h.Max(), h.Quantile(0.5), h.Quantile(1))
	}
}

func BenchmarkRecord(b *testing.B) {
	var h Hist
	r := rand.New(rand.NewPCG(5, 6))
	vals := make([]int64, 1024)
	for i := range vals {
		vals[i] = int64(r.ExpFloat64() * 1e6)
	}
	for i := 0; b.Loop(); i++ {
		h.Record(vals[i&1023])
	}
}
