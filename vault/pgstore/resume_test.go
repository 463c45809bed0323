package pgstore_test

import (
	"context"
	"sync"
	"testing"

	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
	"github.com/tokenvault/tokenvault/vault/pgstore"
	"github.com/tokenvault/tokenvault/vault/receipt"
)

// pausesPurge is the real store with its first PurgeKey held until release:
// an erasure through it stays between its shred and its purge, as an
// erasure in flight on another replica is.
type pausesPurge struct {
	*pgstore.Store
	once             *sync.Once
	reached, release chan struct{}
}

func (p pausesPurge) PurgeKey(ctx context.Context, id vault.KeyID) (vault.PurgeCounts, error) {
	p.once.Do(func() { close(p.reached); <-p.release })
	return p.Store.PurgeKey(ctx, id)
}

// TestResumeLeavesAnErasureInFlight: while replica A's erasure is between
// its shred and its purge, replica B's ResumePurges (the background job of
// a shared store) leaves it alone, so A's receipt counts the records it
// purged. Before the fix B purged them first and A's receipt said 0 (seen
// as a flaky TestLegalHold/store=postgres in CI).
func TestResumeLeavesAnErasureInFlight(t *testing.T) {
	ctx := context.Background()
	reached, release := make(chan struct{}), make(chan struct{})
	first := true
	a, b, sa := replicas(t, func(s *pgstore.Store) vault.Store {
		if !first {
			return s
		}
		first = false
		return pausesPurge{Store: s, once: new(sync.Once), reached: reached, release: release}
	})
	if _, err := a.Tokenize(ctx, "ada", []vault.Field{{Kind: format.Email, Value: "ada@example.com"}, {Kind: format.PAN, Value: "4111111111111111"}}); err != nil {
		t.Fatal(err)
	}
	type erased struct {
		r   receipt.Receipt
		err error
	}
	done := make(chan erased, 1)
	go func() {
		r, _, err := a.EraseSubject(ctx, "ada")
		done <- erased{r, err}
	}()
	<-reached
	if p, err := sa.PendingPurgesBefore(ctx, 0); err != nil || len(p) != 1 {
		t.Fatalf("the shredded key's pending purge: %x, %v", p, err)
	}
	if n, err := b.ResumePurges(ctx); err != nil || n != 0 {
		t.Fatalf("ResumePurges on the other replica = %d, %v; want the erasure in flight left to it", n, err)
	}
	close(release)
	e := <-done
	if e.err != nil || e.r.Records != 2 {
		t.Fatalf("receipt: %d records, %v; want 2", e.r.Records, e.err)
	}
	if p, err := sa.PendingPurges(ctx); err != nil || len(p) != 0 {
		t.Fatalf("pending purges after the erasure: %x, %v", p, err)
	}
}
