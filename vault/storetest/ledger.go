package storetest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/vault"
)

// RunLedger checks [vault.LedgerStore], and the ledger entry that
// [vault.Store.ShredSubject] adds.
func RunLedger(t *testing.T, newStore NewStore) {
	runTests(t, newStore, []test{
		{"Ledger", testLedger},
	})
}

func testLedger(t *testing.T, s vault.Store) {
	ctx := context.Background()
	ls := as[vault.LedgerStore](t, s)
	mustCreate(t, s, "alice")
	mustCreate(t, s, "bob")
	at := time.Now().UTC().Truncate(time.Microsecond)
	ha := bytes.Repeat([]byte{0xaa}, 32)
	if _, err := s.ShredSubject(ctx, "alice", vault.LedgerEntry{Hash: ha, ErasedAt: at}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ShredSubject(ctx, "bob", vault.LedgerEntry{Hash: []byte("short"), ErasedAt: at}); err == nil {
		t.Fatal("ShredSubject accepted a malformed ledger hash")
	}
	if _, err := s.SubjectKey(ctx, "bob"); err != nil {
		t.Fatalf("a rejected shred deleted the key: %v", err)
	}
	// Shred with no ledger entry (the subject is absent): nothing added.
	if _, err := s.ShredSubject(ctx, "carol", vault.LedgerEntry{Hash: bytes.Repeat([]byte{1}, 32), ErasedAt: at}); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("shred of unknown subject: %v", err)
	}
	var entries []vault.LedgerEntry
	for i := range 12 {
		entries = append(entries, vault.LedgerEntry{Hash: bytes.Repeat([]byte{byte(i + 2)}, 32), ErasedAt: at.Add(time.Duration(i) * time.Second)})
	}
	// An older time for an existing entry does not move it back.
	entries = append(entries, vault.LedgerEntry{Hash: ha, ErasedAt: at.Add(-time.Hour)})
	if err := ls.PutLedgerEntries(ctx, entries); err != nil {
		t.Fatal(err)
	}
	got := map[string]time.Time{}
	var after []byte
	for {
		page, err := ls.LedgerEntries(ctx, after, 5)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for i, e := range page {
			if i > 0 && bytes.Compare(page[i-1].Hash, e.Hash) >= 0 {
				t.Fatal("ledger not in hash order")
			}
			got[string(e.Hash)] = e.ErasedAt
		}
		after = page[len(page)-1].Hash
	}
	if len(got) != 13 {
		t.Fatalf("ledger holds %d entries, want 13", len(got))
	}
	if !got[string(ha)].Equal(at) {
		t.Fatalf("alice's entry = %v, want %v (the later time)", got[string(ha)], at)
	}
	if !got[string(entries[4].Hash)].Equal(entries[4].ErasedAt) {
		t.Fatal("entry time not kept")
	}
}
