package vault

import (
	"context"
	"errors"
	"github.com/tokenvault/tokenvault/vault/receipt"
	"slices"
	"sync"
	"time"
)

// Erasure notices for downstream services (README, "Erasure notices").
//
// Every erasure appends an event to a log in the store, in the same
// transaction as the crypto-shred ([ErasureEventStore.ShredErasure]): an
// erasure is never committed without its event, and events are numbered
// in commit order. Each registered consumer has a durable cursor, the
// last sequence it acknowledged. [Vault.WatchErasures] delivers the
// events after the cursor, in order, and then waits for new ones;
// [Vault.AckErasures] moves the cursor. Delivery is at least once: an
// event delivered but not acknowledged (the consumer or the server died
// in between) comes again on the next watch; one acknowledged never does.
//
// The subject id is the one thing in an event a consumer needs that the
// vault otherwise keeps only as a keyed hash. The store keeps it sealed
// (under [StoreSealKey]) inside the event, and only while the event is
// pending: TrimErasureEvents deletes an event once every registered
// consumer acknowledged it, and drops the id (and the receipt, which names
// the subject) from an event older than [ErasureOptions.Retention]
// (default 30 days) even if a consumer is still behind; such an event is
// still delivered, with its key id and erasure time but no subject id.
// The server trims after every acknowledgement and hourly.
//
// The receipt is signed after the purge, so it is attached to the event
// after the shred; a watcher waits for it while the erasure is in flight
// in this process or its purge is pending. An erasure interrupted by a
// crash has no signed receipt, and its event comes without one.

// ErasureOptions configure erasure events.
type ErasureOptions struct {
	// Retention bounds how long an event keeps the subject id (default
	// DefaultEventRetention).
	Retention time.Duration
	// Poll is how often a watcher re-reads the store for events committed
	// by another server sharing it (default 5s); events of this process
	// wake watchers at once.
	Poll time.Duration
}

// DefaultEventRetention is ErasureOptions.Retention's default.
const DefaultEventRetention = 30 * 24 * time.Hour

// ErasureEvent is defined in store.go.

// erasureLog is the in-process part: wake-ups and erasures in flight.
type erasureLog struct {
	mu       sync.Mutex
	wake     chan struct{} // closed and replaced on every change
	inflight map[uint64]bool
	end      sync.Once
	ended    chan struct{} // closed by EndWatches
}

func (l *erasureLog) endCh() chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended == nil {
		l.ended = make(chan struct{})
	}
	return l.ended
}

// EndWatches ends every WatchErasures call (returning nil), now and
// later: the server calls it before draining, so that open watches do
// not hold the shutdown until its timeout (clients reconnect to another
// server, or to this one once it is back).
func (v *Vault) EndWatches() {
	ch := v.events.endCh()
	v.events.end.Do(func() { close(ch) })
}

func (l *erasureLog) changed() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wake != nil {
		close(l.wake)
	}
	l.wake = make(chan struct{})
}

func (l *erasureLog) waiter() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wake == nil {
		l.wake = make(chan struct{})
	}
	return l.wake
}

func (l *erasureLog) setInflight(seq uint64, on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inflight == nil {
		l.inflight = map[uint64]bool{}
	}
	if on {
		l.inflight[seq] = true
	} else {
		delete(l.inflight, seq)
	}
}

func (l *erasureLog) isInflight(seq uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inflight[seq]
}

// shred is the erasure's shred: with an event when the store keeps them.
// seq is 0 without one.
func (v *Vault) shred(ctx context.Context, subject string, entry LedgerEntry, at time.Time) (KeyID, uint64, []receipt.Held, error) {
	holds, err := v.holdsToSchedule(ctx, subject, at)
	if err != nil {
		return KeyID{}, 0, nil, err
	}
	es, ok := v.store.(ErasureEventStore)
	if !ok {
		id, err := v.shredHolding(ctx, subject, entry, holds)
		return id, 0, heldOf(holds), err
	}
	// The holds are scheduled in the event's transaction (a store with
	// events and holds implements both; holdsToSchedule finds holds only
	// on a HoldStore).
	ev, err := es.ShredErasure(ctx, subject, entry, ErasureEvent{ErasedAt: at, Holds: holds})
	if err != nil {
		return ev.KeyID, 0, nil, err
	}
	v.events.setInflight(ev.Seq, true)
	v.events.changed()
	return ev.KeyID, ev.Seq, heldOf(holds), nil
}

// erasureDone attaches the signed receipt (if any) to event seq and ends
// its flight. A failure to attach is logged: the erasure itself is done,
// and the event is delivered without a receipt.
func (v *Vault) erasureDone(ctx context.Context, seq uint64, signed []byte) {
	if seq == 0 {
		return
	}
	defer v.events.changed()
	defer v.events.setInflight(seq, false)
	if signed == nil {
		return
	}
	es := v.store.(ErasureEventStore)
	if err := es.AttachReceipt(context.WithoutCancel(ctx), seq, signed); err != nil {
		v.log.Error("erasure event: attaching the receipt failed; the event goes out without it", "seq", seq, "err", err)
	}
}

