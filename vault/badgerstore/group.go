package badgerstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"

	"github.com/tokenvault/tokenvault/vault"
)

// Group commit.
//
// Badger with SyncWrites syncs its write-ahead log once per transaction,
// even when it writes several transactions together, so durable
// single-token writes would be serialized on the disk's fsync latency. The
// committer below instead runs the writes of concurrent callers in one
// transaction and one sync: while one group is being synced, the next one
// gathers.
//
// Each op keeps its own all-or-nothing semantics inside a shared
// transaction: an op does all its checks (reads) before its first write and
// reports a rejection (a collision, an erased subject) only before writing.
// Any other error from an op makes the group fall back to one transaction
// per op. Each op states an upper bound of what it writes (its weight), and
// a group takes ops only while their sum stays inside badger's limit for
// one transaction; without that, concurrent 1,000-record batches overflow
// the transaction, and the fallback commits them one by one, each with its
// own sync.
//
// Pipelining: a group's ops (their reads: absence checks, the subject key)
// run while the previous group's commit is being written and synced, so
// the two stages overlap instead of adding up. The next group's
// transaction is opened before the previous commit is submitted (badger
// would otherwise make it wait for that commit), so its reads do not see
// the previous group's writes. That is safe because every read goes
// through the transaction and is in its read set: if the previous group
// wrote a key this one read (the same random token drawn twice, the same
// deterministic lookup, a subject's first key), badger refuses this
// group's commit with ErrConflict and the group is run again, now seeing
// those writes. A group is answered only after its own commit returned.
//
// Two reads are skipped: the absence check of a token the token filter
// rules out, and of a lookup key the lookup filter rules out (filter.go).
// That skip is safe because an op puts its tokens and lookup keys into the
// filters when it first runs, whatever it decides, so a key that the group
// in flight (or its re-run after a conflict) may write is never ruled out
// for the next group: that group reads it, and conflicts.

// maxGroup bounds how many ops share a transaction.
const maxGroup = 256

type op struct {
	fn   func(txn *badger.Txn) error
	w    weight
	done chan error
}

// weight bounds what an op writes: badger entries, and bytes as badger
// counts them against its per-transaction limit.
type weight struct{ count, size int64 }

// set adds one write. key + value + 12 is at least badger's own estimate
// (key, version, metadata, and a 12-byte pointer in place of a value that
// goes to the value log).
func (w *weight) set(keyLen, valueLen int) {
	w.count++
	w.size += int64(keyLen + valueLen + 12)
}

func (w weight) plus(o weight) weight { return weight{w.count + o.count, w.size + o.size} }

func (w weight) within(limit weight) bool { return w.count <= limit.count && w.size <= limit.size }

// rejected reports errors that ops return before writing anything.
func rejected(err error) bool {
	var r refusal
	return errors.Is(err, vault.ErrCollision) || errors.Is(err, vault.ErrErased) || errors.As(err, &r)
}

// refusal marks another error an op returns before writing anything (a
// rectified token deleted meanwhile: ReplaceRecord), so that its group is
// not split into one transaction per op. It unwraps to that error.
type refusal struct{ error }

func (r refusal) Unwrap() error { return r.error }

type committer struct {
	db    *badger.DB
	limit weight // what one group may write
	// carry is an op taken from ops that did not fit in the group being
	// gathered; it starts the next one. Owned by the loop goroutine.
	carry *op
	// fallbacks counts groups that had to be split into one transaction
	// per op (a weight that underestimated, or an op that failed).
	fallbacks atomic.Int64
	// groups and ops count the transactions committed and the ops they
	// carried (metrics: ops / groups is the mean group size, and each
	// group is one sync of badger's write-ahead log).
	groups, groupOps atomic.Int64

	// space admits writes (nil: no check); set before the first op.
	space *space
	// records is the store's record cache, which doToken brackets
	// (reccache.go; nil: none). Set before the first op.
	records *recordCache

	mu     sync.RWMutex // guards closed and sends on ops
	closed bool
	ops    chan *op
	exited chan struct{}
}

func newCommitter(db *badger.DB) *committer {
	c := &committer{db: db, ops: make(chan *op, maxGroup), exited: make(chan struct{}),
		// A margin below badger's limits (which also count what a retry
		// adds) keeps a full group clear of ErrTxnTooBig.
		limit: weight{db.MaxBatchCount() * 9 / 10, db.MaxBatchSize() * 9 / 10}}
	go c.loop()
	return c
}

// doNew runs fn in a group transaction and returns once that transaction
// is committed and synced (or fn was rejected). w bounds what fn writes.
// It waits for the commit even if ctx ends meanwhile, so a caller never
// returns while its write is still undecided; ctx is checked only before
// queueing.
//
// fn must change no existing record: it creates keys that it checked are
// absent (new records), or writes keys that are not records (subject
// keys). A record that did not exist is never cached, so the record cache
// needs no bracket (reccache.go). An op that changes or deletes a record
// goes through doToken.
func (c *committer) doNew(ctx context.Context, w weight, fn func(txn *badger.Txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// Refused before it is queued: nothing of it is written (space.go).
	// Twice the weight: an entry goes to the write-ahead log and, if
	// large, its value to the value log as well.
	if err := c.space.admit(2 * w.size); err != nil {
		return err
	}
	o := &op{fn: fn, w: w, done: make(chan error, 1)}
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return errors.New("badgerstore: store is closed")
	}
	c.ops <- o
	c.mu.RUnlock()
	return <-o.done
}

