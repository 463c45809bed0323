package format

import (
	"errors"
	"io"
)

// maxRejects bounds rejection sampling. Each draw is rejected with probability
// below 1/2, so a working source never gets near it; a broken one (say, a
// reader that returns only 0xff) gets an error instead of an endless loop.
const maxRejects = 64

var errNotRandom = errors.New("output is not random")

// rng draws unbiased numbers from an io.Reader. Errors are sticky: after the
// first failure every draw returns 0 and err is set, so token builders stay
// straight-line code and Token checks err once.
type rng struct {
	r        io.Reader
	buf      [64]byte
	pos, end int
	err      error
}

func (g *rng) byte() byte {
	if g.pos == g.end && !g.fill() {
		return 0
	}
	b := g.buf[g.pos]
	g.pos++
	return b
}

func (g *rng) fill() bool {
	if g.err != nil {
		return false
	}
	// Partial reads are fine; (0, nil) is retried a few times like bufio does.
	for range 100 {
		n, err := g.r.Read(g.buf[:])
		if n > 0 {
			g.pos, g.end = 0, min(n, len(g.buf))
			return true
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			g.err = err
			return false
		}
	}
	g.err = io.ErrNoProgress
	return false
}

// intn returns a uniform number in [0, n) for 0 < n <= 1<<24. It reads as
// many bytes as needed to cover n and rejects values in the incomplete top
// range, which is what removes the modulo bias.
func (g *rng) intn(n int) int {
	span, size := 256, 1
	for span < n {
		span <<= 8
		size++
	}
	limit := span - span%n
	for range maxRejects {
		v := 0
		for range size {
			v = v<<8 | int(g.byte())
		}
		if g.err != nil {
			return 0
		}
		if v < limit {
			return v % n
		}
	}
	g.err = errNotRandom
	return 0
}

func (g *rng) digit() byte { return '0' + byte(g.intn(10)) }
func (g *rng) lower() byte { return 'a' + byte(g.intn(26)) }
func (g *rng) upper() byte { return 'A' + byte(g.intn(26)) }

// digits overwrites b with random digits.
func (g *rng) digits(b []byte) {
	for i := range b {
		b[i] = g.digit()
	}
}

// int64n returns a uniform number in [0, n) for n > 0, by rejection
// sampling over 8 bytes like intn.
func (g *rng) int64n(n int64) int64 {
	limit := ^uint64(0) - ^uint64(0)%uint64(n)
	for range maxRejects {
		var v uint64
		for range 8 {
			v = v<<8 | uint64(g.byte())
		}
		if g.err != nil {
			return 0
		}
		if v < limit {
			return int64(v % uint64(n))
		}
	}
	g.err = errNotRandom
	return 0
}
