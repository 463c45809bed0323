package vault

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"
)

// What several servers sharing one store (replicas on PostgreSQL) need of
// the vault beyond the store's own guarantees: early cache drops when
// another server announces a change, and one KEK administration at a time.

// ForgetKey drops what is cached for the subject key id (zeroed once no
// request uses it): another server erased, restricted or rectified its
// subject and said so. An early drop only: with a shared store every
// request reads the subject's key from the store anyway.
func (v *Vault) ForgetKey(id KeyID) { v.cache.invalidate("", id) }

// ForgetKeys drops every cached key: changes may have been made elsewhere
// that this server did not hear of.
func (v *Vault) ForgetKeys() { v.cache.forgetAll() }

// forgetAll is purge, with the generation moved on so that a request that
// read the store before it does not cache what it read.
func (c *keyCache) forgetAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for c.lru.Len() > 0 {
		c.removeLocked(c.lru.Back())
	}
}

// LeaseStore is the optional capability of stores several servers share:
// leases that let one server at a time run a job (see pgstore's
// TryLease). A store without it is one server's alone.
type LeaseStore interface {
	// TryLease takes or renews lease name for holder for ttl and reports
	// whether holder holds it.
	TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	// ReleaseLease gives holder's lease up.
	ReleaseLease(ctx context.Context, name, holder string) error
}

// ErrKEKBusy: another server (replica) is rotating, rewrapping or
// retiring the KEK. A FailedPrecondition: retry once it has finished.
var ErrKEKBusy = fmt.Errorf("%w: another replica is rotating, rewrapping or retiring the key-encryption key", ErrFailedPrecondition)

// kekLease names the lease of KEK administration; kekLeaseTTL is how
// long it outlives a server that died holding it.
const (
	kekLease    = "kek-admin"
	kekLeaseTTL = 30 * time.Second
)

// WithKEKLease runs fn (a KEK rotation, rewrap or retirement) while
// holding the store's KEK administration lease, renewed while fn runs, so
// that two servers never run one at once: a second gets ErrKEKBusy. If
// the lease is lost (the database unreachable for longer than its TTL),
// fn's context is cancelled. On a store without leases fn just runs.
func (v *Vault) WithKEKLease(ctx context.Context, fn func(context.Context) error) error {
	ls, ok := v.store.(LeaseStore)
	if !ok {
		return fn(ctx)
	}
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	holder := "kek/" + hex.EncodeToString(b)
	got, err := ls.TryLease(ctx, kekLease, holder, kekLeaseTTL)
	if err != nil {
		return fmt.Errorf("vault: taking the KEK administration lease: %w", err)
	}
	if !got {
		return ErrKEKBusy
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		ls.ReleaseLease(rctx, kekLease, holder)
	}()
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := KeepLease(fctx, ls, kekLease, holder, kekLeaseTTL, func(err error) {
		v.log.Warn("KEK administration: lost its lease, stopping", "err", err)
		cancel()
	})
	defer stop()
	return fn(fctx)
}

// KeepLease renews lease name, held by holder, every third of ttl until
// stop is called. When a renewal fails or is refused (another holder has
// it: this one's lapsed), it calls lost with the error (nil if refused)
// and renews no more: whoever holds the lease must then stop the work it
// guards, so lost typically cancels that work's context.
func KeepLease(ctx context.Context, ls LeaseStore, name, holder string, ttl time.Duration, lost func(error)) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if ok, err := ls.TryLease(ctx, name, holder, ttl); err != nil || !ok {
					lost(err)
					return
				}
			}
		}
	}()
	return func() { close(done) }
}
