package badgerstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
)

// TestCopyIn: what a copy puts into the store (copyin.go) reads back
// through the capability interfaces, and the store's own numbering and
// schedules continue from it. (The copied receipts of hold shreds: the
// storetest group HoldReceiptCopy, run against every store.)
func TestCopyIn(t *testing.T) {
	ctx := context.Background()
	s := newStore(badgerstore.Options{InMemory: true})(t).(*badgerstore.Store)
	at := time.Unix(1700000000, 5).UTC()
	evs := []vault.ErasureEvent{
		{Seq: 4, Subject: "copied-a", ErasedAt: at, KeyID: vault.KeyID{4}, Receipt: []byte("receipt a")},
		{Seq: 7, ErasedAt: at, KeyID: vault.KeyID{7}}, // dropped
	}
	if err := s.PutErasureEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if err := s.PutErasureCursors(ctx, map[string]uint64{"crm": 4, "billing": 9}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ErasureEvents(ctx, 0, 10)
	if err != nil || len(got) != 2 || got[0].Seq != 4 || got[0].Subject != "copied-a" || string(got[0].Receipt) != "receipt a" ||
		!got[0].ErasedAt.Equal(at) || got[1].Seq != 7 || got[1].Subject != "" || got[1].KeyID != (vault.KeyID{7}) {
		t.Fatalf("copied events: %+v, %v", got, err)
	}
	if c, err := s.Consumers(ctx); err != nil || c["crm"] != 4 || c["billing"] != 9 {
		t.Fatalf("copied cursors: %v, %v", c, err)
	}
	// The highest cursor (9) is beyond the highest event: the next
	// erasure is number 10.
	sk := vault.SubjectKey{ID: vault.KeyID{0x10}, Wrapped: []byte("w"), Created: at}
	if _, err := s.CreateSubjectKey(ctx, "next", sk); err != nil {
		t.Fatal(err)
	}
	held := vault.SubjectKey{ID: vault.KeyID{0x11}, Wrapped: []byte("w"), Created: at}
	if _, err := s.CreateSubjectKey(ctx, vault.HoldSubject("next", "tax"), held); err != nil {
		t.Fatal(err)
	}
	if ev, err := s.ShredErasure(ctx, "next", vault.LedgerEntry{}, vault.ErasureEvent{ErasedAt: at}); err != nil || ev.Seq != 10 {
		t.Fatalf("the erasure after the copy: %+v, %v (want number 10)", ev, err)
	}

	// Holds: one whose key is stored is scheduled, one without its key
	// is not.
	h := vault.Hold{ID: held.ID, Class: "tax", ErasedAt: at, Until: at.Add(time.Hour)}
	if err := s.PutHolds(ctx, []vault.Hold{h, {ID: vault.KeyID{0x99}, Class: "tax", ErasedAt: at, Until: at}}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.HoldOf(ctx, held.ID); err != nil || !got.Until.Equal(h.Until) {
		t.Fatalf("copied hold: %+v, %v", got, err)
	}
	if _, err := s.HoldOf(ctx, vault.KeyID{0x99}); err == nil {
		t.Fatal("a hold without its key was scheduled")
	}
}
