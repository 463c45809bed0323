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

// RunTokenSnapshotCounter checks [vault.TokenSnapshotCounter]: a count
// is of the store as it was when the snapshot was taken, whatever was
// written or removed before the count ran.
func RunTokenSnapshotCounter(t *testing.T, newStore NewStore) {
	runTests(t, newStore, []test{
		{"CountsTheSnapshot", testCountSnapshot},
	})
}

func testCountSnapshot(t *testing.T, s vault.Store) {
	ctx := context.Background()
	sc := as[vault.TokenSnapshotCounter](t, s)
	a := mustCreate(t, s, "alice")
	b := mustCreate(t, s, "bob")
	if err := s.PutRecords(ctx, "alice", a.ID, []vault.Record{rec(a.ID, "a-1", nil), rec(a.ID, "a-2", nil), rec(a.ID, "a-3", nil)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRecords(ctx, "bob", b.ID, []vault.Record{rec(b.ID, "b-1", nil)}); err != nil {
		t.Fatal(err)
	}
	count, err := sc.TokenCountSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	second, err := sc.TokenCountSnapshot(ctx) // counted after the first
	if err != nil {
		t.Fatal(err)
	}
	// After the snapshots: more records, a deletion and an erasure.
	if err := s.PutRecords(ctx, "bob", b.ID, []vault.Record{rec(b.ID, "b-2", nil), rec(b.ID, "b-3", nil)}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRecord(ctx, "b-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ShredSubject(ctx, "alice", vault.LedgerEntry{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PurgeKey(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	// In steps: the count goes on where it stopped.
	if n, done, err := count(ctx, 1); err != nil || n != 1 || done {
		t.Fatalf("count of 1 = %d, %v, %v; want 1, not done", n, done, err)
	}
	if n, done, err := count(ctx, 2); err != nil || n != 3 || done {
		t.Fatalf("count of 2 more = %d, %v, %v; want 3, not done", n, done, err)
	}
	if n, done, err := count(ctx, 0); err != nil || n != 4 || !done {
		t.Fatalf("count of the rest of the snapshot = %d, %v, %v; want the 4 records it held, done", n, done, err)
	}
	if _, _, err := count(ctx, 0); err == nil {
		t.Fatal("a finished snapshot count ran again")
	}
	if n, done, err := second(ctx, 0); err != nil || n != 4 || !done {
		t.Fatalf("count of the second snapshot = %d, %v, %v; want 4, done", n, done, err)
	}
	now, err := sc.TokenCountSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, done, err := now(ctx, 0); err != nil || n != 2 || !done {
		t.Fatalf("count of a snapshot after the changes = %d, %v, %v; want 2 (b-2, b-3), done", n, done, err)
	}
}
