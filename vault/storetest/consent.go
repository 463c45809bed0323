package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/tokenvault/tokenvault/vault"
)

// RunConsent checks [vault.ConsentStore]: history order and paging, the
// latest entry per tag, the key check, and that the purge deletes it.
func RunConsent(t *testing.T, newStore NewStore) {
	runTests(t, newStore, []test{
		{"HistoryAndLatest", testConsentHistory},
		{"ErasedKey", testConsentErasedKey},
		{"PurgeDeletes", testConsentPurge},
	})
}

func consentEntry(tag byte, i int) vault.ConsentEntry {
	return vault.ConsentEntry{Tag: bytes.Repeat([]byte{tag}, 32), Sealed: []byte(fmt.Sprintf("sealed-consent-entry-%04d-padded-beyond-the-aead-overhead", i))}
}

func testConsentHistory(t *testing.T, s vault.Store) {
	ctx := context.Background()
	cs := as[vault.ConsentStore](t, s)
	k := mustCreate(t, s, "alice")
	other := mustCreate(t, s, "bob")
	if _, err := cs.LatestConsent(ctx, k.ID, bytes.Repeat([]byte{1}, 32)); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("latest of an empty history: %v", err)
	}
	var want []vault.ConsentEntry
	for i := range 7 {
		e := consentEntry(byte(1+i%2), i)
		if err := cs.AppendConsent(ctx, "alice", k.ID, e); err != nil {
			t.Fatal(err)
		}
		want = append(want, e)
	}
	if err := cs.AppendConsent(ctx, "bob", other.ID, consentEntry(1, 99)); err != nil {
		t.Fatal(err)
	}
	var got []vault.ConsentEntry
	for after := uint64(0); ; after += 3 {
		page, err := cs.ConsentHistory(ctx, k.ID, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page...)
		if len(page) < 3 {
			break
		}
	}
	if len(got) != len(want) {
		t.Fatalf("history has %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i].Tag, want[i].Tag) || !bytes.Equal(got[i].Sealed, want[i].Sealed) {
			t.Fatalf("entry %d: got %q, want %q (append order)", i, got[i].Sealed, want[i].Sealed)
		}
	}
	for tag, last := range map[byte]int{1: 6, 2: 5} {
		e, err := cs.LatestConsent(ctx, k.ID, bytes.Repeat([]byte{tag}, 32))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(e.Sealed, want[last].Sealed) {
			t.Fatalf("latest for tag %d: %q, want %q", tag, e.Sealed, want[last].Sealed)
		}
	}
}

func testConsentErasedKey(t *testing.T, s vault.Store) {
	ctx := context.Background()
	cs := as[vault.ConsentStore](t, s)
	k := mustCreate(t, s, "alice")
	if _, err := s.ShredSubject(ctx, "alice", vault.LedgerEntry{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.AppendConsent(ctx, "alice", k.ID, consentEntry(1, 0)); !errors.Is(err, vault.ErrErased) {
		t.Fatalf("append under a shredded key: %v, want ErrErased", err)
	}
	if err := cs.AppendConsent(ctx, "nobody", k.ID, consentEntry(1, 0)); !errors.Is(err, vault.ErrErased) {
		t.Fatalf("append for a subject without key: %v, want ErrErased", err)
	}
}

func testConsentPurge(t *testing.T, s vault.Store) {
	ctx := context.Background()
	cs := as[vault.ConsentStore](t, s)
	k := mustCreate(t, s, "alice")
	for i := range 3 {
		if err := cs.AppendConsent(ctx, "alice", k.ID, consentEntry(1, i)); err != nil {
			t.Fatal(err)
		}
	}
	id, err := s.ShredSubject(ctx, "alice", vault.LedgerEntry{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PurgeKey(ctx, id); err != nil {
		t.Fatal(err)
	}
	if h, err := cs.ConsentHistory(ctx, k.ID, 0, 10); err != nil || len(h) != 0 {
		t.Fatalf("history after the purge: %d entries, %v", len(h), err)
	}
	if _, err := cs.LatestConsent(ctx, k.ID, bytes.Repeat([]byte{1}, 32)); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("latest after the purge: %v", err)
	}
	// A new key of the same subject starts a new history from 1.
	k2 := mustCreate(t, s, "alice")
	if err := cs.AppendConsent(ctx, "alice", k2.ID, consentEntry(2, 0)); err != nil {
		t.Fatal(err)
	}
	if h, _ := cs.ConsentHistory(ctx, k2.ID, 0, 10); len(h) != 1 {
		t.Fatalf("new key's history: %d entries, want 1", len(h))
	}
}
