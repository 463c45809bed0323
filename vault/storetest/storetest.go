// Package storetest is the conformance suite of vault stores: one group of
// tests per interface a store implements, so that a new store (PostgreSQL,
// say) is done when it implements the interfaces and passes their groups.
//
//   - [RunCore]: [vault.Store], which every store implements;
//   - [RunRights]: [vault.RightsStore];
//   - [RunLedger]: [vault.LedgerStore];
//   - [RunKeyScan]: [vault.KeyScanStore];
//   - [RunTokenCounter]: [vault.TokenCounter];
//   - [RunTokenSnapshotCounter]: [vault.TokenSnapshotCounter];
//   - [RunRecordBatch]: [vault.RecordBatchStore];
//   - [RunLookupBatch]: [vault.LookupBatchStore];
//   - [RunAtRest]: no subject id in the clear in what a store holds,
//     read through its backup snapshot ([Snapshotter]);
//   - [RunConsent]: [vault.ConsentStore];
//   - [RunErasureEvents]: [vault.ErasureEventStore];
//   - [RunRecordKey]: [vault.RecordKeyStore].
//
// [Run] runs every group, skipping (visibly) those whose interface the
// store does not implement:
//
//	func TestSuite(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) vault.Store {
//			s := openAnEmptyStore(t)
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

// NewStore returns a new, empty store and registers its closing on t. It
// is called once per test, and once by [Run] to see which interfaces the
// store implements.
type NewStore func(t *testing.T) vault.Store

// Run runs every group whose interface the store implements and skips the
// others.
func Run(t *testing.T, newStore NewStore) {
	t.Run("Core", func(t *testing.T) { RunCore(t, newStore) })
	probe := newStore(t)
	for _, g := range []struct {
		name  string
		iface string
		has   bool
		run   func(*testing.T, NewStore)
	}{
		{"Rights", "vault.RightsStore", implements[vault.RightsStore](probe), RunRights},
		{"Ledger", "vault.LedgerStore", implements[vault.LedgerStore](probe), RunLedger},
		{"KeyScan", "vault.KeyScanStore", implements[vault.KeyScanStore](probe), RunKeyScan},
		{"TokenCounter", "vault.TokenCounter", implements[vault.TokenCounter](probe), RunTokenCounter},
		{"TokenSnapshotCounter", "vault.TokenSnapshotCounter", implements[vault.TokenSnapshotCounter](probe), RunTokenSnapshotCounter},
		{"RecordBatch", "vault.RecordBatchStore", implements[vault.RecordBatchStore](probe), RunRecordBatch},
		{"LookupBatch", "vault.LookupBatchStore", implements[vault.LookupBatchStore](probe), RunLookupBatch},
		{"AtRest", "storetest.Snapshotter", implements[Snapshotter](probe), RunAtRest},
		{"Consent", "vault.ConsentStore", implements[vault.ConsentStore](probe), RunConsent},
		{"ErasureEvents", "vault.ErasureEventStore", implements[vault.ErasureEventStore](probe), RunErasureEvents},
		{"Holds", "vault.HoldStore", implements[vault.HoldStore](probe), RunHolds},
		{"RecordKey", "vault.RecordKeyStore", implements[vault.RecordKeyStore](probe), RunRecordKey},
		{"HoldReceiptCopy", "storetest.HoldReceiptCopier", implements[HoldReceiptCopier](probe), RunHoldReceiptCopy},
	} {
		t.Run(g.name, func(t *testing.T) {
			if !g.has {
				t.Skipf("the store does not implement %s", g.iface)
			}
			g.run(t, newStore)
		})
	}
}

// test is one named test of a group; it gets a new, empty store.
type test struct {
	name string
	fn   func(t *testing.T, s vault.Store)
}

