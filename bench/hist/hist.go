// Package hist is a small log-linear latency histogram in the spirit of
// HdrHistogram: values (nanoseconds) are counted in buckets whose width
// grows with the value, so every recorded value is known to within a fixed
// relative error (1/128, under 0.8%) over the whole int64 range, in a few
// tens of kilobytes, with O(1) recording and exact merging.
//
// Percentiles are read from the bucket counts, not from samples, so p99.9
// is as trustworthy as p50 and no request is ever dropped from the
// distribution (a sampling reservoir would under-report the tail).
package hist

import (
	"math"
	"math/bits"
)

// subBits sets the precision: 2^subBits sub-buckets per power of two.
const subBits = 7

const subCount = 1 << subBits

// Hist counts non-negative values. The zero value is ready to use. It is
// not safe for concurrent use: give each goroutine its own and Merge.
type Hist struct {
	counts []uint64
	total  uint64
	min    int64
	max    int64
	sum    float64
}

// index maps v to its bucket. Values below 2*subCount get exact buckets;
// above, each power of two [2^k, 2^(k+1)) is split into subCount buckets.
func index(v int64) int {
	if v < subCount {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - subBits - 1
	return (e+1)<<subBits + int(v>>e) - subCount
}

// bounds returns the smallest and largest value that land in bucket i.
func bounds(i int) (lo, hi int64) {
	if i < subCount {
		return int64(i), int64(i)
	}
	e := i>>subBits - 1
	m := int64(i - (e+1)<<subBits + subCount)
	lo = m << e
	return lo, lo + (int64(1) << e) - 1
}

// Record counts one value. Negative values count as 0.
func (h *Hist) Record(v int64) {
	if v < 0 {
		v = 0
	}
	i := index(v)
	if i >= len(h.counts) {
		// Grow to the bucket needed (and a bit): latencies cluster, so most
		// histograms stay small.
		n := max(i+1, 2*len(h.counts))
		c := make([]uint64, n)
		copy(c, h.counts)
		h.counts = c
	}
	h.counts[i]++
	if h.total == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.total++
	h.sum += float64(v)
}

// Merge adds o's counts to h.
func (h *Hist) Merge(o *Hist) {
	if o == nil || o.total == 0 {
		return
	}
	if len(o.counts) > len(h.counts) {
		c := make([]uint64, len(o.counts))
		copy(c, h.counts)
		h.counts = c
	}
	for i, n := range o.counts {
		h.counts[i] += n
	}
	if h.total == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.total += o.total
	h.sum += o.sum
}

// Reset empties h, keeping its memory.
func (h *Hist) Reset() {
	clear(h.counts)
	h.total, h.min, h.max, h.sum = 0, 0, 0, 0
}

// Count is the number of recorded values.
func (h *Hist) Count() uint64 { return h.total }

// Min and Max are the exact extremes (0 when empty).
func (h *Hist) Min() int64 { return h.min }
func (h *Hist) Max() int64 { return h.max }

// Mean is the exact mean (0 when empty).
func (h *Hist) Mean() float64 {
	if h.total == 0 {
		return 0
	}
	return h.sum / float64(h.total)
}

// Quantile returns the value at quantile q in [0, 1]: the largest value of
// the bucket holding the ceil(q*count)-th smallest value, capped at Max (so
// it never under-reports, and is within the relative error above). 0 when
// empty.
func (h *Hist) Quantile(q float64) int64 {
	if h.total == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := uint64(math.Ceil(q * float64(h.total)))
	rank = max(rank, 1)
	var seen uint64
	for i, n := range h.counts {
		seen += n
		if seen >= rank {
			_, hi := bounds(i)
			return min(hi, h.max)
		}
	}
	return h.max
}