// doToken is doNew for an op that changes or deletes no record but the
// one of the token whose hash is h: the record cache is bypassed for that
// token until the commit.
func (c *committer) doToken(ctx context.Context, h *[sha256.Size]byte, w weight, fn func(txn *badger.Txn) error) error {
	c.records.begin(h)
	defer c.records.end(h)
	return c.doNew(ctx, w, fn)
}

func (c *committer) close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.ops)
	}
	c.mu.Unlock()
	<-c.exited
}

// staged is a group whose ops have run in txn and whose commit has not
// been submitted yet.
type staged struct {
	group   []*op
	txn     *badger.Txn
	results []error
}

func (c *committer) loop() {
	defer close(c.exited)
	var next *staged // ops run, commit not submitted
	open := true
	for open || next != nil || c.carry != nil {
		var group []*op
		switch {
		case c.carry != nil:
			group, c.carry = append(group, c.carry), nil
		case open && next == nil:
			// Idle: wait for work.
			first, ok := <-c.ops
			if !ok {
				return
			}
			group = append(group, first)
		}
		// Take what is queued, without waiting: a staged group is not held
		// back for more work.
		group, open = c.gather(group, open)

		var txn *badger.Txn
		if len(group) > 0 {
			// Before the staged commit is submitted: see the comment at the
			// top of the file.
			txn = c.db.NewTransaction(true)
		}
		var inflight chan error
		if next != nil {
			inflight = make(chan error, 1)
			st := next
			// CommitWith queues the write before it returns, and calls
			// back (on another goroutine) once it is synced.
			st.txn.CommitWith(func(err error) {
				if errors.Is(err, badger.ErrConflict) {
					inflight <- err // the loop runs it again
					return
				}
				if err == nil {
					c.committed(len(st.group))
				}
				st.answer(err)
				inflight <- nil
			})
		}
		var cur *staged
		if len(group) > 0 {
			cur = c.run(txn, group)
		}
		if inflight != nil {
			if err := <-inflight; err != nil {
				// It read a key that a commit after its snapshot wrote.
				c.commit(next.group)
			}
		}
		next = cur
		if next != nil && next.txn == nil {
			c.fallback(next) // now that nothing is in flight
			next = nil
		}
	}
}

// gather appends what is queued on ops without blocking, up to maxGroup
// ops and c.limit in weight (the op that would exceed it is carried to the
// next group), and reports whether ops is still open.
func (c *committer) gather(group []*op, open bool) ([]*op, bool) {
	var w weight
	for _, o := range group {
		w = w.plus(o.w)
	}
	for open && len(group) < maxGroup {
		select {
		case o, ok := <-c.ops:
			if !ok {
				return group, false
			}
			if len(group) > 0 && !w.plus(o.w).within(c.limit) {
				c.carry = o
				return group, open
			}
			group, w = append(group, o), w.plus(o.w)
		default:
			return group, open
		}
	}
	return group, open
}

// run runs group's ops in txn. If an op fails with an error other than a
// rejection, txn is discarded and the staged group has no transaction.
func (c *committer) run(txn *badger.Txn, group []*op) *staged {
	st := &staged{group: group, txn: txn, results: make([]error, len(group))}
	for i, o := range group {
		st.results[i] = o.fn(txn)
		if st.results[i] != nil && !rejected(st.results[i]) {
			// The failing op may have written part of its work.
			txn.Discard()
			st.txn = nil
			break
		}
	}
	return st
}

func (st *staged) answer(err error) {
	for i, o := range st.group {
		if err != nil {
			o.done <- err
		} else {
			o.done <- st.results[i]
		}
	}
}

// committed counts one committed group of n ops.
func (c *committer) committed(n int) {
	c.groups.Add(1)
	c.groupOps.Add(int64(n))
}

// fallback handles a group in which an op failed (not a rejection): that
// op may have written part of its work, so the shared transaction was
// dropped; every op gets a transaction of its own.
func (c *committer) fallback(st *staged) {
	c.fallbacks.Add(1)
	if len(st.group) == 1 {
		st.group[0].done <- st.results[0]
		return
	}
	for _, o := range st.group {
		c.commit([]*op{o})
	}
}

// commit runs group in a transaction of its own and commits it, with
// nothing else of the committer's in flight, retrying on conflicts (a
// shred or purge committed in between: redo the checks).
func (c *committer) commit(group []*op) {
	for range conflictRetries {
		st := c.run(c.db.NewTransaction(true), group)
		if st.txn == nil {
			c.fallback(st)
			return
		}
		err := st.txn.Commit()
		if errors.Is(err, badger.ErrConflict) {
			continue
		}
		if err == nil {
			c.committed(len(group))
		}
		st.answer(err)
		return
	}
	for _, o := range group {
		o.done <- fmt.Errorf("badgerstore: too much contention: %w", badger.ErrConflict)
	}
}
