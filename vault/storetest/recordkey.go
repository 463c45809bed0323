package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/vault"
)

// RunRecordKey checks [vault.RecordKeyStore]: a record read with its
// subject's key, which must show a restriction and a shred as
// SubjectKeyByID would.
func RunRecordKey(t *testing.T, newStore NewStore) {
	runTests(t, newStore, []test{
		{"RecordWithKey", testRecordWithKey},
	})
}

func testRecordWithKey(t *testing.T, s vault.Store) {
	ctx := context.Background()
	rks := as[vault.RecordKeyStore](t, s)
	k := mustCreate(t, s, "alice")
	mustCreate(t, s, "bob")
	want := rec(k.ID, "tok-1", lookup(1))
	want.Expires = want.Created.Add(time.Hour)
	if err := s.PutRecords(ctx, "alice", k.ID, []vault.Record{want}); err != nil {
		t.Fatal(err)
	}
	got, subject, sk, err := rks.RecordWithKey(ctx, "tok-1")
	if err != nil || !sameRecord(got, want) || subject != "alice" || !sameKey(sk, k) || !sk.Restricted.IsZero() {
		t.Fatalf("RecordWithKey = %+v, %q, %+v, %v; want %+v, alice, %+v", got, subject, sk, err, want, k)
	}
	if _, _, _, err := rks.RecordWithKey(ctx, "tok-2"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("RecordWithKey of an unknown token: %v", err)
	}
	if rs, ok := s.(vault.RightsStore); ok {
		since := time.Now().UTC().Truncate(time.Microsecond)
		if err := rs.SetRestricted(ctx, "alice", since); err != nil {
			t.Fatal(err)
		}
		if _, _, sk, err := rks.RecordWithKey(ctx, "tok-1"); err != nil || !sk.Restricted.Equal(since) {
			t.Fatalf("RecordWithKey after restriction: restricted %v, %v; want %v", sk.Restricted, err, since)
		}
	}
	if _, err := s.ShredSubject(ctx, "alice", vault.LedgerEntry{}); err != nil {
		t.Fatal(err)
	}
	// Shredded, not yet purged: the record is there, its key is not.
	got, subject, _, err = rks.RecordWithKey(ctx, "tok-1")
	if !errors.Is(err, vault.ErrErased) || got.Token != "tok-1" || subject != "" {
		t.Fatalf("RecordWithKey after the shred = %q, %q, %v; want the record and ErrErased", got.Token, subject, err)
	}
}