func runTests(t *testing.T, newStore NewStore, tests []test) {
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

func implements[C any](s vault.Store) bool {
	_, ok := s.(C)
	return ok
}

// as returns s as a C, failing the test if the store does not implement
// it (a group was run for a store without its interface).
func as[C any](t *testing.T, s vault.Store) C {
	t.Helper()
	c, ok := s.(C)
	if !ok {
		var zero *C
		t.Fatalf("store %T does not implement %T", s, zero)
	}
	return c
}

// RunCore checks [vault.Store]: subject keys, records, lookups, the shred
// and the purge, alone and under concurrency.
func RunCore(t *testing.T, newStore NewStore) {
	runTests(t, newStore, []test{
		{"SubjectKey", testSubjectKey},
		{"Records", testRecords},
		{"RecordAADVersions", testRecordAADVersions},
		{"Collisions", testCollisions},
		{"PutRecordsChecksTheKey", testPutRecordsChecksTheKey},
		{"DeleteRecord", testDeleteRecord},
		{"ShredAndPurge", testShredAndPurge},
		{"ConcurrentFirstUse", testConcurrentFirstUse},
		{"ConcurrentWritesAndShred", testConcurrentWritesAndShred},
		{"ConcurrentDuplicates", testConcurrentDuplicates},
		{"ConcurrentLargeBatches", testConcurrentLargeBatches},
		{"CanceledContext", testCanceledContext},
	})
}

func testSubjectKey(t *testing.T, s vault.Store) {
	ctx := context.Background()
	if _, err := s.SubjectKey(ctx, "alice"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("SubjectKey of unknown subject: %v", err)
	}
	if _, _, err := s.SubjectKeyByID(ctx, vault.KeyID{1}); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("SubjectKeyByID of unknown id: %v", err)
	}
	a := newKey(t)
	got, err := s.CreateSubjectKey(ctx, "alice", a)
	if err != nil || !sameKey(got, a) {
		t.Fatalf("CreateSubjectKey = %+v, %v", got, err)
	}
	// A second create (a concurrent first use that lost) gets the first key.
	got, err = s.CreateSubjectKey(ctx, "alice", newKey(t))
	if err != nil || !sameKey(got, a) {
		t.Fatalf("second CreateSubjectKey = %+v, %v; want the first key", got, err)
	}
	if got, err := s.SubjectKey(ctx, "alice"); err != nil || !sameKey(got, a) {
		t.Fatalf("SubjectKey = %+v, %v", got, err)
	}
	subj, got, err := s.SubjectKeyByID(ctx, a.ID)
	if err != nil || subj != "alice" || !sameKey(got, a) {
		t.Fatalf("SubjectKeyByID = %q, %+v, %v", subj, got, err)
	}
	// Subject ids are opaque bytes: a prefix of another id is another subject.
	if _, err := s.SubjectKey(ctx, "alic"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("prefix subject: %v", err)
	}
}

func testRecords(t *testing.T, s vault.Store) {
	ctx := context.Background()
	k := mustCreate(t, s, "alice")
	recs := []vault.Record{rec(k.ID, "tok-1", nil), rec(k.ID, "tok-2", lookup(1))}
	if err := s.PutRecords(ctx, "alice", k.ID, recs); err != nil {
		t.Fatal(err)
	}
	for _, want := range recs {
		got, err := s.Record(ctx, want.Token)
		if err != nil || !sameRecord(got, want) {
			t.Fatalf("Record(%s) = %+v, %v; want %+v", want.Token, got, err, want)
		}
	}
	if tok, err := s.Lookup(ctx, k.ID, lookup(1)); err != nil || tok != "tok-2" {
		t.Fatalf("Lookup = %q, %v", tok, err)
	}
	if _, err := s.Lookup(ctx, k.ID, lookup(2)); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("Lookup of unknown key: %v", err)
	}
	if _, err := s.Lookup(ctx, vault.KeyID{42}, lookup(1)); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("Lookup under another key id: %v", err)
	}
	if _, err := s.Record(ctx, "tok-3"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("Record of unknown token: %v", err)
	}
}

// testRecordAADVersions: the vault opens a record with the associated data
// of its AAD version, so a store must give back the version it was given:
// RecordAADv1 for records written before v2 (restored backups, old data
// directories), v2 for new ones. (RunRights checks the listing and the
// rectification that turns a v1 record into a v2 one.)
func testRecordAADVersions(t *testing.T, s vault.Store) {
	putAADVersions(t, s)
}

