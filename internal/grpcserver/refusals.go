package grpcserver

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/tokenvault/tokenvault/internal/audit"
)

// Refused calls are audited without letting a flood of them block the
// server, fill its memory or its disk, or starve the audit of reveals:
//
//   - A refusal never waits for the audit log: nothing was revealed or
//     changed, so there is no result to withhold. Its entry is queued
//     (audit.Log.WriteAsync) and written with the next group.
//   - Up to refusalRate refusals a second (burst refusalBurst) get an
//     entry each. Beyond that, refusals alike in method, outcome, caller,
//     peer host and reason are counted, and each such group is written
//     once a second as one "refusals" entry with its count; the number of
//     groups is bounded (refusalKeys, then one catch-all group per outcome).
//   - The same bound applies to the server log's "call refused" lines.
//
// So under any flood the refusals add at most refusalRate + refusalKeys
// entries a second to the audit log, use bounded memory, and every refused
// call is still accounted for. Admitted calls (reveals among them) are
// audited one by one and synchronously, as before.
const (
	refusalRate   = 100
	refusalBurst  = 200
	refusalKeys   = 1024
	refusalFlush  = time.Second
	refusalFinish = 10 * time.Second // Close's bound on the final flush
)

type refusalKey struct {
	method, op, outcome, caller, auth, host, reason string
}

type refusalCount struct {
	n     uint64
	since time.Time
}

type refusals struct {
	audit Auditor
	log   *slog.Logger
	lim   *rate.Limiter
	now   func() time.Time

	mu     sync.Mutex
	counts map[refusalKey]*refusalCount

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newRefusals(a Auditor, log *slog.Logger) *refusals {
	r := &refusals{audit: a, log: log, lim: rate.NewLimiter(refusalRate, refusalBurst), now: time.Now,
		counts: map[refusalKey]*refusalCount{}, stop: make(chan struct{}), done: make(chan struct{})}
	go r.loop()
	return r
}

// add records one refused call; it never blocks.
func (r *refusals) add(e audit.Entry) {
	if r.lim.Allow() {
		err := r.audit.WriteAsync(e)
		if err == nil {
			r.log.Warn("call refused", "method", e.Method, "caller", e.Caller, "peer", e.Peer, "code", e.Outcome, "reason", e.Reason)
			return
		}
		if !errors.Is(err, audit.ErrBusy) {
			r.log.Error("could not audit a refused call", "method", e.Method, "err", err)
			return
		}
	}
	k := refusalKey{method: e.Method, op: e.Op, outcome: e.Outcome, caller: e.Caller, auth: e.Auth,
		host: peerHost(e.Peer), reason: e.Reason}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.counts[k]
	if !ok && len(r.counts) >= refusalKeys {
		// Too many distinct groups (callers cycling names or addresses):
		// one catch-all per outcome keeps memory bounded and the count
		// exact.
		k = refusalKey{method: "*", outcome: e.Outcome, caller: "*", host: "*", reason: "many distinct refusals"}
		c, ok = r.counts[k]
	}
	if !ok {
		c = &refusalCount{since: r.now()}
		r.counts[k] = c
	}
	c.n++
}

// peerHost drops the port: a flood over many connections from one host is
// one group.
func peerHost(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

func (r *refusals) loop() {
	defer close(r.done)
	t := time.NewTicker(refusalFlush)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.flush(r.audit.WriteAsync)
		}
	}
}

// take empties the counts.
func (r *refusals) take() map[refusalKey]*refusalCount {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.counts
	if len(m) > 0 {
		r.counts = map[refusalKey]*refusalCount{}
	}
	return m
}

// putBack merges counts that could not be written into the current ones
// (the catch-all bound does not apply: these were counted already).
func (r *refusals) putBack(k refusalKey, c *refusalCount) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.counts[k]; ok {
		cur.n += c.n
		cur.since = c.since
		return
	}
	r.counts[k] = c
}

// flush writes one entry per group with write: queued (WriteAsync) from
// the loop, so a busy log defers the counts to the next flush;
// synchronously at Close.
func (r *refusals) flush(write func(audit.Entry) error) {
	m := r.take()
	var total uint64
	for k, c := range m {
		e := audit.Entry{Type: audit.TypeRefusals, Method: k.method, Op: k.op, Outcome: k.outcome,
			Caller: k.caller, Auth: k.auth, Peer: k.host, Reason: k.reason, Count: c.n,
			Since: c.since.UTC().Format(time.RFC3339Nano)}
		err := write(e)
		switch {
		case err == nil:
			total += c.n
		case errors.Is(err, audit.ErrBusy):
			r.putBack(k, c)
		default:
			r.log.Error("could not audit counted refusals", "method", k.method, "count", c.n, "err", err)
		}
	}
	if total > 0 {
		r.log.Warn("calls refused faster than they are audited one by one; counted instead", "count", total, "groups", len(m))
	}
}

// Close writes what is counted and stops; call it before closing the
// audit log.
func (r *refusals) Close() {
	r.closeOnce.Do(func() {
		close(r.stop)
		<-r.done
		ctx, cancel := context.WithTimeout(context.Background(), refusalFinish)
		defer cancel()
		r.flush(func(e audit.Entry) error { return r.audit.Write(ctx, e) })
	})
}
