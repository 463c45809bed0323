package storetest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/vault"
)

// RunHolds checks [vault.HoldStore]: scheduling holds in the erasure's
// transaction, the due index, the hold's shred with its ledger entry and
// receipt.
func RunHolds(t *testing.T, newStore NewStore) {
	runTests(t, newStore, []test{
		{"EraseWithHolds", testEraseWithHolds},
		{"OnlyHeldData", testOnlyHeldData},
		{"DueOrder", testHoldsDueOrder},
	})
}

func testEraseWithHolds(t *testing.T, s vault.Store) {
	ctx := context.Background()
	hs := as[vault.HoldStore](t, s)
	own := mustCreate(t, s, "alice")
	held := mustCreate(t, s, vault.HoldSubject("alice", "tax"))
	if err := s.PutRecords(ctx, vault.HoldSubject("alice", "tax"), held.ID, []vault.Record{rec(held.ID, "4111110000001111", nil)}); err != nil {
		t.Fatal(err)
	}
	if _, err := hs.HoldOf(ctx, held.ID); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("HoldOf before the erasure = %v, want ErrNotFound", err)
	}
	at := time.Now().UTC().Truncate(time.Microsecond)
	h := vault.Hold{ID: held.ID, Class: "tax", ErasedAt: at, Until: at.Add(time.Hour)}
	ledgerHash := bytes.Repeat([]byte{0xab}, 32)
	id, err := hs.ShredSubjectHolding(ctx, "alice", vault.LedgerEntry{Hash: ledgerHash, ErasedAt: at}, []vault.Hold{h})
	if err != nil || id != own.ID {
		t.Fatalf("ShredSubjectHolding = %x, %v; want the subject's own key", id, err)
	}
	if _, err := s.SubjectKey(ctx, "alice"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("the subject's own key survived: %v", err)
	}
	if pending, _ := s.PendingPurges(ctx); !slices.Contains(pending, own.ID) {
		t.Fatal("the shredded key is not pending purge")
	}
	if _, err := s.SubjectKey(ctx, vault.HoldSubject("alice", "tax")); err != nil {
		t.Fatalf("the hold key did not survive the erasure: %v", err)
	}
	got, err := hs.HoldOf(ctx, held.ID)
	if err != nil || got.Class != "tax" || !got.ErasedAt.Equal(at) || !got.Until.Equal(h.Until) || got.ID != held.ID {
		t.Fatalf("HoldOf = %+v, %v; want %+v", got, err, h)
	}
	// Erasing again: nothing of its own, the hold already scheduled.
	if _, err := hs.ShredSubjectHolding(ctx, "alice", vault.LedgerEntry{}, []vault.Hold{h}); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("second erasure = %v, want ErrNotFound", err)
	}
	if due, err := hs.DueHolds(ctx, at.Add(time.Hour-time.Second), 10); err != nil || len(due) != 0 {
		t.Fatalf("DueHolds before the end = %v, %v", due, err)
	}
	due, err := hs.DueHolds(ctx, h.Until, 10)
	if err != nil || len(due) != 1 || due[0].ID != held.ID {
		t.Fatalf("DueHolds at the end = %v, %v", due, err)
	}
	receipt := []byte(`{"a receipt":1}`)
	pseudoHash := bytes.Repeat([]byte{0xcd}, 32)
	if err := hs.ShredHold(ctx, held.ID, vault.LedgerEntry{Hash: pseudoHash, ErasedAt: h.Until}, "alice", receipt); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SubjectKeyByID(ctx, held.ID); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("the hold key survived its shred: %v", err)
	}
	if _, err := hs.HoldOf(ctx, held.ID); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("HoldOf after the shred = %v", err)
	}
	if due, _ := hs.DueHolds(ctx, h.Until.Add(time.Hour), 10); len(due) != 0 {
		t.Fatalf("a shredded hold is still due: %v", due)
	}
	if pending, _ := s.PendingPurges(ctx); !slices.Contains(pending, held.ID) {
		t.Fatal("the shredded hold key is not pending purge")
	}
	if c, err := s.PurgeKey(ctx, held.ID); err != nil || c.Records != 1 {
		t.Fatalf("PurgeKey = %+v, %v", c, err)
	}
	if err := hs.ShredHold(ctx, held.ID, vault.LedgerEntry{}, "alice", receipt); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("second ShredHold = %v, want ErrNotFound", err)
	}
	rs, err := hs.HoldReceipts(ctx, "alice")
	if err != nil || len(rs) != 1 || !bytes.Equal(rs[0], receipt) {
		t.Fatalf("HoldReceipts = %q, %v", rs, err)
	}
	if rs, err := hs.HoldReceipts(ctx, "bob"); err != nil || len(rs) != 0 {
		t.Fatalf("HoldReceipts of another subject = %q, %v", rs, err)
	}
	if ls, ok := s.(vault.LedgerStore); ok {
		entries, err := ls.LedgerEntries(ctx, nil, 10)
		if err != nil || len(entries) != 2 {
			t.Fatalf("ledger = %v, %v; want the subject's and the hold's entries", entries, err)
		}
	}
}

