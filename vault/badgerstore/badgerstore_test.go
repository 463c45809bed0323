package badgerstore_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
	"github.com/tokenvault/tokenvault/vault/format"
	"github.com/tokenvault/tokenvault/vault/storetest"
)

// The store is a storetest.HoldReceiptCopier (copies between stores), so
// that suite group runs rather than skips.
var _ storetest.HoldReceiptCopier = (*badgerstore.Store)(nil)

// The shared suite. The store implements every interface it checks
// (asserted at compile time in badgerstore.go), so no group is skipped.
func TestSuiteOnDisk(t *testing.T) { storetest.Run(t, newStore(badgerstore.Options{})) }

func TestSuiteInMemory(t *testing.T) {
	storetest.Run(t, newStore(badgerstore.Options{InMemory: true}))
}

// TestSuiteFilterReady runs the suite with the token and lookup filters
// in use from the start (an empty store, counted once opened), as a served
// store is once its token count has run. In the other runs only the count
// groups start them, so the rest check the reads they stand in for.
func TestSuiteFilterReady(t *testing.T) {
	var skips, lookupSkips atomic.Int64
	open := newStore(badgerstore.Options{InMemory: true})
	storetest.Run(t, func(t *testing.T) vault.Store {
		s := open(t).(*badgerstore.Store)
		if n, err := s.CountTokens(t.Context()); err != nil || n != 0 {
			t.Fatalf("CountTokens = %d, %v", n, err)
		}
		t.Cleanup(func() {
			skips.Add(badgerstore.FilterSkips(s))
			lookupSkips.Add(badgerstore.LookupFilterSkips(s))
		})
		return s
	})
	if skips.Load() == 0 || lookupSkips.Load() == 0 {
		t.Fatalf("the filters answered %d token and %d lookup reads, want some of each", skips.Load(), lookupSkips.Load())
	}
	t.Logf("%d token and %d lookup reads answered by the filters", skips.Load(), lookupSkips.Load())
}

func newStore(opts badgerstore.Options) storetest.NewStore {
	return func(t *testing.T) vault.Store {
		dir := ""
		if !opts.InMemory {
			dir = t.TempDir()
		}
		s, err := badgerstore.Open(dir, opts, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
}

// TestDurableAcrossReopen: what PutRecords acknowledged is there after a
// close and reopen of the same directory.
func TestDurableAcrossReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := badgerstore.Open(dir, badgerstore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sk := vault.SubjectKey{ID: vault.KeyID{1}, Wrapped: []byte("wrapped-key-bytes"), Created: time.Unix(1700000000, 0).UTC()}
	if _, err := s.CreateSubjectKey(ctx, "alice", sk); err != nil {
		t.Fatal(err)
	}
	r := vault.Record{Token: "4111110000001111", KeyID: sk.ID, Kind: format.PAN, Created: sk.Created, Sealed: make([]byte, 40), AADVersion: vault.RecordAADv2}
	if err := s.PutRecords(ctx, "alice", sk.ID, []vault.Record{r}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = badgerstore.Open(dir, badgerstore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Record(ctx, r.Token)
	if err != nil || got.KeyID != sk.ID || got.Kind != format.PAN {
		t.Fatalf("record after reopen: %+v, %v", got, err)
	}
	if has, err := s.HasSubjectKeys(ctx); err != nil || !has {
		t.Fatalf("HasSubjectKeys after reopen = %v, %v", has, err)
	}
	// A second open of a directory in use is refused (badger's lock).
	if s2, err := badgerstore.Open(dir, badgerstore.Options{}, nil); err == nil {
		s2.Close()
		t.Fatal("opened a data directory that is in use")
	}
}

// TestWritesRefusedBelowReserve: with less free space than the reserve
// (here: a reserve larger than any disk), every write is refused with
// vault.ErrStorageFull before it starts, and reads go on. The real full
// disk, where badger would die of SIGBUS, is internal/e2e's TestDiskFull.
func TestWritesRefusedBelowReserve(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := badgerstore.Open(dir, badgerstore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sk := vault.SubjectKey{ID: vault.KeyID{1}, Wrapped: []byte("wrapped-key-bytes"), Created: time.Unix(1700000000, 0).UTC()}
	if _, err := s.CreateSubjectKey(ctx, "alice", sk); err != nil {
		t.Fatal(err)
	}
	r := vault.Record{Token: "4111110000001111", KeyID: sk.ID, Kind: format.PAN, Created: sk.Created, Sealed: make([]byte, 40), AADVersion: vault.RecordAADv2}
	if err := s.PutRecords(ctx, "alice", sk.ID, []vault.Record{r}); err != nil {
		t.Fatal(err)
	}
	if err := s.StorageFull(); err != nil {
		t.Fatalf("StorageFull with room: %v", err)
	}
	s.Close()

	s, err = badgerstore.Open(dir, badgerstore.Options{DiskReserve: 1 << 60}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r2 := r
	r2.Token = "4111110000002222"
	writes := map[string]func() error{
		"CreateSubjectKey": func() error {
			_, err := s.CreateSubjectKey(ctx, "bob", vault.SubjectKey{ID: vault.KeyID{2}, Wrapped: []byte("w"), Created: sk.Created})
			return err
		},
		"PutRecords":     func() error { return s.PutRecords(ctx, "alice", sk.ID, []vault.Record{r2}) },
		"ReplaceWrapped": func() error { return s.ReplaceWrapped(ctx, "alice", sk.ID, []byte("rewrapped")) },
		"ShredSubject": func() error {
			_, err := s.ShredSubject(ctx, "alice", vault.LedgerEntry{})
			return err
		},
	}
	for name, write := range writes {
		if err := write(); !errors.Is(err, vault.ErrStorageFull) {
			t.Errorf("%s below the reserve: %v, want ErrStorageFull", name, err)
		}
	}
	if err := s.StorageFull(); !errors.Is(err, vault.ErrStorageFull) {
		t.Errorf("StorageFull below the reserve: %v", err)
	}
	// Reads work, and nothing of the refused writes is there.
	if got, err := s.Record(ctx, r.Token); err != nil || got.KeyID != sk.ID {
		t.Fatalf("read below the reserve: %+v, %v", got, err)
	}
	if _, err := s.Record(ctx, r2.Token); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("refused record: %v, want ErrNotFound", err)
	}
	if got, err := s.SubjectKey(ctx, "alice"); err != nil || string(got.Wrapped) != "wrapped-key-bytes" {
		t.Errorf("subject key after refused writes: %+v, %v", got, err)
	}
}