// putAADVersions stores, for alice, a record of each AAD version with and
// without an expiry, and checks that Record gives each back as stored.
func putAADVersions(t *testing.T, s vault.Store) (vault.SubjectKey, []vault.Record) {
	t.Helper()
	ctx := context.Background()
	k := mustCreate(t, s, "alice")
	var recs []vault.Record
	for i, v := range []int{vault.RecordAADv1, vault.RecordAADv2} {
		for _, expires := range []bool{false, true} {
			r := rec(k.ID, fmt.Sprintf("v%d-%v", v, expires), lookup(10+len(recs)))
			r.AADVersion = v
			if expires {
				r.Expires = r.Created.Add(time.Duration(i+1) * time.Hour)
			}
			recs = append(recs, r)
		}
	}
	if err := s.PutRecords(ctx, "alice", k.ID, recs); err != nil {
		t.Fatal(err)
	}
	for _, want := range recs {
		if got, err := s.Record(ctx, want.Token); err != nil || !sameRecord(got, want) {
			t.Fatalf("Record(%s) = %+v, %v; want %+v", want.Token, got, err, want)
		}
	}
	return k, recs
}

func testCollisions(t *testing.T, s vault.Store) {
	ctx := context.Background()
	k := mustCreate(t, s, "alice")
	if err := s.PutRecords(ctx, "alice", k.ID, []vault.Record{rec(k.ID, "taken", lookup(1))}); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		recs   []vault.Record
		index  int
		lookup bool
	}{
		"existing token":  {[]vault.Record{rec(k.ID, "new-1", nil), rec(k.ID, "taken", nil)}, 1, false},
		"within batch":    {[]vault.Record{rec(k.ID, "dup", nil), rec(k.ID, "new-2", nil), rec(k.ID, "dup", nil)}, 2, false},
		"existing lookup": {[]vault.Record{rec(k.ID, "new-3", lookup(1))}, 0, true},
		"lookup in batch": {[]vault.Record{rec(k.ID, "new-4", lookup(5)), rec(k.ID, "new-5", lookup(5))}, 1, true},
	} {
		t.Run(name, func(t *testing.T) {
			err := s.PutRecords(ctx, "alice", k.ID, tc.recs)
			var ce *vault.CollisionError
			if !errors.As(err, &ce) || !errors.Is(err, vault.ErrCollision) || ce.Index != tc.index || ce.Lookup != tc.lookup {
				t.Fatalf("PutRecords err = %v, want collision at %d (lookup=%v)", err, tc.index, tc.lookup)
			}
			// All or nothing: no record of the failed batch was stored.
			for _, r := range tc.recs {
				if r.Token == "taken" {
					continue
				}
				if _, err := s.Record(ctx, r.Token); !errors.Is(err, vault.ErrNotFound) {
					t.Fatalf("record %s of a failed batch was stored: %v", r.Token, err)
				}
			}
			if _, err := s.Lookup(ctx, k.ID, lookup(5)); !errors.Is(err, vault.ErrNotFound) {
				t.Fatal("lookup of a failed batch was stored")
			}
		})
	}
	got, err := s.Record(ctx, "taken")
	if err != nil || got.Lookup == nil {
		t.Fatalf("the original record changed: %+v %v", got, err)
	}
}

