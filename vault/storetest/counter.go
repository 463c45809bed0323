package storetest

import (
	"context"
	"testing"

	"github.com/tokenvault/tokenvault/vault"
)

// RunTokenCounter checks [vault.TokenCounter] against the core writes
// that add and remove token records.
func RunTokenCounter(t *testing.T, newStore NewStore) {
	runTests(t, newStore, []test{
		{"CountTokens", testCountTokens},
	})
}

func testCountTokens(t *testing.T, s vault.Store) {
	ctx := context.Background()
	tc := as[vault.TokenCounter](t, s)
	count := func(want int64, when string) {
		t.Helper()
		if n, err := tc.CountTokens(ctx); err != nil || n != want {
			t.Fatalf("CountTokens %s = %d, %v; want %d", when, n, err, want)
		}
	}
	count(0, "of an empty store")
	a := mustCreate(t, s, "alice")
	b := mustCreate(t, s, "bob")
	if err := s.PutRecords(ctx, "alice", a.ID, []vault.Record{rec(a.ID, "a-1", lookup(1)), rec(a.ID, "a-2", nil), rec(a.ID, "a-3", nil)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRecords(ctx, "bob", b.ID, []vault.Record{rec(b.ID, "b-1", nil)}); err != nil {
		t.Fatal(err)
	}
	count(4, "after storing 4 records")
	// A rejected batch adds nothing.
	if err := s.PutRecords(ctx, "bob", b.ID, []vault.Record{rec(b.ID, "b-2", nil), rec(b.ID, "a-1", nil)}); err == nil {
		t.Fatal("PutRecords accepted a taken token")
	}
	count(4, "after a rejected batch")
	if err := s.DeleteRecord(ctx, "a-2"); err != nil {
		t.Fatal(err)
	}
	count(3, "after DeleteRecord")
	if _, err := s.ShredSubject(ctx, "alice", vault.LedgerEntry{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PurgeKey(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	count(1, "after alice's erasure")
}
