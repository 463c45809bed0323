package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"sync"

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
// Any other error from an op (e.g. the group got too big for one
// transaction) makes the group fall back to one transaction per op.

// maxGroup bounds how many ops share a transaction.
const maxGroup = 256

type op struct {
	fn   func(txn *badger.Txn) error
	done chan error
}

// rejected reports errors that ops return before writing anything.
func rejected(err error) bool {
	return errors.Is(err, vault.ErrCollision) || errors.Is(err, vault.ErrErased)
}

type committer struct {
	db *badger.DB

	mu     sync.RWMutex // guards closed and sends on ops
	closed bool
	ops    chan *op
	exited chan struct{}
}

func newCommitter(db *badger.DB) *committer {
	c := &committer{db: db, ops: make(chan *op, maxGroup), exited: make(chan struct{})}
	go c.loop()
	return c
}

// do runs fn in a group transaction and returns once that transaction is
// committed and synced (or fn was rejected). It waits for the commit even
// if ctx ends meanwhile, so a caller never returns while its write is
// still undecided; ctx is checked only before queueing.
func (c *committer) do(ctx context.Context, fn func(txn *badger.Txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o := &op{fn: fn, done: make(chan error, 1)}
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return errors.New("badgerstore: store is closed")
	}
	c.ops <- o
	c.mu.RUnlock()
	return <-o.done
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

func (c *committer) loop() {
	defer close(c.exited)
	for first := range c.ops {
		group := []*op{first}
	gather:
		for len(group) < maxGroup {
			select {
			case o, ok := <-c.ops:
				if !ok {
					break gather
				}
				group = append(group, o)
			default:
				break gather
			}
		}
		c.commit(group)
	}
}

func (c *committer) commit(group []*op) {
	for range conflictRetries {
		txn := c.db.NewTransaction(true)
		results := make([]error, len(group))
		failed := false
		for i, o := range group {
			results[i] = o.fn(txn)
			if results[i] != nil && !rejected(results[i]) {
				failed = true
				break
			}
		}
		if failed {
			// The failing op may have written part of its work: drop the
			// transaction and give every op a transaction of its own.
			txn.Discard()
			if len(group) == 1 {
				group[0].done <- results[0]
				return
			}
			for _, o := range group {
				c.commit([]*op{o})
			}
			return
		}
		err := txn.Commit()
		if errors.Is(err, badger.ErrConflict) {
			continue // a shred or purge committed in between: redo the checks
		}
		for i, o := range group {
			if err != nil {
				o.done <- err
			} else {
				o.done <- results[i]
			}
		}
		return
	}
	for _, o := range group {
		o.done <- fmt.Errorf("badgerstore: too much contention: %w", badger.ErrConflict)
	}
}
