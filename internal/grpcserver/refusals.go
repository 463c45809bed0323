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

// refusalKey groups refusals. It holds nothing a caller can vary freely:
// no reason text (it may quote the request; the group keeps its first),
// and an unknown method's name is not kept (any string would make a new
// group); peer hosts and authenticated callers are bounded by refusalKeys
// and then by the catch-alls in add.
type refusalKey struct {
	method, op, outcome, caller, auth, host string
}

type refusalCount struct {
	n      uint64
	since  time.Time
	reason string // the first one's
}

// unknownMethodKey stands for every method name the guard does not know.
const unknownMethodKey = "(unknown method)"

// maxRefusalItems bounds what one refusal entry records of its request
// (the rest is counted in items_omitted): a refused call revealed nothing,
// and an entry per refusal must not carry a 1,000-token batch each time.
const maxRefusalItems = 16

type refusals struct {
	audit Auditor
	log   *slog.Logger
	// Separate budgets: a flood of unauthenticated refusals cannot use up
	// the entries that record an authenticated caller's refusals.
	anon, authed *rate.Limiter
	now          func() time.Time

	mu     sync.Mutex
	counts map[refusalKey]*refusalCount

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newRefusals(a Auditor, log *slog.Logger) *refusals {
	r := &refusals{audit: a, log: log, anon: rate.NewLimiter(refusalRate, refusalBurst),
		authed: rate.NewLimiter(refusalRate, refusalBurst), now: time.Now,
		counts: map[refusalKey]*refusalCount{}, stop: make(chan struct{}), done: make(chan struct{})}
	go r.loop()
	return r
}

// add records one refused call; it never blocks.
func (r *refusals) add(e audit.Entry) {
	lim := r.anon
	if e.Caller != "" {
		lim = r.authed
	}
	if len(e.Items) > maxRefusalItems {
		e.ItemsOmitted += len(e.Items) - maxRefusalItems
		e.Items = e.Items[:maxRefusalItems]
	}
	if lim.Allow() {
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
	method := e.Method
	if _, known := methods[method]; !known {
		method = unknownMethodKey
	}
	k := refusalKey{method: method, op: e.Op, outcome: e.Outcome, caller: e.Caller, auth: e.Auth, host: peerHost(e.Peer)}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.slot(k, e.Reason).n++
}

// manyReason is a catch-all group's reason.
const manyReason = "many distinct refusals"

// slot returns the group k is counted in, made if need be; r.mu is held.
func (r *refusals) slot(k refusalKey, reason string) *refusalCount {
	c, ok := r.counts[k]
	if !ok && len(r.counts) >= refusalKeys {
		// Too many distinct groups (callers cycling addresses or names):
		// catch-alls keep memory bounded and the count exact. An
		// authenticated caller keeps a group of its own while there is
		// room, so that a flood of anonymous refusals cannot wash its
		// name out of the record.
		caller, auth := k.caller, k.auth
		k = refusalKey{method: "*", outcome: k.outcome, caller: "*", host: "*"}
		if caller != "" && len(r.counts) < 2*refusalKeys {
			k.caller, k.auth = caller, auth
		}
		c, ok = r.counts[k]
	}
	if !ok {
		c = &refusalCount{since: r.now(), reason: reason}
		if k.host == "*" {
			c.reason = manyReason
		}
		r.counts[k] = c
	}
	return c
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

// take empties the counts and returns them, nil if there were none. The
// caller owns what it gets: handing out the live map when it was empty
// (to save an allocation) let flush range over it while add wrote to it.
func (r *refusals) take() map[refusalKey]*refusalCount {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.counts
	if len(m) == 0 {
		return nil
	}
	r.counts = map[refusalKey]*refusalCount{}
	return m
}

// putBack merges groups that could not be written into the current
// counts, in one step and within add's bound: while a flood keeps the
// audit queue full, add refills the counts between two flushes, and
// groups put back beside them unbounded would grow the map flush after
// flush. A group put back is older than what add counted since, so its
// start and reason win.
func (r *refusals) putBack(left map[refusalKey]*refusalCount) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, c := range left {
		cur := r.slot(k, c.reason)
		cur.n += c.n
		if c.since.Before(cur.since) {
			cur.since = c.since
			if cur.reason != manyReason {
				cur.reason = c.reason
			}
		}
	}
}

// flush writes one entry per group with write: queued (WriteAsync) from
// the loop, so that a busy log defers the counts to the next flush;
// synchronously at Close.
func (r *refusals) flush(write func(audit.Entry) error) {
	m := r.take()
	var total uint64
	var left map[refusalKey]*refusalCount // not written: the log is busy
	for k, c := range m {
		if left != nil {
			// The queue was full a moment ago: the rest waits for the
			// next flush instead of being offered one by one.
			left[k] = c
			continue
		}
		e := audit.Entry{Type: audit.TypeRefusals, Method: k.method, Op: k.op, Outcome: k.outcome,
			Caller: k.caller, Auth: k.auth, Peer: k.host, Reason: c.reason, Count: c.n,
			Since: c.since.UTC().Format(time.RFC3339Nano)}
		switch err := write(e); {
		case err == nil:
			total += c.n
		case errors.Is(err, audit.ErrBusy):
			left = map[refusalKey]*refusalCount{k: c}
		default:
			r.log.Error("could not audit counted refusals", "method", k.method, "count", c.n, "err", err)
		}
	}
	if left != nil {
		r.putBack(left)
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
		// Queued like the loop's (the audit log writes its queue before it
		// closes); waited for only when the queue is full.
		r.flush(func(e audit.Entry) error {
			if err := r.audit.WriteAsync(e); !errors.Is(err, audit.ErrBusy) {
				return err
			}
			return r.audit.Write(ctx, e)
		})
	})
}
