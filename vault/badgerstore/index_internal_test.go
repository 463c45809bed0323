package badgerstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tokenvault/tokenvault/vault"
)

// indexEntries returns the record index entries under key id, key suffix
// (the group) to value.
func indexEntries(t *testing.T, s *Store, id vault.KeyID) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	prefix := key(pIndex, id[:])
	if err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out[string(it.Item().Key()[len(prefix):])] = v
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func recordGroup(t *testing.T, s *Store, token string) []byte {
	t.Helper()
	var g []byte
	if err := s.db.View(func(txn *badger.Txn) error {
		b, err := get(txn, key(pToken, tokenHash(token)))
		if err != nil {
			return err
		}
		_, g, err = decodeGrouped(b)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestIndexOneEntryPerRun: a batch of 100 records writes 4 index entries
// (runs of 31, 31, 31 and 7), each keyed by a group id its records carry
// and listing its run's hashes, sorted; a rectified record keeps its
// group; deleting records shrinks their entry, and deleting a whole run
// removes it. A record alone (here the last of 32) has its own entry.
func TestIndexOneEntryPerRun(t *testing.T) {
	ctx := t.Context()
	s, sk := openWithKey(t, t.TempDir(), "alice")
	defer s.Close()
	recs := filterRecords(sk.ID, "r", 100)
	if err := s.PutRecords(ctx, "alice", sk.ID, recs); err != nil {
		t.Fatal(err)
	}
	ents := indexEntries(t, s, sk.ID)
	if len(ents) != 4 {
		t.Fatalf("%d index entries for 100 records, want 4", len(ents))
	}
	groupOf := map[int][]byte{}
	for lo := 0; lo < 100; lo += groupMax {
		run := recs[lo:min(lo+groupMax, 100)]
		g := recordGroup(t, s, run[0].Token)
		v, ok := ents[string(g)]
		if g == nil || !ok {
			t.Fatalf("run at %d: group %x, entry %v", lo, g, ok)
		}
		for _, r := range run {
			if h := tokenHash(r.Token); bytes.Equal(g, h) {
				t.Fatalf("run at %d is keyed by a member's hash", lo)
			}
		}
		groupOf[lo] = g
		members, err := groupMembers(g, v)
		if err != nil || len(members) != len(run) {
			t.Fatalf("run at %d: entry lists %d records, %v; want %d", lo, len(members), err, len(run))
		}
		for i := 1; i < len(members); i++ {
			if bytes.Compare(members[i-1], members[i]) >= 0 {
				t.Fatalf("run at %d: entry not sorted", lo)
			}
		}
		for i, r := range run {
			if got := recordGroup(t, s, r.Token); !bytes.Equal(got, g) {
				t.Fatalf("record %d of the run at %d has group %x, want %x", i, lo, got, g)
			}
		}
	}
	if bytes.Equal(groupOf[0], groupOf[31]) {
		t.Fatal("two runs share a group id")
	}

	// A rectified record stays in its group.
	up := recs[40]
	up.Sealed = bytes.Repeat([]byte{7}, len(up.Sealed))
	if err := s.ReplaceRecord(ctx, "alice", sk.ID, up); err != nil {
		t.Fatal(err)
	}
	if g := recordGroup(t, s, up.Token); !bytes.Equal(g, groupOf[31]) {
		t.Fatalf("rectified record's group %x", g)
	}
	for _, r := range []vault.Record{up, recs[31]} {
		if err := s.DeleteRecord(ctx, r.Token); err != nil {
			t.Fatal(err)
		}
	}
	if v := indexEntries(t, s, sk.ID)[string(groupOf[31])]; len(v) != 29*sha256.Size {
		t.Fatalf("after two deletes the entry lists %d records, want 29", len(v)/sha256.Size)
	}
	// The run's first token written again, alone: its own entry, which
	// leaves the group's entry as it was.
	if err := s.PutRecords(ctx, "alice", sk.ID, recs[31:32]); err != nil {
		t.Fatal(err)
	}
	ents = indexEntries(t, s, sk.ID)
	if v, ok := ents[string(tokenHash(recs[31].Token))]; !ok || len(v) != 0 {
		t.Fatalf("a record alone: entry %v, value of %d bytes", ok, len(v))
	}
	if v := ents[string(groupOf[31])]; len(v) != 29*sha256.Size {
		t.Fatalf("writing a deleted member's token again changed its old group's entry: %d records", len(v)/sha256.Size)
	}
	for _, r := range recs[93:] {
		if err := s.DeleteRecord(ctx, r.Token); err != nil {
			t.Fatal(err)
		}
	}
	if ents := indexEntries(t, s, sk.ID); len(ents) != 4 || ents[string(groupOf[93])] != nil {
		t.Fatalf("%d index entries after a whole run was deleted, want 4 (3 runs, 1 alone)", len(ents))
	}
	listed, err := s.KeyRecords(ctx, sk.ID, "", 1000)
	if err != nil || len(listed) != 100-1-7 {
		t.Fatalf("KeyRecords lists %d, %v; want 92", len(listed), err)
	}

	// 32 records: a run of 31 and one alone.
	if err := s.PutRecords(ctx, "alice", sk.ID, filterRecords(sk.ID, "t", 32)); err != nil {
		t.Fatal(err)
	}
	if g := recordGroup(t, s, "t-31"); g != nil {
		t.Fatalf("the 32nd record, alone in its run, has group %x", g)
	}
	if v, ok := indexEntries(t, s, sk.ID)[string(tokenHash("t-31"))]; !ok || len(v) != 0 {
		t.Fatal("the 32nd record has no entry of its own")
	}
}

// TestIndexOldLayout: an index written one entry per record with an empty
// value (every store before runs shared one) lists, pages, deletes and
// purges as before, without a migration; a batch written after it joins
// the same listing.
func TestIndexOldLayout(t *testing.T) {
	ctx := t.Context()
	s, sk := openWithKey(t, t.TempDir(), "alice")
	defer s.Close()
	old := filterRecords(sk.ID, "old", 12)
	old[3].Expires = time.Now().Add(-time.Minute).UTC().Truncate(time.Microsecond)
	if err := s.db.Update(func(txn *badger.Txn) error {
		for _, r := range old {
			enc, err := encodeRecord(r, nil)
			if err != nil {
				return err
			}
			h := tokenHash(r.Token)
			if err := txn.Set(key(pToken, h), enc); err != nil {
				return err
			}
			if err := txn.Set(key(pIndex, sk.ID[:], h), nil); err != nil {
				return err
			}
			if !r.Expires.IsZero() {
				if err := txn.Set(expiryKey(r.Expires, h), sk.ID[:]); err != nil {
					return err
				}
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRecords(ctx, "alice", sk.ID, filterRecords(sk.ID, "new", 40)); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	after := ""
	for {
		page, err := s.KeyRecords(ctx, sk.ID, after, 5)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, r := range page {
			if seen[r.Token] {
				t.Fatalf("%s listed twice", r.Token)
			}
			seen[r.Token] = true
		}
		after = page[len(page)-1].Cursor
	}
	if len(seen) != 52 {
		t.Fatalf("listed %d records, want 52", len(seen))
	}
	if err := s.DeleteRecord(ctx, old[0].Token); err != nil {
		t.Fatal(err)
	}
	if _, ok := indexEntries(t, s, sk.ID)[string(tokenHash(old[0].Token))]; ok {
		t.Fatal("deleting an old-layout record kept its index entry")
	}
	if n, err := s.PurgeExpired(ctx, time.Now(), 10); err != nil || n != 1 {
		t.Fatalf("PurgeExpired = %d, %v; want the old expired record", n, err)
	}
	if _, err := s.ShredSubject(ctx, "alice", vault.LedgerEntry{}); err != nil {
		t.Fatal(err)
	}
	c, err := s.PurgeKey(context.Background(), sk.ID)
	if err != nil || c.Records != 50 {
		t.Fatalf("PurgeKey = %+v, %v; want 50 records", c, err)
	}
	if ents := indexEntries(t, s, sk.ID); len(ents) != 0 {
		t.Fatalf("%d index entries after the purge", len(ents))
	}
}

// TestConcurrentDeletesInOneRun: deleting every record of a run at once,
// each call on its own, all succeed (in transactions of their own they
// conflicted on the run's shared index entry, and some failed after their
// retries), and the entry is gone after them.
func TestConcurrentDeletesInOneRun(t *testing.T) {
	ctx := t.Context()
	s, sk := openWithKey(t, t.TempDir(), "alice")
	defer s.Close()
	for round := range 5 {
		recs := filterRecords(sk.ID, fmt.Sprintf("c%d", round), groupMax)
		if err := s.PutRecords(ctx, "alice", sk.ID, recs); err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, len(recs))
		var start sync.WaitGroup
		start.Add(1)
		for _, r := range recs {
			go func() {
				start.Wait()
				errs <- s.DeleteRecord(ctx, r.Token)
			}()
		}
		start.Done()
		for range recs {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: DeleteRecord: %v", round, err)
			}
		}
		if ents := indexEntries(t, s, sk.ID); len(ents) != 0 {
			t.Fatalf("round %d: %d index entries left", round, len(ents))
		}
	}
	if err := s.DeleteRecord(ctx, "c0-1"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("deleting a deleted record: %v, want ErrNotFound", err)
	}
}