func testOnlyHeldData(t *testing.T, s vault.Store) {
	ctx := context.Background()
	hs := as[vault.HoldStore](t, s)
	held := mustCreate(t, s, vault.HoldSubject("bob", "tax"))
	at := time.Now().UTC().Truncate(time.Microsecond)
	if _, err := hs.ShredSubjectHolding(ctx, "carol", vault.LedgerEntry{}, nil); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("erasing an unknown subject = %v, want ErrNotFound", err)
	}
	id, err := hs.ShredSubjectHolding(ctx, "bob", vault.LedgerEntry{}, []vault.Hold{{ID: held.ID, Class: "tax", ErasedAt: at, Until: at.Add(time.Minute)}})
	if err != nil || id != (vault.KeyID{}) {
		t.Fatalf("ShredSubjectHolding of held data only = %x, %v; want a zero id", id, err)
	}
	if _, err := hs.HoldOf(ctx, held.ID); err != nil {
		t.Fatal(err)
	}
	// A hold whose key is gone is skipped.
	var gone vault.KeyID
	gone[0] = 1
	if _, err := hs.ShredSubjectHolding(ctx, "dave", vault.LedgerEntry{}, []vault.Hold{{ID: gone, Class: "tax", ErasedAt: at, Until: at}}); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("a hold without its key = %v, want ErrNotFound", err)
	}
	if _, err := hs.HoldOf(ctx, gone); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("a hold without its key was scheduled: %v", err)
	}
}

func testHoldsDueOrder(t *testing.T, s vault.Store) {
	ctx := context.Background()
	hs := as[vault.HoldStore](t, s)
	at := time.Now().UTC().Truncate(time.Microsecond)
	var want []vault.KeyID
	for i, subject := range []string{"s0", "s1", "s2", "s3"} {
		k := mustCreate(t, s, vault.HoldSubject(subject, "tax"))
		// Later subjects end earlier: the index orders by end, not by key.
		until := at.Add(time.Duration(10-i) * time.Minute)
		if _, err := hs.ShredSubjectHolding(ctx, subject, vault.LedgerEntry{}, []vault.Hold{{ID: k.ID, Class: "tax", ErasedAt: at, Until: until}}); err != nil {
			t.Fatal(err)
		}
		want = append([]vault.KeyID{k.ID}, want...)
	}
	due, err := hs.DueHolds(ctx, at.Add(time.Hour), 3)
	if err != nil || len(due) != 3 {
		t.Fatalf("DueHolds = %v, %v", due, err)
	}
	for i, h := range due {
		if h.ID != want[i] {
			t.Fatalf("due[%d] is not the %d-th earliest hold", i, i)
		}
	}
}
