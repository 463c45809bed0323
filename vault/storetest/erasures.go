package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/vault"
)

// RunErasureEvents checks [vault.ErasureEventStore]: the event is
// written with the shred and in commit order, cursors, acknowledgement,
// trimming, and that no subject id is held in the clear.
func RunErasureEvents(t *testing.T, newStore NewStore) {
	runTests(t, newStore, []test{
		{"ShredWritesTheEvent", testShredWritesEvent},
		{"CommitOrder", testEventCommitOrder},
		{"Cursors", testEventCursors},
		{"Trim", testEventTrim},
		{"NoSubjectIDInStoredEvents", testEventAtRest},
	})
}

func shredEvent(t *testing.T, s vault.Store, subject string, at time.Time) vault.ErasureEvent {
	t.Helper()
	ev, err := as[vault.ErasureEventStore](t, s).ShredErasure(context.Background(), subject, vault.LedgerEntry{}, vault.ErasureEvent{ErasedAt: at})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func events(t *testing.T, es vault.ErasureEventStore, after uint64) []vault.ErasureEvent {
	t.Helper()
	evs, err := es.ErasureEvents(context.Background(), after, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func testShredWritesEvent(t *testing.T, s vault.Store) {
	ctx := context.Background()
	es := as[vault.ErasureEventStore](t, s)
	k := mustCreate(t, s, "alice")
	at := time.Now().UTC().Truncate(time.Microsecond)
	ev := shredEvent(t, s, "alice", at)
	if ev.Seq != 1 || ev.KeyID != k.ID || ev.Subject != "alice" {
		t.Fatalf("event %+v", ev)
	}
	if _, err := s.SubjectKey(ctx, "alice"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("the key survived ShredErasure: %v", err)
	}
	if p, _ := s.PendingPurges(ctx); len(p) != 1 {
		t.Fatalf("pending purges %v", p)
	}
	if _, err := es.ShredErasure(ctx, "alice", vault.LedgerEntry{}, vault.ErasureEvent{ErasedAt: at}); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("second shred: %v", err)
	}
	if err := es.AttachReceipt(ctx, 1, []byte("signed receipt")); err != nil {
		t.Fatal(err)
	}
	got := events(t, es, 0)
	if len(got) != 1 || got[0].Subject != "alice" || !got[0].ErasedAt.Equal(at) || got[0].KeyID != k.ID || string(got[0].Receipt) != "signed receipt" {
		t.Fatalf("stored events %+v", got)
	}
}

func testEventCommitOrder(t *testing.T, s vault.Store) {
	es := as[vault.ErasureEventStore](t, s)
	const n = 20
	for i := range n {
		mustCreate(t, s, fmt.Sprintf("s%02d", i))
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { shredEvent(t, s, fmt.Sprintf("s%02d", i), time.Now()) })
	}
	wg.Wait()
	got := events(t, es, 0)
	seen := map[string]bool{}
	for i, ev := range got {
		if ev.Seq != uint64(i+1) {
			t.Fatalf("event %d has sequence %d (gaps or duplicates)", i, ev.Seq)
		}
		seen[ev.Subject] = true
	}
	if len(got) != n || len(seen) != n {
		t.Fatalf("%d events for %d subjects, want %d", len(got), len(seen), n)
	}
}

func testEventCursors(t *testing.T, s vault.Store) {
	ctx := context.Background()
	es := as[vault.ErasureEventStore](t, s)
	for _, subj := range []string{"a", "b", "c"} {
		mustCreate(t, s, subj)
		shredEvent(t, s, subj, time.Now())
	}
	if err := es.AckErasures(ctx, "crm", 1); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("ack of an unregistered consumer: %v", err)
	}
	for range 2 { // registering twice keeps the cursor
		if err := es.RegisterConsumer(ctx, "crm"); err != nil {
			t.Fatal(err)
		}
	}
	if c, _ := es.Consumers(ctx); c["crm"] != 0 {
		t.Fatalf("a new consumer's cursor is %d, want 0 (before every event)", c["crm"])
	}
	if err := es.AckErasures(ctx, "crm", 2); err != nil {
		t.Fatal(err)
	}
	if err := es.AckErasures(ctx, "crm", 1); err != nil {
		t.Fatal(err)
	}
	if err := es.AckErasures(ctx, "crm", 4); !errors.Is(err, vault.ErrInvalidArgument) {
		t.Fatalf("ack beyond the last event: %v", err)
	}
	if err := es.RegisterConsumer(ctx, "crm"); err != nil {
		t.Fatal(err)
	}
	if c, _ := es.Consumers(ctx); c["crm"] != 2 {
		t.Fatalf("cursor %d, want 2 (never back, kept on re-registration)", c["crm"])
	}
}

func testEventTrim(t *testing.T, s vault.Store) {
	ctx := context.Background()
	es := as[vault.ErasureEventStore](t, s)
	now := time.Now()
	old := now.Add(-40 * 24 * time.Hour)
	for i, at := range []time.Time{old, now, now} {
		subj := fmt.Sprintf("t%d", i)
		mustCreate(t, s, subj)
		shredEvent(t, s, subj, at)
	}
	for _, c := range []string{"crm", "billing"} {
		if err := es.RegisterConsumer(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := es.AckErasures(ctx, "crm", 3); err != nil {
		t.Fatal(err)
	}
	if err := es.AckErasures(ctx, "billing", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := es.TrimErasureEvents(ctx, now.Add(-30*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	got := events(t, es, 0)
	if len(got) != 1 || got[0].Seq != 3 || got[0].Subject != "t2" {
		t.Fatalf("after trimming what both acknowledged: %+v, want event 3 only", got)
	}
	// Past the retention the id goes even though billing is behind.
	if _, err := es.TrimErasureEvents(ctx, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	got = events(t, es, 0)
	if len(got) != 1 || got[0].Subject != "" || got[0].Receipt != nil || got[0].ErasedAt.IsZero() {
		t.Fatalf("an event past the retention: %+v, want it without subject id", got)
	}
	if err := es.AckErasures(ctx, "billing", 3); err != nil {
		t.Fatal(err)
	}
	if _, err := es.TrimErasureEvents(ctx, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := events(t, es, 0); len(got) != 0 {
		t.Fatalf("%d events left after every consumer acknowledged", len(got))
	}
}

func testEventAtRest(t *testing.T, s vault.Store) {
	snap, ok := s.(Snapshotter)
	if !ok {
		t.Skip("the store has no snapshot to search")
	}
	const subj = "zz-evented-subject-9e41"
	mustCreate(t, s, subj)
	ev := shredEvent(t, s, subj, time.Now())
	if err := as[vault.ErasureEventStore](t, s).AttachReceipt(context.Background(), ev.Seq, []byte(`{"subject_id":"`+subj+`"}`)); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := snap.Snapshot(&b, 0); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b.Bytes(), []byte(subj)) {
		t.Fatal("a pending erasure event holds the subject id in the clear")
	}
}
