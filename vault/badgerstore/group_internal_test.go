package badgerstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

// smallStore opens a store with a 1 MiB memtable, which makes badger's
// per-transaction limit a few thousand entries, and gives subject a key.
func smallStore(t *testing.T, subject string) (*Store, vault.SubjectKey) {
	t.Helper()
	db, err := badger.Open(badgerOptions(t.TempDir(), slog.Default()).WithMemTableSize(1 << 20))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := newIDKeys(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &Store{db: db, log: slog.Default(), group: newCommitter(db), ids: ids}
	t.Cleanup(func() { s.Close() })
	if s.group.limit.count > 2000 {
		t.Fatalf("limit %+v: the memtable option did not take", s.group.limit)
	}
	sk := vault.SubjectKey{Wrapped: make([]byte, 64), Created: time.Now().UTC()}
	rand.Read(sk.ID[:])
	if _, err := s.CreateSubjectKey(context.Background(), subject, sk); err != nil {
		t.Fatal(err)
	}
	return s, sk
}

// TestGroupsStayWithinOneTransaction: with a small memtable (so badger's
// per-transaction limit is a few thousand entries), concurrent batches of
// every record shape are split into groups by their weight, and no group
// overflows into the one-transaction-per-op fallback. An estimate below
// what badger counts would overflow and show up as a fallback.
func TestGroupsStayWithinOneTransaction(t *testing.T) {
	ctx := context.Background()
	s, sk := smallStore(t, "grace")
	shapes := []struct {
		name           string
		lookup, expiry bool
		sealed         int
	}{
		{"plain", false, false, 40},
		{"lookup", true, false, 40},
		{"expiry", false, true, 40},
		{"lookup and expiry", true, true, 40},
		{"value near the value-log threshold", true, true, 1000},
		{"value in the value log", false, false, 5000},
	}
	const writers, batch = 24, 100
	groups0, ops0 := s.GroupCommits()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			shape := shapes[w%len(shapes)]
			recs := make([]vault.Record, batch)
			for i := range recs {
				r := vault.Record{Token: fmt.Sprintf("w%d-%d", w, i), KeyID: sk.ID, Kind: format.PAN,
					Created: time.Now().UTC(), Sealed: make([]byte, shape.sealed), AADVersion: vault.RecordAADv2}
				rand.Read(r.Sealed)
				if shape.lookup {
					r.Lookup = make([]byte, lookupSize)
					rand.Read(r.Lookup)
				}
				if shape.expiry {
					r.Expires = time.Now().Add(time.Hour).UTC()
				}
				recs[i] = r
			}
			if err := s.PutRecords(ctx, "grace", sk.ID, recs); err != nil {
				t.Errorf("%s: %v", shape.name, err)
			}
		}()
	}
	wg.Wait()
	if n := s.group.fallbacks.Load(); n != 0 {
		t.Fatalf("%d groups overflowed one transaction", n)
	}
	// The counters behind tokenvault_store_group_{commits,ops}_total:
	// every batch was one op of some committed group.
	groups, ops := s.GroupCommits()
	if ops-ops0 != writers || groups-groups0 < 1 || groups-groups0 > writers {
		t.Fatalf("group commits: %d groups, %d ops for %d batches", groups-groups0, ops-ops0, writers)
	}
	for w := range writers {
		if _, err := s.Record(ctx, fmt.Sprintf("w%d-%d", w, batch-1)); err != nil {
			t.Fatalf("writer %d: %v", w, err)
		}
	}
}

// TestOversizedOpFailsAlone: an op bigger than one transaction fails (it
// cannot be committed at all), writes nothing, and takes no other op down
// with it.
func TestOversizedOpFailsAlone(t *testing.T) {
	ctx := context.Background()
	s, sk := smallStore(t, "heidi")
	records := func(prefix string, n int) []vault.Record {
		recs := make([]vault.Record, n)
		for i := range recs {
			recs[i] = vault.Record{Token: fmt.Sprintf("%s-%d", prefix, i), KeyID: sk.ID, Kind: format.PAN,
				Created: time.Now().UTC(), Sealed: make([]byte, 40), AADVersion: vault.RecordAADv2}
		}
		return recs
	}
	huge := records("huge", int(s.group.limit.count)+1) // an entry each, and one per run of 31: over the limit
	var wg sync.WaitGroup
	errs := make([]error, 9)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 0 {
				errs[i] = s.PutRecords(ctx, "heidi", sk.ID, huge)
				return
			}
			errs[i] = s.PutRecords(ctx, "heidi", sk.ID, records(fmt.Sprintf("small%d", i), 10))
		}()
	}
	wg.Wait()
	if !errors.Is(errs[0], badger.ErrTxnTooBig) {
		t.Fatalf("oversized batch: %v, want ErrTxnTooBig", errs[0])
	}
	for _, r := range []vault.Record{huge[0], huge[len(huge)-1]} {
		if _, err := s.Record(ctx, r.Token); !errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("record %s of the failed batch: %v", r.Token, err)
		}
	}
	for i, err := range errs[1:] {
		if err != nil {
			t.Fatalf("small batch %d: %v", i+1, err)
		}
		if _, err := s.Record(ctx, fmt.Sprintf("small%d-9", i+1)); err != nil {
			t.Fatalf("small batch %d: %v", i+1, err)
		}
	}
}