func testPutRecordsChecksTheKey(t *testing.T, s vault.Store) {
	ctx := context.Background()
	k := mustCreate(t, s, "alice")
	if err := s.PutRecords(ctx, "alice", vault.KeyID{9}, []vault.Record{rec(vault.KeyID{9}, "t1", nil)}); !errors.Is(err, vault.ErrErased) {
		t.Fatalf("PutRecords under a stale key id: %v", err)
	}
	if err := s.PutRecords(ctx, "bob", k.ID, []vault.Record{rec(k.ID, "t2", nil)}); !errors.Is(err, vault.ErrErased) {
		t.Fatalf("PutRecords for a subject without key: %v", err)
	}
	if _, err := s.ShredSubject(ctx, "alice", vault.LedgerEntry{}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRecords(ctx, "alice", k.ID, []vault.Record{rec(k.ID, "t3", nil)}); !errors.Is(err, vault.ErrErased) {
		t.Fatalf("PutRecords after shred: %v", err)
	}
}

// testDeleteRecord: DeleteRecord removes the record and its lookup entry,
// and nothing else.
func testDeleteRecord(t *testing.T, s vault.Store) {
	ctx := context.Background()
	k := mustCreate(t, s, "alice")
	recs := []vault.Record{rec(k.ID, "det", lookup(1)), rec(k.ID, "rnd", nil), rec(k.ID, "keep", lookup(2))}
	if err := s.PutRecords(ctx, "alice", k.ID, recs); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{"det", "rnd"} {
		if err := s.DeleteRecord(ctx, tok); err != nil {
			t.Fatalf("DeleteRecord(%s): %v", tok, err)
		}
		if _, err := s.Record(ctx, tok); !errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("record %s after DeleteRecord: %v", tok, err)
		}
		if err := s.DeleteRecord(ctx, tok); !errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("second DeleteRecord(%s): %v", tok, err)
		}
	}
	if _, err := s.Lookup(ctx, k.ID, lookup(1)); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("DeleteRecord kept the lookup: %v", err)
	}
	if got, err := s.Record(ctx, "keep"); err != nil || !sameRecord(got, recs[2]) {
		t.Fatalf("another record after DeleteRecord: %+v, %v", got, err)
	}
	if tok, err := s.Lookup(ctx, k.ID, lookup(2)); err != nil || tok != "keep" {
		t.Fatalf("another lookup after DeleteRecord = %q, %v", tok, err)
	}
	// The value is free again: a new record may take the token and lookup.
	again := rec(k.ID, "det", lookup(1))
	if err := s.PutRecords(ctx, "alice", k.ID, []vault.Record{again}); err != nil {
		t.Fatalf("PutRecords after DeleteRecord: %v", err)
	}
	if tok, err := s.Lookup(ctx, k.ID, lookup(1)); err != nil || tok != "det" {
		t.Fatalf("lookup of the new record = %q, %v", tok, err)
	}
}

func testShredAndPurge(t *testing.T, s vault.Store) {
	ctx := context.Background()
	a := mustCreate(t, s, "alice")
	b := mustCreate(t, s, "bob")
	var ar, br []vault.Record
	for i := range 2500 { // more than one purge batch
		var l []byte
		if i%2 == 0 {
			l = lookup(i)
		}
		ar = append(ar, rec(a.ID, fmt.Sprintf("a-%d", i), l))
	}
	br = append(br, rec(b.ID, "b-1", lookup(1)))
	if err := s.PutRecords(ctx, "alice", a.ID, ar[:1000]); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRecords(ctx, "alice", a.ID, ar[1000:]); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRecords(ctx, "bob", b.ID, br); err != nil {
		t.Fatal(err)
	}
	id, err := s.ShredSubject(ctx, "alice", vault.LedgerEntry{})
	if err != nil || id != a.ID {
		t.Fatalf("ShredSubject = %x, %v", id, err)
	}
	if _, err := s.SubjectKey(ctx, "alice"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("subject key after shred: %v", err)
	}
	if _, _, err := s.SubjectKeyByID(ctx, a.ID); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("key by id after shred: %v", err)
	}
	if _, err := s.ShredSubject(ctx, "alice", vault.LedgerEntry{}); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("second shred: %v", err)
	}
	pending, err := s.PendingPurges(ctx)
	if err != nil || len(pending) != 1 || pending[0] != a.ID {
		t.Fatalf("PendingPurges = %x, %v", pending, err)
	}
	c, err := s.PurgeKey(ctx, a.ID)
	if err != nil || c.Records != 2500 || c.Lookups != 1250 {
		t.Fatalf("PurgeKey = %+v, %v", c, err)
	}
	for _, r := range ar {
		if _, err := s.Record(ctx, r.Token); !errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("record %s survived the purge", r.Token)
		}
	}
	if _, err := s.Lookup(ctx, a.ID, lookup(0)); !errors.Is(err, vault.ErrNotFound) {
		t.Fatal("lookup survived the purge")
	}
	if pending, _ := s.PendingPurges(ctx); len(pending) != 0 {
		t.Fatalf("pending purges after purge: %d", len(pending))
	}
	if c, err := s.PurgeKey(ctx, a.ID); err != nil || c != (vault.PurgeCounts{}) {
		t.Fatalf("repeated PurgeKey = %+v, %v", c, err)
	}
	// Bob is untouched.
	if got, err := s.Record(ctx, "b-1"); err != nil || !sameRecord(got, br[0]) {
		t.Fatalf("bob's record: %v", err)
	}
	if _, err := s.Lookup(ctx, b.ID, lookup(1)); err != nil {
		t.Fatalf("bob's lookup: %v", err)
	}
}

