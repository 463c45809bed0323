package grpcserver

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/tokenvault/tokenvault/internal/auth"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// Per-identity limits on Tokenize (security review, issue 19).
//
// A caller allowed to tokenize can guess values with deterministic mode
// (the existing token comes back for a right guess) and can fill small
// token spaces so that real values get no token; each guess or filler also
// stores a record. The policy decides who may do either at all; these
// limits bound how fast one identity can, so that a stolen credential or a
// misbehaving service takes hours where it took seconds, and the refusals
// it meets are in the audit log. They do not make a tiny token space safe:
// one of ~100 tokens is filled by ~100 fields, which no rate that lets
// real traffic through can stop (see vault/format/FORMATS.md).

// Rate is a token bucket: PerSecond fields a second on average and up to
// Burst at once. PerSecond <= 0 means no limit.
type Rate struct {
	PerSecond float64
	Burst     int
}

func (r Rate) on() bool { return r.PerSecond > 0 }

// describe says r in words, e.g. "10 deterministic fields a second, at
// most 100 at once".
func (r Rate) describe(what string) string {
	return strconv.FormatFloat(r.PerSecond, 'f', -1, 64) + " " + what + " a second, at most " + strconv.Itoa(r.Burst) + " at once"
}

// Limits bounds what one caller identity may tokenize.
type Limits struct {
	// Tokenize counts every tokenized field, whatever its mode.
	Tokenize Rate
	// Deterministic counts deterministic fields (which count towards
	// Tokenize as well).
	Deterministic Rate
}

// ErrRateLimited is wrapped by every refusal of a Limiter.
var ErrRateLimited = errors.New("rate limit")

// maxIdle is how many identities' buckets are kept before full ones are
// dropped. A full bucket is the same as a new one, so dropping it forgets
// nothing; the map is bounded by the identities active at once.
const maxIdle = 4096

// Limiter keeps the buckets of each identity. It is safe for concurrent
// use. Buckets outlive policy reloads (a reload must not refill them).
type Limiter struct {
	limits Limits
	now    func() time.Time

	mu   sync.Mutex
	byID map[string]*buckets
}

type buckets struct{ all, det *rate.Limiter }

// NewLimiter checks l and returns its limiter.
func NewLimiter(l Limits) (*Limiter, error) {
	for name, r := range map[string]Rate{"tokenize": l.Tokenize, "deterministic tokenize": l.Deterministic} {
		if math.IsNaN(r.PerSecond) || math.IsInf(r.PerSecond, 0) {
			return nil, fmt.Errorf("%s limit: %v fields a second is not a number", name, r.PerSecond)
		}
		if r.on() && r.Burst < 1 {
			return nil, fmt.Errorf("%s limit: a burst of %d fields allows nothing; give at least 1", name, r.Burst)
		}
	}
	return &Limiter{limits: l, now: time.Now, byID: map[string]*buckets{}}, nil
}

// deterministic tells a deterministic field, for the guard (authz.go),
// the limiter and the Tokenize handler (server.go): the same rule decides
// what is authorized, counted and done.
func deterministic(f *pb.Field) bool {
	return f.GetOptions().GetMode() == pb.TokenMode_TOKEN_MODE_DETERMINISTIC
}

// admitTokenize takes fields from id's buckets, or none of them and an
// error naming the field (a *fieldError) and the limit. A nil Limiter
// limits nothing.
func (l *Limiter) admitTokenize(id auth.Identity, fields []*pb.Field) error {
	if l == nil || len(fields) == 0 {
		return nil
	}
	det, firstDet := 0, -1
	for i, f := range fields {
		if deterministic(f) {
			if det++; firstDet < 0 {
				firstDet = i
			}
		}
	}
	lt, ld := l.limits.Tokenize, l.limits.Deterministic
	// A call larger than a burst could never pass: say so rather than
	// "retry later".
	if lt.on() && len(fields) > lt.Burst {
		return &fieldError{"fields", fmt.Errorf("%w: %d fields in one call is more than one identity may tokenize (%s); send smaller batches",
			ErrRateLimited, len(fields), lt.describe("fields"))}
	}
	detField := func() string { return "fields[" + strconv.Itoa(firstDet) + "].options.mode" }
	if ld.on() && det > ld.Burst {
		return &fieldError{detField(), fmt.Errorf("%w: %d deterministic fields in one call is more than one identity may tokenize (%s); send smaller batches",
			ErrRateLimited, det, ld.describe("deterministic fields"))}
	}
	if !lt.on() && (!ld.on() || det == 0) {
		return nil
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now() // under l.mu: the buckets never see time go backwards
	b := l.bucketsOf(id, now)
	// Both buckets are checked before either is taken from, under l.mu, so
	// that a refused call costs nothing.
	if b.all != nil {
		if wait := shortfall(b.all, now, len(fields), lt); wait > 0 {
			return &fieldError{"fields", fmt.Errorf("%w: %s may tokenize %s; retry in %s", ErrRateLimited, id, lt.describe("fields"), wait)}
		}
	}
	if b.det != nil && det > 0 {
		if wait := shortfall(b.det, now, det, ld); wait > 0 {
			return &fieldError{detField(), fmt.Errorf("%w: %s may tokenize %s; retry in %s", ErrRateLimited, id, ld.describe("deterministic fields"), wait)}
		}
	}
	if b.all != nil {
		b.all.AllowN(now, len(fields))
	}
	if b.det != nil && det > 0 {
		b.det.AllowN(now, det)
	}
	return nil
}

// shortfall is how long until lim holds n tokens (0: it does now).
func shortfall(lim *rate.Limiter, now time.Time, n int, r Rate) time.Duration {
	missing := float64(n) - lim.TokensAt(now)
	if missing <= 0 {
		return 0
	}
	d := time.Duration(math.Ceil(missing / r.PerSecond * float64(time.Second)))
	return max(d.Round(100*time.Millisecond), 100*time.Millisecond)
}

// bucketsOf returns id's buckets (l.mu held), making them if needed.
func (l *Limiter) bucketsOf(id auth.Identity, now time.Time) *buckets {
	// The method is part of the key: an API key's name and a certificate's
	// name are different namespaces.
	// Built in a stack buffer: the lookup of string(key) does not
	// allocate, so only a new identity's first call pays for the string.
	var buf [128]byte
	key := append(append(append(buf[:0], id.Method...), 0), id.Name...)
	if b, ok := l.byID[string(key)]; ok {
		return b
	}
	if len(l.byID) >= maxIdle {
		for k, b := range l.byID {
			if full(b.all, now, l.limits.Tokenize) && full(b.det, now, l.limits.Deterministic) {
				delete(l.byID, k)
			}
		}
	}
	b := &buckets{}
	if r := l.limits.Tokenize; r.on() {
		b.all = rate.NewLimiter(rate.Limit(r.PerSecond), r.Burst)
	}
	if r := l.limits.Deterministic; r.on() {
		b.det = rate.NewLimiter(rate.Limit(r.PerSecond), r.Burst)
	}
	l.byID[string(key)] = b
	return b
}

func full(lim *rate.Limiter, now time.Time, r Rate) bool {
	return lim == nil || lim.TokensAt(now) >= float64(r.Burst)
}
