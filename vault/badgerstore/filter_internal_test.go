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

	"github.com/dgraph-io/badger/v4"

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

// openWithKey opens a store in dir and gives subject a key; the caller
// closes the store.
func openWithKey(t *testing.T, dir, subject string) (*Store, vault.SubjectKey) {
	t.Helper()
	s, err := Open(dir, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sk := vault.SubjectKey{Wrapped: make([]byte, 64), Created: time.Unix(1700000000, 0).UTC()}
	rand.Read(sk.ID[:])
	if _, err := s.CreateSubjectKey(context.Background(), subject, sk); err != nil {
		s.Close()
		t.Fatal(err)
	}
	return s, sk
}

// TestFilterFilledByCount: a reopened store reads badger for every check
// until its token count has run; after it, every stored token is still
// found (and refused as a new token), and absent ones are answered without
// a read.
func TestFilterFilledByCount(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, sk := openWithKey(t, dir, "ivan")
	old := filterRecords(sk.ID, "old", 3000)
	for i := 0; i < len(old); i += 500 {
		if err := s.PutRecords(ctx, "ivan", sk.ID, old[i:i+500]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, Options{}, nil)
	if err != nil {
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
	if n := testing.AllocsPerRun(100, func() { s.Record(ctx, "absent-y") }); n != 0 {
		t.Fatalf("Record of a token the filter rules out: %v allocations, want 0", n)
	}
	fresh := filterRecords(sk.ID, "fresh", 1000)
	if err := s.PutRecords(ctx, "ivan", sk.ID, fresh); err != nil {
		t.Fatal(err)
	}
	// 1000 absent reads, 102 Records, 1000 absence checks: all but the
	// filter's few false positives answered without badger.
	if n := s.filter.skipped.Load() - skipped; n < 2050 {
		t.Fatalf("%d of 2102 absent-key checks skipped the read", n)
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

// TestRefusedOpAcceptedOnRerun: an op refused in its group's first run
// (one of its tokens is stored) is accepted when the group runs again
// after a conflict (that record was deleted meanwhile). The next group's
// op that drew the op's other token ran before that re-run: it must still
// read that token (the op put it in the filter when it first ran), so it
// conflicts with the re-run's commit and is then refused, instead of
// writing a second record under the same token. (Found in review: with
// the tokens added only when written, both ops were told they succeeded.)
func TestRefusedOpAcceptedOnRerun(t *testing.T) {
	ctx := context.Background()
	s, sk := openWithKey(t, t.TempDir(), "ivan")
	defer s.Close()
	recs := filterRecords(sk.ID, "r", 2)
	t1, t2 := recs[0], recs[1]
	if err := s.PutRecords(ctx, "ivan", sk.ID, []vault.Record{t2}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CountTokens(ctx); err != nil { // the filter in use
		t.Fatal(err)
	}
	a, b := t1, t1
	a.Sealed = append([]byte("A"), make([]byte, 39)...)
	b.Sealed = append([]byte("B"), make([]byte, 39)...)
	var w weight
	w.set(10, 10)

	// A blocker holds the committer while op A (t1 and the stored t2:
	// refused) and op D are queued, so that they form one group.
	release := holdCommitter(t, s)
	aDone, bDone, dDone := make(chan error, 1), make(chan error, 1), make(chan error, 1)
	go func() { aDone <- s.PutRecords(ctx, "ivan", sk.ID, []vault.Record{a, t2}) }()
	queuedOps(s, 1)
	first := true // read and written by the committer only
	go func() {
		dDone <- s.group.doNew(ctx, w, func(txn *badger.Txn) error {
			if first {
				// t2 deleted after the group's snapshot, which read it: the
				// group's commit conflicts. Op B (t1) is queued meanwhile,
				// so it runs while that commit is in flight.
				// (In a transaction of its own: DeleteRecord is a
				// committer op, and the committer is busy with this one.)
				first = false
				if err := s.update(ctx, func(txn *badger.Txn) error {
					_, err := deleteRecord(txn, tokenHash(t2.Token))
					return err
				}); err != nil {
					return err
				}
				go func() { bDone <- s.PutRecords(ctx, "ivan", sk.ID, []vault.Record{b}) }()
				queuedOps(s, 1)
			}
			return txn.Set([]byte("z/d"), []byte("x"))
		})
	}()
	queuedOps(s, 2)
	release()
	errA, errB, errD := <-aDone, <-bDone, <-dDone
	if errD != nil {
		t.Fatal(errD)
	}
	r, err := s.Record(ctx, t1.Token)
	if err != nil {
		t.Fatal(err)
	}
	var ce *vault.CollisionError
	if errA != nil || !errors.As(errB, &ce) || string(r.Sealed[:1]) != "A" {
		t.Fatalf("A: %v, B: %v; the token holds %q's record: want A accepted on its re-run and B refused",
			errA, errB, r.Sealed[:1])
	}
}

// lookupRecords makes n deterministic records for tokens prefix-0 ...
// under id, each with its own lookup key.
func lookupRecords(id vault.KeyID, prefix string, n int) []vault.Record {
	recs := filterRecords(id, prefix, n)
	for i := range recs {
		l := sha256.Sum256([]byte("lookup " + recs[i].Token))
		recs[i].Lookup = l[:]
	}
	return recs
}

// TestLookupFilterFilledByCount: as TestFilterFilledByCount, for the
// deterministic lookup keys. A reopened store reads every lookup until the
// scan of lookup keys after the count is done; after it, every stored lookup is found (and
// refused to a new record), including those written during the count and
// by ReplaceRecord, and a lookup of a new value is answered without a read.
func TestLookupFilterFilledByCount(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, sk := openWithKey(t, dir, "ivan")
	old := lookupRecords(sk.ID, "old", 2000)
	for i := 0; i < len(old); i += 500 {
		if err := s.PutRecords(ctx, "ivan", sk.ID, old[i:i+500]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	checkAll := func(when string, recs []vault.Record) {
		t.Helper()
		for i, r := range recs {
			tok, err := s.Lookup(ctx, sk.ID, r.Lookup)
			if err != nil || tok != r.Token {
				t.Fatalf("%s: Lookup(%d) = %q, %v", when, i, tok, err)
			}
		}
		for _, i := range []int{0, len(recs) / 2, len(recs) - 1} {
			again := recs[i]
			again.Token = fmt.Sprintf("%s-again-%d", when, i) // a fresh token, the same lookup
			err := s.PutRecords(ctx, "ivan", sk.ID, []vault.Record{again})
			if ce := (*vault.CollisionError)(nil); !errors.As(err, &ce) || !ce.Lookup {
				t.Fatalf("%s: storing lookup %d again: %v, want a lookup collision", when, i, err)
			}
		}
	}
	absent := func(prefix string, n int) {
		t.Helper()
		for _, r := range lookupRecords(sk.ID, prefix, n) {
			if tok, err := s.Lookup(ctx, sk.ID, r.Lookup); !errors.Is(err, vault.ErrNotFound) {
				t.Fatalf("Lookup of a new value: %q, %v", tok, err)
			}
		}
	}

	checkAll("before the count", old)
	absent("absent", 100)
	if n := s.lookups.skipped.Load(); n != 0 {
		t.Fatalf("%d lookup reads skipped before the count", n)
	}

	// The count: part of its token pass, then writes (records with new
	// lookups, a rectification moving a lookup), then the rest, and the
	// lookup keys' scan after it in the background.
	count, lookupsScanned, err := s.tokenCountSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, done, err := count(ctx, 1000); err != nil || done {
		t.Fatalf("first part of the count: done %v, %v", done, err)
	}
	during := lookupRecords(sk.ID, "during", 1000)
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.PutRecords(ctx, "ivan", sk.ID, during[w*500:(w+1)*500])
		}()
	}
	moved := old[7]
	l := sha256.Sum256([]byte("moved lookup"))
	moved.Lookup = l[:]
	wg.Add(1)
	go func() {
		defer wg.Done()
		errs <- s.ReplaceRecord(ctx, "ivan", sk.ID, moved)
	}()
	total, done, err := count(ctx, 0)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err != nil || !done || total != int64(len(old)) {
		t.Fatalf("count: %d, done %v, %v; want %d tokens", total, done, err, len(old))
	}
	<-lookupsScanned
	if !s.lookups.ready.Load() || !s.filter.ready.Load() {
		t.Fatal("filters not in use after the count")
	}
	checkAll("written during the count", during)
	checkAll("moved during the count", []vault.Record{moved})
	old[7] = old[len(old)-1]
	checkAll("after the count", old[:len(old)-1])

	skipped := s.lookups.skipped.Load()
	absent("absent", 1000)
	var lk [lookupSize]byte
	if n := testing.AllocsPerRun(100, func() { lk[0]++; s.Lookup(ctx, sk.ID, lk[:]) }); n != 0 {
		t.Fatalf("Lookup the filter rules out: %v allocations, want 0", n)
	}
	fresh := lookupRecords(sk.ID, "fresh", 1000)
	if err := s.PutRecords(ctx, "ivan", sk.ID, fresh); err != nil {
		t.Fatal(err)
	}
	// 1000 Lookups, 101 more, 1000 absence checks in PutRecords: all but
	// the filter's few false positives answered without badger.
	if n := s.lookups.skipped.Load() - skipped; n < 2050 {
		t.Fatalf("%d of 2101 absent-lookup checks skipped the read", n)
	}
	checkAll("written after the count", fresh)
}

// TestLookupRaceReplaceAndPut: a rectification moving a record's lookup
// to a value that a concurrent deterministic tokenize stores at the same
// time. Exactly one of them may take the lookup; the other is told of a
// lookup collision. PutRecords skips reading a lookup key that the lookup
// filter rules out, which is safe only because ReplaceRecord adds its new
// lookup in the committer's order too (rights.go). With ReplaceRecord in a
// transaction of its own, two winners show within ~30 races;
// TestReplaceRecordAddsItsLookup checks its add in one fixed order.
func TestLookupRaceReplaceAndPut(t *testing.T) {
	ctx := context.Background()
	s, sk := openWithKey(t, t.TempDir(), "ivan")
	defer s.Close()
	if _, err := s.CountTokens(ctx); err != nil {
		t.Fatal(err)
	}
	if !s.lookups.ready.Load() {
		t.Fatal("lookup filter not in use after the count")
	}
	const n = 300
	olds := lookupRecords(sk.ID, "a", n)
	if err := s.PutRecords(ctx, "ivan", sk.ID, olds); err != nil {
		t.Fatal(err)
	}
	news := lookupRecords(sk.ID, "b", n)
	// Load that keeps the committer's groups full, so that the two race
	// inside and across groups.
	stop := make(chan struct{})
	var bg sync.WaitGroup
	for w := range 4 {
		bg.Add(1)
		go func() {
			defer bg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := s.PutRecords(ctx, "ivan", sk.ID, lookupRecords(sk.ID, fmt.Sprintf("load-%d-%d", w, i), 5)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := range n {
		x := sha256.Sum256([]byte(fmt.Sprintf("contested %d", i)))
		moved := olds[i]
		moved.Lookup = x[:]
		put := news[i]
		put.Lookup = x[:]
		var rErr, pErr error
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); rErr = s.ReplaceRecord(ctx, "ivan", sk.ID, moved) }()
		go func() { defer wg.Done(); pErr = s.PutRecords(ctx, "ivan", sk.ID, []vault.Record{put}) }()
		wg.Wait()
		lookupLost := func(err error) bool {
			ce := (*vault.CollisionError)(nil)
			return errors.As(err, &ce) && ce.Lookup
		}
		tok, err := s.Lookup(ctx, sk.ID, x[:])
		switch {
		case err != nil:
			t.Fatalf("race %d: Lookup: %v", i, err)
		case rErr == nil && lookupLost(pErr):
			if tok != moved.Token {
				t.Fatalf("race %d: the rectification won, the lookup gives %q", i, tok)
			}
		case pErr == nil && lookupLost(rErr):
			if tok != put.Token {
				t.Fatalf("race %d: the tokenize won, the lookup gives %q", i, tok)
			}
		default:
			t.Fatalf("race %d: rectification %v, tokenize %v (lookup gives %q): want one winner", i, rErr, pErr, tok)
		}
	}
	close(stop)
	bg.Wait()
}

// TestCountLimitDone: a count given a limit that covers every token record
// says it is done, with or without lookup keys to scan after it (the vault
// counts its first CountFirst tokens before New returns, and a store that
// small is then counted). The lookup keys' scan follows in the background.
func TestCountLimitDone(t *testing.T) {
	ctx := context.Background()
	for _, det := range []bool{false, true} {
		t.Run(fmt.Sprintf("deterministic=%v", det), func(t *testing.T) {
			s, sk := openWithKey(t, t.TempDir(), "ivan")
			defer s.Close()
			const n = 10
			recs := filterRecords(sk.ID, "r", n)
			if det {
				recs = lookupRecords(sk.ID, "r", n)
			}
			if err := s.PutRecords(ctx, "ivan", sk.ID, recs); err != nil {
				t.Fatal(err)
			}
			// finish runs a count to its end (Close waits for it) and its
			// lookup keys' scan.
			finish := func(count func(context.Context, int64) (int64, bool, error), scanned <-chan struct{}) {
				for {
					if _, done, err := count(ctx, 0); done || err != nil {
						break
					}
				}
				<-scanned
			}
			for _, limit := range []int64{n, n + 1, 2 * n, 0} {
				count, scanned, err := s.tokenCountSnapshot(ctx)
				if err != nil {
					t.Fatal(err)
				}
				total, done, err := count(ctx, limit)
				finish(count, scanned)
				if err != nil || total != n || !done {
					t.Fatalf("count(limit %d) of %d records = %d, done %v, %v; want %d, done", limit, n, total, done, err, n)
				}
			}
			count, scanned, err := s.tokenCountSnapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			total, done, err := count(ctx, n/2)
			if err != nil || total != n/2 || done {
				finish(count, scanned)
				t.Fatalf("count(limit %d) = %d, done %v, %v; want %d, not done", n/2, total, done, err, n/2)
			}
			total, done, err = count(ctx, 0)
			finish(count, scanned)
			if err != nil || total != n || !done {
				t.Fatalf("the rest of the count = %d, done %v, %v; want %d, done", total, done, err, n)
			}
			if !s.lookups.ready.Load() {
				t.Fatal("lookup filter not in use after the scan")
			}
		})
	}
}

// TestReplaceRecordAddsItsLookup: a rectification that moves a lookup and
// a deterministic tokenize of the new value, queued in that order into
// one group: the tokenize must read the lookup key (the rectification put
// it into the lookup filter when it ran) and is refused, where skipping
// that read would store a second token under the same lookup. A
// rectification of a token deleted meanwhile, in the same group, is
// refused without splitting the group into one transaction per op.
func TestReplaceRecordAddsItsLookup(t *testing.T) {
	ctx := context.Background()
	s, sk := openWithKey(t, t.TempDir(), "ivan")
	defer s.Close()
	recs := lookupRecords(sk.ID, "r", 2)
	if err := s.PutRecords(ctx, "ivan", sk.ID, recs); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRecord(ctx, recs[1].Token); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CountTokens(ctx); err != nil { // the filters in use
		t.Fatal(err)
	}
	x := sha256.Sum256([]byte("the new value's lookup"))
	moved := recs[0]
	moved.Lookup = x[:]
	gone := recs[1]
	gone.Lookup = x[:]
	put := lookupRecords(sk.ID, "p", 1)[0]
	put.Lookup = x[:]

	release := holdCommitter(t, s)
	fallbacks := s.group.fallbacks.Load()
	goneDone, movedDone, putDone := make(chan error, 1), make(chan error, 1), make(chan error, 1)
	go func() { goneDone <- s.ReplaceRecord(ctx, "ivan", sk.ID, gone) }()
	queuedOps(s, 1)
	go func() { movedDone <- s.ReplaceRecord(ctx, "ivan", sk.ID, moved) }()
	queuedOps(s, 2)
	go func() { putDone <- s.PutRecords(ctx, "ivan", sk.ID, []vault.Record{put}) }()
	queuedOps(s, 3)
	release()
	errGone, errMoved, errPut := <-goneDone, <-movedDone, <-putDone
	if !errors.Is(errGone, vault.ErrNotFound) {
		t.Fatalf("rectifying a deleted token: %v, want not found", errGone)
	}
	var ce *vault.CollisionError
	if errMoved != nil || !errors.As(errPut, &ce) || !ce.Lookup {
		t.Fatalf("rectification %v, tokenize %v: want the rectification to take the lookup, the tokenize refused", errMoved, errPut)
	}
	if tok, err := s.Lookup(ctx, sk.ID, x[:]); err != nil || tok != moved.Token {
		t.Fatalf("Lookup = %q, %v; want the rectified token", tok, err)
	}
	if n := s.group.fallbacks.Load() - fallbacks; n != 0 {
		t.Fatalf("%d groups split into one transaction per op", n)
	}
}

// queuedOps waits until n ops are queued on s's committer.
func queuedOps(s *Store, n int) {
	for len(s.group.ops) != n {
		time.Sleep(10 * time.Microsecond)
	}
}

// holdCommitter starts an op that holds s's committer until release is
// called, so that the ops queued meanwhile form its next group; release
// waits for the holding op's commit.
func holdCommitter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	var w weight
	w.set(10, 10)
	rel, holding := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.group.doNew(context.Background(), w, func(txn *badger.Txn) error {
			close(holding)
			<-rel
			return txn.Set([]byte("z/block"), []byte("x"))
		})
	}()
	<-holding
	return func() {
		t.Helper()
		close(rel)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