func testConcurrentFirstUse(t *testing.T, s vault.Store) {
	ctx := context.Background()
	var wg sync.WaitGroup
	got := make([]vault.SubjectKey, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := s.CreateSubjectKey(ctx, "carol", newKey(t))
			if err != nil {
				t.Error(err)
			}
			got[i] = k
		}()
	}
	wg.Wait()
	for _, k := range got[1:] {
		if k.ID != got[0].ID {
			t.Fatal("concurrent first uses got different keys")
		}
	}
}

func testConcurrentWritesAndShred(t *testing.T, s vault.Store) {
	ctx := context.Background()
	k := mustCreate(t, s, "dave")
	var wg sync.WaitGroup
	var mu sync.Mutex
	var stored []string
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				tok := fmt.Sprintf("w%d-%d", w, i)
				err := s.PutRecords(ctx, "dave", k.ID, []vault.Record{rec(k.ID, tok, nil)})
				if errors.Is(err, vault.ErrErased) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				stored = append(stored, tok)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Millisecond)
	if _, err := s.ShredSubject(ctx, "dave", vault.LedgerEntry{}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	c, err := s.PurgeKey(ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Every acknowledged write was purged; none slipped in after the shred.
	if int(c.Records) != len(stored) {
		t.Fatalf("purged %d records, %d were acknowledged", c.Records, len(stored))
	}
	for _, tok := range stored {
		if _, err := s.Record(ctx, tok); !errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("record %s survived", tok)
		}
	}
}

