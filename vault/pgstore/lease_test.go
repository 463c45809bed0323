package pgstore_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/vault"
)

// TestLeaseOneHolder: two store handles on one database (two replicas)
// never hold a lease at once; the holder renews it; when it stops
// renewing (it died) the other takes it after the TTL; a release hands
// it over at once.
func TestLeaseOneHolder(t *testing.T) {
	ctx := context.Background()
	a, db := open(t)
	b := openOn(t, db)
	const ttl = 2 * time.Second
	if ok, err := a.TryLease(ctx, "purge", "replica-a", ttl); err != nil || !ok {
		t.Fatalf("A takes a free lease = %v, %v", ok, err)
	}
	if ok, err := b.TryLease(ctx, "purge", "replica-b", ttl); err != nil || ok {
		t.Fatalf("B takes A's live lease = %v, %v", ok, err)
	}
	if ok, err := a.TryLease(ctx, "purge", "replica-a", ttl); err != nil || !ok {
		t.Fatalf("A renews = %v, %v", ok, err)
	}
	// Another lease name is independent.
	if ok, err := b.TryLease(ctx, "rewrap", "replica-b", ttl); err != nil || !ok {
		t.Fatalf("B takes another lease = %v, %v", ok, err)
	}
	// A dies (stops renewing): B gets the lease once it has expired, and
	// not before (B polls; the first success must come after the TTL).
	died := time.Now()
	for {
		ok, err := b.TryLease(ctx, "purge", "replica-b", ttl)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if time.Since(died) < ttl/2 {
		t.Fatal("B took A's lease long before it expired")
	}
	if ok, _ := a.TryLease(ctx, "purge", "replica-a", ttl); ok {
		t.Fatal("A took the lease back from B")
	}
	if err := b.ReleaseLease(ctx, "purge", "replica-b"); err != nil {
		t.Fatal(err)
	}
	if ok, err := a.TryLease(ctx, "purge", "replica-a", ttl); err != nil || !ok {
		t.Fatalf("A after B's release = %v, %v", ok, err)
	}
}

// TestLeaseContended: many handles racing for a lease in rounds; in each
// round exactly one wins.
func TestLeaseContended(t *testing.T) {
	ctx := context.Background()
	first, db := open(t)
	stores := []interface {
		TryLease(context.Context, string, string, time.Duration) (bool, error)
	}{first, openOn(t, db), openOn(t, db), openOn(t, db)}
	for round := range 20 {
		name := "job-" + string(rune('a'+round))
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i, s := range stores {
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					holder := string(rune('A'+i)) + string(rune('0'+w))
					ok, err := s.TryLease(ctx, name, holder, time.Minute)
					if err != nil {
						t.Error(err)
					}
					if ok {
						wins.Add(1)
					}
				}()
			}
		}
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d holders of one lease", round, n)
		}
	}
}

// TestKeepLease: vault.KeepLease keeps a lease its holder would lose
// without renewal, and when another holder has it meanwhile (here: A's
// lease released behind its back and taken by B), A's next renewal is
// refused, lost is called once, and renewal stops.
func TestKeepLease(t *testing.T) {
	ctx := context.Background()
	a, db := open(t)
	b := openOn(t, db)
	const ttl = time.Second
	if ok, err := a.TryLease(ctx, "job", "replica-a", ttl); err != nil || !ok {
		t.Fatalf("A takes a free lease = %v, %v", ok, err)
	}
	lost := make(chan error, 2)
	stop := vault.KeepLease(ctx, a, "job", "replica-a", ttl, func(err error) { lost <- err })
	defer stop()
	// Three lease lifetimes later, only renewal can have kept it.
	time.Sleep(3 * ttl)
	if ok, err := b.TryLease(ctx, "job", "replica-b", ttl); err != nil || ok {
		t.Fatalf("B takes the lease A keeps = %v, %v", ok, err)
	}
	select {
	case err := <-lost:
		t.Fatalf("A lost a lease it was renewing: %v", err)
	default:
	}
	if err := a.ReleaseLease(ctx, "job", "replica-a"); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.TryLease(ctx, "job", "replica-b", ttl); err != nil || !ok {
		t.Fatalf("B after the release = %v, %v", ok, err)
	}
	select {
	case err := <-lost:
		if err != nil {
			t.Fatalf("lost(%v), want nil: the renewal was refused, not failed", err)
		}
	case <-time.After(10 * ttl):
		t.Fatal("A's refused renewal was never reported")
	}
	// Renewal stopped: B keeps its lease, and lost is not called again.
	time.Sleep(ttl)
	if ok, err := b.TryLease(ctx, "job", "replica-b", ttl); err != nil || !ok {
		t.Fatalf("B renews its lease = %v, %v", ok, err)
	}
	if len(lost) != 0 {
		t.Fatal("lost was called more than once")
	}
}
