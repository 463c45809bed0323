package storetest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/vault"
)

// Snapshotter is what a store that can be backed up writes its backups
// with (internal/backup's Source): every entry version, deletions
// included, in the payload encoding all stores share.
type Snapshotter interface {
	Snapshot(w io.Writer, since uint64) (uint64, error)
}

// RunAtRest checks that a store keeps no subject id in the clear: not in
// what it stores for live subjects, nor in what an erasure leaves behind
// (deletion markers, older versions). It reads what the store holds
// through its backup snapshot ([Snapshotter]), which carries every
// version and deletion; a store's own tests search its files as well.
func RunAtRest(t *testing.T, newStore NewStore) {
	runTests(t, newStore, []test{
		{"NoSubjectIDInStoredEntries", testNoSubjectIDAtRest},
	})
}

func testNoSubjectIDAtRest(t *testing.T, s vault.Store) {
	ctx := context.Background()
	snap := as[Snapshotter](t, s)
	const live, restricted, erased = "zz-live-subject-3c9a", "zz-restricted-subject-51b0", "zz-erased-subject-7d1f"
	for i, subj := range []string{live, restricted, erased} {
		k := mustCreate(t, s, subj)
		recs := []vault.Record{rec(k.ID, fmt.Sprintf("at-rest-token-%d", i), lookup(i))}
		if err := s.PutRecords(ctx, subj, k.ID, recs); err != nil {
			t.Fatal(err)
		}
		if ks, ok := s.(vault.KeyScanStore); ok {
			if err := ks.ReplaceWrapped(ctx, subj, k.ID, []byte("rewrapped")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if rs, ok := s.(vault.RightsStore); ok {
		if err := rs.SetRestricted(ctx, restricted, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	id, err := s.ShredSubject(ctx, erased, vault.LedgerEntry{Hash: bytes.Repeat([]byte{7}, 32), ErasedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PurgeKey(ctx, id); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := snap.Snapshot(&b, 0); err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{live, restricted, erased} {
		if bytes.Contains(b.Bytes(), []byte(subj)) {
			t.Fatalf("the store's entries hold subject id %s in the clear", subj)
		}
	}
}