// RegisterConsumers registers consumers (a consumer's cursor starts before
// every event still kept). The server registers the policy's consumers at
// start, and a consumer on its first watch.
func (v *Vault) RegisterConsumers(ctx context.Context, consumers []string) error {
	if len(consumers) == 0 {
		return nil
	}
	es, err := capability[ErasureEventStore](v, "erasure events")
	if err != nil {
		return err
	}
	for _, c := range consumers {
		if err := checkConsumer(c); err != nil {
			return err
		}
		if err := es.RegisterConsumer(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// checkConsumer: 1 to 128 bytes of letters, digits, '-', '_' and '.'
// (the policy's rule, internal/auth): a consumer name is a store key and
// a log field.
func checkConsumer(c string) error {
	if c == "" || len(c) > 128 {
		return invalid("consumer", "must be 1 to 128 bytes")
	}
	for _, r := range c {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return invalid("consumer", "may contain only letters, digits, '-', '_' and '.'")
		}
	}
	return nil
}

// eventPage bounds one read of the event log.
const eventPage = 100

// WatchErasures calls fn with every event after consumer's cursor, in
// commit order, then with every new one, until ctx ends or fn fails (its
// error is returned). It registers the consumer if it is not. fn is
// called again for an event only on a new watch: acknowledging is the
// caller's (AckErasures).
func (v *Vault) WatchErasures(ctx context.Context, consumer string, fn func(ErasureEvent) error) error {
	if err := v.RegisterConsumers(ctx, []string{consumer}); err != nil {
		return err
	}
	es := v.store.(ErasureEventStore)
	cursors, err := es.Consumers(ctx)
	if err != nil {
		return err
	}
	next := cursors[consumer] // the last one delivered on this watch
	ended := v.events.endCh()
	poll := v.eventOpts.Poll
	if poll <= 0 {
		poll = 5 * time.Second
	}
	for {
		wake := v.events.waiter()
		page, err := es.ErasureEvents(ctx, next, eventPage)
		if err != nil {
			return err
		}
		waiting := false
		for _, ev := range page {
			if ev.Receipt == nil && ev.Subject != "" && v.rights.ReceiptKey != nil && v.receiptComing(ctx, ev) {
				waiting = true // commit order: nothing after it either
				break
			}
			if err := fn(ev); err != nil {
				return err
			}
			next = ev.Seq
		}
		if len(page) == eventPage && !waiting {
			continue
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-ended:
			t.Stop()
			return nil
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// receiptComing: the event's receipt is still to be signed (its erasure
// is in flight here, or its purge pending).
func (v *Vault) receiptComing(ctx context.Context, ev ErasureEvent) bool {
	if v.events.isInflight(ev.Seq) {
		return true
	}
	pending, err := v.store.PendingPurges(ctx)
	return err == nil && slices.Contains(pending, ev.KeyID)
}

// AckErasures acknowledges every event up to seq for consumer, then trims
// the log.
func (v *Vault) AckErasures(ctx context.Context, consumer string, seq uint64) error {
	if err := checkConsumer(consumer); err != nil {
		return err
	}
	if seq == 0 {
		return invalid("sequence", "must be the sequence of a delivered event (from 1)")
	}
	es, err := capability[ErasureEventStore](v, "erasure events")
	if err != nil {
		return err
	}
	err = es.AckErasures(ctx, consumer, seq)
	if errors.Is(err, ErrNotFound) {
		return &FieldError{Field: "consumer", Reason: "not a registered consumer (watch first)", Err: ErrNotFound}
	}
	var fe *FieldError
	if errors.Is(err, ErrInvalidArgument) && !errors.As(err, &fe) {
		return invalid("sequence", "beyond the last erasure event")
	}
	if err != nil {
		return err
	}
	_, err = v.TrimErasureEvents(ctx)
	return err
}

// TrimErasureEvents deletes acknowledged events and drops subject ids
// past the retention (see the top of this file).
func (v *Vault) TrimErasureEvents(ctx context.Context) (int, error) {
	es, ok := v.store.(ErasureEventStore)
	if !ok {
		return 0, nil
	}
	ret := v.eventOpts.Retention
	if ret <= 0 {
		ret = DefaultEventRetention
	}
	return es.TrimErasureEvents(ctx, v.now().Add(-ret))
}

// ConsumerBacklog is one consumer's pending events, for metrics.
type ConsumerBacklog struct {
	Pending int
	Oldest  time.Time // erasure time of the oldest pending event; zero if none
}

// ErasureBacklog reports every registered consumer's backlog (nil if the
// store keeps no events).
func (v *Vault) ErasureBacklog(ctx context.Context) (map[string]ConsumerBacklog, error) {
	es, ok := v.store.(ErasureEventStore)
	if !ok {
		return nil, nil
	}
	cursors, err := es.Consumers(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]ConsumerBacklog, len(cursors))
	low := ^uint64(0)
	for c, cur := range cursors {
		low = min(low, cur)
		out[c] = ConsumerBacklog{}
	}
	if len(cursors) == 0 {
		return out, nil
	}
	for after := low; ; {
		page, err := es.ErasureEvents(ctx, after, eventPage)
		if err != nil {
			return nil, err
		}
		for _, ev := range page {
			for c, cur := range cursors {
				if ev.Seq > cur {
					b := out[c]
					if b.Pending == 0 {
						b.Oldest = ev.ErasedAt
					}
					b.Pending++
					out[c] = b
				}
			}
			after = ev.Seq
		}
		if len(page) < eventPage {
			return out, nil
		}
	}
}
