package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/tokenvault/tokenvault/vault"
)

// RunRecordBatch checks [vault.RecordBatchStore] against [vault.Store.Record].
func RunRecordBatch(t *testing.T, newStore NewStore) {
	runTests(t, newStore, []test{
		{"RecordsOf", testRecordsOf},
	})
}

func testRecordsOf(t *testing.T, s vault.Store) {
	ctx := context.Background()
	rb := as[vault.RecordBatchStore](t, s)
	a := mustCreate(t, s, "alice")
	b := mustCreate(t, s, "bob")
	if err := s.PutRecords(ctx, "alice", a.ID, []vault.Record{rec(a.ID, "a-1", lookup(1)), rec(a.ID, "a-2", nil)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRecords(ctx, "bob", b.ID, []vault.Record{rec(b.ID, "b-1", nil)}); err != nil {
		t.Fatal(err)
	}
	tokens := []string{"missing", "b-1", "a-1", "", "a-1", "a-3"}
	var got []int
	err := rb.RecordsOf(ctx, tokens, func(i int, r vault.Record) error {
		got = append(got, i)
		want, err := s.Record(ctx, tokens[i])
		if err != nil {
			t.Fatalf("Record(%s): %v", tokens[i], err)
		}
		if !sameRecord(r, want) {
			t.Fatalf("RecordsOf gave %+v for %s; Record gives %+v", r, tokens[i], want)
		}
		return nil
	})
	if err != nil || len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 4 {
		t.Fatalf("RecordsOf found %v, %v; want indexes [1 2 4], in order", got, err)
	}
	if err := rb.RecordsOf(ctx, nil, func(int, vault.Record) error { t.Fatal("found in nothing"); return nil }); err != nil {
		t.Fatal(err)
	}
	stop := errors.New("stop")
	calls := 0
	if err := rb.RecordsOf(ctx, tokens, func(int, vault.Record) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("an error from found: RecordsOf = %v after %d calls; want it at once", err, calls)
	}
}

// RunLookupBatch checks [vault.LookupBatchStore] against [vault.Store.Lookup]
// and [vault.Store.Record].
func RunLookupBatch(t *testing.T, newStore NewStore) {
	runTests(t, newStore, []test{
		{"LookupsOf", testLookupsOf},
	})
}

func testLookupsOf(t *testing.T, s vault.Store) {
	ctx := context.Background()
	lb := as[vault.LookupBatchStore](t, s)
	a := mustCreate(t, s, "alice")
	b := mustCreate(t, s, "bob")
	if err := s.PutRecords(ctx, "alice", a.ID, []vault.Record{rec(a.ID, "a-1", lookup(1)), rec(a.ID, "a-2", lookup(2)), rec(a.ID, "a-3", nil)}); err != nil {
		t.Fatal(err)
	}
	// bob's lookup 3 is not alice's: lookups are per key.
	if err := s.PutRecords(ctx, "bob", b.ID, []vault.Record{rec(b.ID, "b-1", lookup(3))}); err != nil {
		t.Fatal(err)
	}
	lookups := [][]byte{lookup(4), lookup(2), lookup(3), lookup(1), nil, lookup(2)}
	var got []int
	err := lb.LookupsOf(ctx, a.ID, lookups, func(i int, r vault.Record) error {
		got = append(got, i)
		tok, err := s.Lookup(ctx, a.ID, lookups[i])
		if err != nil {
			t.Fatalf("Lookup(%d): %v", i, err)
		}
		want, err := s.Record(ctx, tok)
		if err != nil {
			t.Fatalf("Record(%s): %v", tok, err)
		}
		if !sameRecord(r, want) {
			t.Fatalf("LookupsOf gave %+v for lookup %d; Lookup and Record give %+v", r, i, want)
		}
		return nil
	})
	if err != nil || len(got) != 3 || got[0] != 1 || got[1] != 3 || got[2] != 5 {
		t.Fatalf("LookupsOf found %v, %v; want indexes [1 3 5], in order", got, err)
	}
	if err := lb.LookupsOf(ctx, a.ID, nil, func(int, vault.Record) error { t.Fatal("found in nothing"); return nil }); err != nil {
		t.Fatal(err)
	}
	stop := errors.New("stop")
	calls := 0
	if err := lb.LookupsOf(ctx, a.ID, lookups, func(int, vault.Record) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("an error from found: LookupsOf = %v after %d calls; want it at once", err, calls)
	}
	// A deleted record is not found, though its lookup was written.
	if err := s.DeleteRecord(ctx, "a-2"); err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	if err := lb.LookupsOf(ctx, a.ID, lookups, func(i int, r vault.Record) error { got = append(got, i); return nil }); err != nil || len(got) != 1 || got[0] != 3 {
		t.Fatalf("after deleting a-2: LookupsOf found %v, %v; want [3]", got, err)
	}
}
