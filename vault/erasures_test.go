package vault_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
	"github.com/tokenvault/tokenvault/vault/receipt"
)

// watchN collects n events of one watch.
func watchN(t *testing.T, v *vault.Vault, consumer string, n int) []vault.ErasureEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []vault.ErasureEvent
	stop := errors.New("enough")
	err := v.WatchErasures(ctx, consumer, func(ev vault.ErasureEvent) error {
		got = append(got, ev)
		if len(got) == n {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("watch ended after %d of %d events: %v", len(got), n, err)
	}
	return got
}

func TestWatchErasures(t *testing.T) {
	ctx := context.Background()
	_, key, _ := ed25519.GenerateKey(nil)
	f, _ := newRightsFixture(t, vault.RightsOptions{ReceiptKey: key, BackupHorizon: time.Hour})
	if err := f.v.RegisterConsumers(ctx, []string{"crm", "billing"}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"alice", "bob", "carol"} {
		f.tokenize(t, s, vault.Field{Kind: format.Name, Value: s})
		if _, _, err := f.v.EraseSubject(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	got := watchN(t, f.v, "crm", 3)
	for i, s := range []string{"alice", "bob", "carol"} {
		ev := got[i]
		if ev.Seq != uint64(i+1) || ev.Subject != s || ev.ErasedAt.IsZero() {
			t.Fatalf("event %d: %+v", i, ev)
		}
		r, err := receipt.Parse(ev.Receipt)
		if err != nil || r.Verify(key.Public().(ed25519.PublicKey)) != nil || r.Subject != s {
			t.Fatalf("event %d's receipt: %v", i, err)
		}
	}
	// Not acknowledged: the next watch starts over; after the ack, not.
	if again := watchN(t, f.v, "crm", 1); again[0].Seq != 1 {
		t.Fatalf("redelivery starts at %d, want 1", again[0].Seq)
	}
	if err := f.v.AckErasures(ctx, "crm", 2); err != nil {
		t.Fatal(err)
	}
	if again := watchN(t, f.v, "crm", 1); again[0].Seq != 3 {
		t.Fatalf("after acknowledging 2, delivery starts at %d", again[0].Seq)
	}
	// A new event wakes a waiting watcher.
	done := make(chan []vault.ErasureEvent)
	go func() { done <- watchN(t, f.v, "crm", 2) }()
	f.tokenize(t, "dave", vault.Field{Kind: format.Name, Value: "d"})
	if _, _, err := f.v.EraseSubject(ctx, "dave"); err != nil {
		t.Fatal(err)
	}
	if evs := <-done; evs[1].Subject != "dave" || evs[1].Receipt == nil {
		t.Fatalf("live event %+v", evs[1])
	}
	// Events 1 and 2 stay while billing has not acknowledged them.
	b, err := f.v.ErasureBacklog(ctx)
	if err != nil || b["crm"].Pending != 2 || b["billing"].Pending != 4 || b["billing"].Oldest.IsZero() {
		t.Fatalf("backlog %+v, %v", b, err)
	}
	for _, c := range []string{"crm", "billing"} {
		if err := f.v.AckErasures(ctx, c, 4); err != nil {
			t.Fatal(err)
		}
	}
	if b, _ := f.v.ErasureBacklog(ctx); b["crm"].Pending != 0 || b["billing"].Pending != 0 {
		t.Fatalf("backlog after acks %+v", b)
	}
	evs, err := f.store.ErasureEvents(ctx, 0, 10)
	if err != nil || len(evs) != 0 {
		t.Fatalf("%d events kept after every consumer acknowledged them (%v)", len(evs), err)
	}
	var fe *vault.FieldError
	if err := f.v.AckErasures(ctx, "nobody", 1); !errors.As(err, &fe) || fe.Field != "consumer" {
		t.Fatalf("ack of an unknown consumer: %v", err)
	}
	if err := f.v.AckErasures(ctx, "crm", 99); !errors.As(err, &fe) || fe.Field != "sequence" {
		t.Fatalf("ack beyond the log: %v", err)
	}
}

// TestErasureEventRetention: past the retention an event loses its
// subject id even though a consumer is behind.
func TestErasureEventRetention(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	f := newFixtureWith(t, vault.Options{Now: c.now, Erasures: vault.ErasureOptions{Retention: 24 * time.Hour}})
	if err := f.v.RegisterConsumers(ctx, []string{"crm"}); err != nil {
		t.Fatal(err)
	}
	f.tokenize(t, "alice", vault.Field{Kind: format.Name, Value: "a"})
	if _, _, err := f.v.EraseSubject(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	c.add(25 * time.Hour)
	if _, err := f.v.TrimErasureEvents(ctx); err != nil {
		t.Fatal(err)
	}
	ev := watchN(t, f.v, "crm", 1)[0]
	if ev.Subject != "" || ev.Receipt != nil || ev.KeyID == (vault.KeyID{}) {
		t.Fatalf("an event past the retention: %+v", ev)
	}
}

// TestEndWatches: a waiting watch ends (nil) when the server shuts down.
func TestEndWatches(t *testing.T) {
	f := newFixture(t)
	done := make(chan error)
	go func() {
		done <- f.v.WatchErasures(context.Background(), "crm", func(vault.ErasureEvent) error { return nil })
	}()
	f.v.EndWatches()
	if err := <-done; err != nil {
		t.Fatalf("watch ended with %v", err)
	}
	if err := f.v.WatchErasures(context.Background(), "crm", func(vault.ErasureEvent) error { return nil }); err != nil {
		t.Fatalf("a watch after EndWatches: %v", err)
	}
}