// testConcurrentDuplicates: concurrent writers draw the same token (or
// deterministic lookup) at different moments, so the duplicates land in
// one write, in consecutive writes and in writes far apart. Exactly one of
// them is acknowledged, the others are collisions, and what is stored is
// the acknowledged record (no loser overwrote it).
func testConcurrentDuplicates(t *testing.T, s vault.Store) {
	ctx := context.Background()
	k := mustCreate(t, s, "erin")
	const writers, rounds = 8, 60
	type win struct {
		token  string
		sealed []byte
	}
	var mu sync.Mutex
	tokenWins := map[string][]win{}
	lookupWins := map[int][]win{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				shared := rec(k.ID, fmt.Sprintf("shared-%d", i), nil)
				err := s.PutRecords(ctx, "erin", k.ID, []vault.Record{shared})
				if err == nil {
					mu.Lock()
					tokenWins[shared.Token] = append(tokenWins[shared.Token], win{shared.Token, shared.Sealed})
					mu.Unlock()
				} else if !errors.Is(err, vault.ErrCollision) {
					t.Errorf("shared token: %v", err)
					return
				}
				// A token of its own, with a lookup every writer uses.
				det := rec(k.ID, fmt.Sprintf("own-%d-%d", w, i), lookup(i))
				err = s.PutRecords(ctx, "erin", k.ID, []vault.Record{det})
				if err == nil {
					mu.Lock()
					lookupWins[i] = append(lookupWins[i], win{det.Token, det.Sealed})
					mu.Unlock()
				} else if !errors.Is(err, vault.ErrCollision) {
					t.Errorf("shared lookup: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for i := range rounds {
		tw := tokenWins[fmt.Sprintf("shared-%d", i)]
		if len(tw) != 1 {
			t.Fatalf("token shared-%d acknowledged %d times", i, len(tw))
		}
		if r, err := s.Record(ctx, tw[0].token); err != nil || !bytes.Equal(r.Sealed, tw[0].sealed) {
			t.Fatalf("token shared-%d: stored record is not the acknowledged one (%v)", i, err)
		}
		lw := lookupWins[i]
		if len(lw) != 1 {
			t.Fatalf("lookup %d acknowledged %d times", i, len(lw))
		}
		if tok, err := s.Lookup(ctx, k.ID, lookup(i)); err != nil || tok != lw[0].token {
			t.Fatalf("lookup %d = %q, %v; acknowledged %q", i, tok, err, lw[0].token)
		}
		if r, err := s.Record(ctx, lw[0].token); err != nil || !bytes.Equal(r.Sealed, lw[0].sealed) {
			t.Fatalf("lookup %d: stored record is not the acknowledged one (%v)", i, err)
		}
	}
}

// testConcurrentLargeBatches: many concurrent full-size batches together
// exceed what one transaction of a group-committing store can hold, each
// alone does not. Every batch is stored, none is lost or half-written.
func testConcurrentLargeBatches(t *testing.T, s vault.Store) {
	ctx := context.Background()
	k := mustCreate(t, s, "frank")
	const writers, batch = 64, 1000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			recs := make([]vault.Record, batch)
			for i := range recs {
				recs[i] = rec(k.ID, fmt.Sprintf("big-%d-%d", w, i), nil)
			}
			if err := s.PutRecords(ctx, "frank", k.ID, recs); err != nil {
				t.Errorf("writer %d: %v", w, err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for w := range writers {
		for _, i := range []int{0, batch / 2, batch - 1} {
			if _, err := s.Record(ctx, fmt.Sprintf("big-%d-%d", w, i)); err != nil {
				t.Fatalf("writer %d record %d: %v", w, i, err)
			}
		}
	}
	if _, err := s.ShredSubject(ctx, "frank", vault.LedgerEntry{}); err != nil {
		t.Fatal(err)
	}
	c, err := s.PurgeKey(ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if c.Records != writers*batch {
		t.Fatalf("purged %d records, stored %d", c.Records, writers*batch)
	}
}

func testCanceledContext(t *testing.T, s vault.Store) {
	ctx := context.Background()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.CreateSubjectKey(cctx, "erin", newKey(t)); !errors.Is(err, context.Canceled) {
		t.Fatalf("CreateSubjectKey with canceled context: %v", err)
	}
	if _, err := s.SubjectKey(ctx, "erin"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatal("canceled create stored a key")
	}
}

func newKey(t *testing.T) vault.SubjectKey {
	sk := vault.SubjectKey{Wrapped: make([]byte, 65), Created: time.Now().UTC().Truncate(time.Microsecond)}
	rand.Read(sk.ID[:])
	rand.Read(sk.Wrapped)
	return sk
}

func mustCreate(t *testing.T, s vault.Store, subject string) vault.SubjectKey {
	t.Helper()
	k, err := s.CreateSubjectKey(context.Background(), subject, newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func lookup(i int) []byte {
	l := make([]byte, 32)
	copy(l, fmt.Sprintf("lookup-%d", i))
	return l
}

func rec(id vault.KeyID, token string, lookup []byte) vault.Record {
	sealed := make([]byte, aead.Overhead+8)
	rand.Read(sealed)
	return vault.Record{Token: token, KeyID: id, Kind: format.PAN, Created: time.Now().UTC().Truncate(time.Microsecond),
		Lookup: lookup, Sealed: sealed, AADVersion: vault.RecordAADv2}
}

func sameKey(a, b vault.SubjectKey) bool {
	return a.ID == b.ID && bytes.Equal(a.Wrapped, b.Wrapped) && a.Created.Equal(b.Created)
}

func sameRecord(a, b vault.Record) bool {
	return a.Token == b.Token && a.KeyID == b.KeyID && a.Kind == b.Kind && a.Created.Equal(b.Created) &&
		a.Expires.Equal(b.Expires) && bytes.Equal(a.Lookup, b.Lookup) && bytes.Equal(a.Sealed, b.Sealed) &&
		a.AADVersion == b.AADVersion
}
