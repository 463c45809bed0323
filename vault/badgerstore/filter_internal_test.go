package badgerstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

// hashOf is a deterministic key hash for filter tests.
func hashOf(set byte, i int) [sha256.Size]byte {
	return sha256.Sum256(binary.BigEndian.AppendUint64([]byte{set}, uint64(i)))
}

// TestTokenFilter: no added hash is ever missed, across the parts that
// concurrent adds start; nothing is ruled out before a scan has finished;
// after it, few absent hashes are reported as maybe there.
func TestTokenFilter(t *testing.T) {
	for _, tc := range []struct {
		name      string
		first     int64
		keys      int
		wantParts int
	}{
		{"one part", 1 << 16, 20_000, 1},
		{"parts from a tiny first", 1, 20_000, 15},
		{"parts from 1000", 1000, 50_000, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &tokenFilter{}
			parts := []*filterPart{newFilterPart(tc.first)}
			f.parts.Store(&parts)
			absent := hashOf(1, 0)
			if !f.mayHold(&absent) {
				t.Fatal("an unscanned filter ruled out a key")
			}
			const adders = 4
			var wg sync.WaitGroup
			for a := range adders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := a; i < tc.keys; i += adders {
						h := hashOf(0, i)
						f.add(&h)
					}
				}()
			}
			wg.Wait()
			f.scanned()
			if got := len(*f.parts.Load()); got != tc.wantParts {
				t.Errorf("%d parts, want %d", got, tc.wantParts)
			}
			for i := range tc.keys {
				if h := hashOf(0, i); !f.mayHold(&h) {
					t.Fatalf("added key %d ruled out", i)
				}
			}
			if f.skipped.Load() != 0 {
				t.Fatalf("skipped = %d with only added keys tested", f.skipped.Load())
			}
			const probes = 100_000
			fp := 0
			for i := range probes {
				if h := hashOf(1, i); f.mayHold(&h) {
					fp++
				}
			}
			// ~0.4% per full part (filterBitsPerKey), and a test reads
			// every part.
			rate := float64(fp) / probes
			t.Logf("false positives: %.3f%% of absent keys, %d parts", 100*rate, tc.wantParts)
			if rate > 0.005*float64(tc.wantParts) {
				t.Fatalf("false positives: %.3f%% of absent keys, above 0.5%% per part", 100*rate)
			}
			if f.skipped.Load() != int64(probes-fp) {
				t.Fatalf("skipped = %d, want %d", f.skipped.Load(), probes-fp)
			}
		})
	}
}

// filterRecords makes n records for tokens prefix-0 ... under id.
func filterRecords(id vault.KeyID, prefix string, n int) []vault.Record {
	recs := make([]vault.Record, n)
	for i := range recs {
		recs[i] = vault.Record{Token: fmt.Sprintf("%s-%d", prefix, i), KeyID: id, Kind: format.Generic,
			Created: time.Unix(1700000000, 0).UTC(), Sealed: make([]byte, 40), AADVersion: vault.RecordAADv2}
	}
	return recs
}

// TestFilterFilledByCount: a reopened store reads badger for every check
// until its token count has run; after it, every stored token is still
// found (and refused as a new token), and absent ones are answered without
// a read.
func TestFilterFilledByCount(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sk := vault.SubjectKey{Wrapped: make([]byte, 64), Created: time.Unix(1700000000, 0).UTC()}
	rand.Read(sk.ID[:])
	if _, err := s.CreateSubjectKey(ctx, "ivan", sk); err != nil {
		t.Fatal(err)
	}
	old := filterRecords(sk.ID, "old", 3000)
	for i := 0; i < len(old); i += 500 {
		if err := s.PutRecords(ctx, "ivan", sk.ID, old[i:i+500]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(dir, Options{}, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	tokens := func(recs []vault.Record) []string {
		out := make([]string, len(recs))
		for i, r := range recs {
			out[i] = r.Token
		}
		return out
	}
	checkAll := func(when string, recs []vault.Record) {
		t.Helper()
		n := 0
		if err := s.RecordsOf(ctx, tokens(recs), func(i int, r vault.Record) error {
			if r.Token != recs[i].Token {
				t.Fatalf("%s: record %d is %q", when, i, r.Token)
			}
			n++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if n != len(recs) {
			t.Fatalf("%s: RecordsOf found %d of %d", when, n, len(recs))
		}
		for _, i := range []int{0, len(recs) / 2, len(recs) - 1} {
			if _, err := s.Record(ctx, recs[i].Token); err != nil {
				t.Fatalf("%s: Record(%d): %v", when, i, err)
			}
			err := s.PutRecords(ctx, "ivan", sk.ID, []vault.Record{recs[i]})
			if ce := (*vault.CollisionError)(nil); !errors.As(err, &ce) || ce.Lookup {
				t.Fatalf("%s: rewriting stored token %d: %v, want a token collision", when, i, err)
			}
		}
	}

	// Before the count: nothing ruled out, every check reads.
	checkAll("before the count", old)
	if err := s.RecordsOf(ctx, tokens(filterRecords(sk.ID, "absent", 100)), func(int, vault.Record) error {
		t.Fatal("found an absent token")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n := s.filter.skipped.Load(); n != 0 {
		t.Fatalf("%d reads skipped before the count", n)
	}

	// The count, with writes while it runs: a snapshot pinned, part of it
	// counted, records written, then the rest.
	count, err := s.TokenCountSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, done, err := count(ctx, 1000); err != nil || done {
		t.Fatalf("first part of the count: done %v, %v", done, err)
	}
	during := filterRecords(sk.ID, "during", 2000)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.PutRecords(ctx, "ivan", sk.ID, during[w*500:(w+1)*500])
		}()
	}
	total, done, err := count(ctx, 0)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err != nil || !done || total != int64(len(old)) {
		t.Fatalf("count: %d, done %v, %v; want %d", total, done, err, len(old))
	}
	if !s.filter.ready.Load() {
		t.Fatal("filter not in use after the count")
	}
	checkAll("after the count", old)
	checkAll("written during the count", during)

	skipped := s.filter.skipped.Load()
	if err := s.RecordsOf(ctx, tokens(filterRecords(sk.ID, "absent", 1000)), func(int, vault.Record) error {
		t.Fatal("found an absent token")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Record(ctx, "absent-x"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("Record of an absent token: %v", err)
	}
	fresh := filterRecords(sk.ID, "fresh", 1000)
	if err := s.PutRecords(ctx, "ivan", sk.ID, fresh); err != nil {
		t.Fatal(err)
	}
	// 1000 absent reads, one Record, 1000 absence checks: all but the
	// filter's few false positives answered without badger.
	if n := s.filter.skipped.Load() - skipped; n < 1950 {
		t.Fatalf("%d of 2001 absent-key checks skipped the read", n)
	}
	checkAll("written after the count", fresh)

	// A deleted record stays a "maybe": read, and not found.
	if _, err := s.PurgeKey(ctx, sk.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Record(ctx, old[0].Token); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("Record of a purged token: %v", err)
	}
}
