package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/vault"
)

// RunRights checks [vault.RightsStore]: export scans, rectification,
// restriction and expiry.
func RunRights(t *testing.T, newStore NewStore) {
	runTests(t, newStore, []test{
		{"KeyRecords", testKeyRecords},
		{"KeyRecordsAcrossDeletes", testKeyRecordsAcrossDeletes},
		{"RecordAADVersions", testRecordAADVersionsListed},
		{"ReplaceRecord", testReplaceRecord},
		{"Restriction", testRestriction},
		{"Expiry", testExpiry},
	})
}

func testKeyRecords(t *testing.T, s vault.Store) {
	ctx := context.Background()
	rs := as[vault.RightsStore](t, s)
	a := mustCreate(t, s, "alice")
	b := mustCreate(t, s, "bob")
	want := map[string]vault.Record{}
	var recs []vault.Record
	for i := range 25 {
		r := rec(a.ID, fmt.Sprintf("a-%02d", i), nil)
		if i%5 == 0 {
			r.Expires = r.Created.Add(time.Hour)
		}
		recs = append(recs, r)
		want[r.Token] = r
	}
	if err := s.PutRecords(ctx, "alice", a.ID, recs); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRecords(ctx, "bob", b.ID, []vault.Record{rec(b.ID, "b-1", nil)}); err != nil {
		t.Fatal(err)
	}
	got := AllKeyRecords(t, rs, a.ID, 7)
	for _, r := range got {
		if w, ok := want[r.Token]; !ok || !sameRecord(r, w) || !r.Expires.Equal(w.Expires) {
			t.Fatalf("KeyRecords returned %+v, want %+v", r, w)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("scan found %d records, want %d", len(got), len(want))
	}
	if page, err := rs.KeyRecords(ctx, vault.KeyID{99}, "", 10); err != nil || len(page) != 0 {
		t.Fatalf("KeyRecords of an unknown key = %d, %v", len(page), err)
	}
}

// testKeyRecordsAcrossDeletes: a listing resumed from a record's Cursor
// lists every record that stays, once, when records are deleted between
// pages: the one the cursor came from, others already listed, others not
// yet listed, and a whole batch the cursor's record was in. A cursor the
// store did not make is refused.
func testKeyRecordsAcrossDeletes(t *testing.T, s vault.Store) {
	ctx := context.Background()
	rs := as[vault.RightsStore](t, s)
	k := mustCreate(t, s, "alice")
	put := func(recs ...vault.Record) {
		t.Helper()
		if err := s.PutRecords(ctx, "alice", k.ID, recs); err != nil {
			t.Fatal(err)
		}
	}
	var batch, singles []vault.Record
	for i := range 70 {
		r := rec(k.ID, fmt.Sprintf("b-%02d", i), nil)
		if i%7 == 0 {
			r.Lookup = lookup(1000 + i)
		}
		batch = append(batch, r)
	}
	put(batch...)
	for i := range 6 {
		r := rec(k.ID, fmt.Sprintf("s-%d", i), nil)
		singles = append(singles, r)
		put(r)
	}
	inBatch := map[string]bool{}
	for _, r := range batch {
		inBatch[r.Token] = true
	}
	live := map[string]bool{}
	for _, r := range append(slices.Clone(batch), singles...) {
		live[r.Token] = true
	}
	del := func(tok string) {
		t.Helper()
		if err := s.DeleteRecord(ctx, tok); err != nil {
			t.Fatalf("DeleteRecord: %v", err)
		}
		delete(live, tok)
	}
	listed := map[string]bool{}
	after, pages, batchGone := "", 0, false
	for {
		page, err := rs.KeyRecords(ctx, k.ID, after, 5)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		pages++
		for _, r := range page {
			if listed[r.Token] || !live[r.Token] {
				t.Fatalf("page %d lists %s: listed before %v, deleted %v", pages, r.Token, listed[r.Token], !live[r.Token])
			}
			listed[r.Token] = true
		}
		last := page[len(page)-1]
		after = last.Cursor
		switch {
		case !batchGone && pages >= 3 && inBatch[last.Token]:
			// The whole batch, the cursor's record with it.
			for _, r := range batch {
				if live[r.Token] {
					del(r.Token)
				}
			}
			batchGone = true
		case pages%2 == 0:
			del(last.Token) // the cursor's own record
			if page[0].Token != last.Token {
				del(page[0].Token) // one listed before it
			}
			for tok := range live { // and one not listed yet
				if !listed[tok] {
					del(tok)
					break
				}
			}
		}
	}
	if !batchGone {
		t.Fatal("no page ended on a batch record: the test did not delete the cursor's batch")
	}
	for tok := range live {
		if !listed[tok] {
			t.Errorf("record %s was never deleted and never listed", tok)
		}
	}
	for _, bad := range []string{"b-01", "zz", strings.Repeat("x", 128)} {
		if _, err := rs.KeyRecords(ctx, k.ID, bad, 5); !errors.Is(err, vault.ErrInvalidArgument) {
			t.Errorf("KeyRecords after a cursor the store did not make: %v, want ErrInvalidArgument", err)
		}
	}
	// A record of a batch deleted and its token written again (as a
	// deterministic token is after its expiry) leaves the rest of its
	// batch listed.
	again := make([]vault.Record, 10)
	for i := range again {
		again[i] = rec(k.ID, fmt.Sprintf("a-%d", i), nil)
		live[again[i].Token] = true
	}
	put(again...)
	for _, i := range []int{0, 9} {
		del(again[i].Token)
		put(again[i])
		live[again[i].Token] = true
	}
	// What is left lists in full from the start.
	all, err := rs.KeyRecords(ctx, k.ID, "", 1000)
	if err != nil || len(all) != len(live) {
		t.Fatalf("a fresh listing gives %d records, %v; want %d", len(all), err, len(live))
	}
	for _, r := range all {
		if !live[r.Token] {
			t.Fatalf("a fresh listing gives %s, deleted", r.Token)
		}
	}
}

// testRecordAADVersionsListed: KeyRecords gives back each record's AAD
// version, and a rectification turns a v1 record into a v2 one.
func testRecordAADVersionsListed(t *testing.T, s vault.Store) {
	ctx := context.Background()
	rs := as[vault.RightsStore](t, s)
	k, recs := putAADVersions(t, s)
	listed, err := rs.KeyRecords(ctx, k.ID, "", 10)
	if err != nil || len(listed) != len(recs) {
		t.Fatalf("KeyRecords = %d records, %v", len(listed), err)
	}
	for _, got := range listed {
		if got.AADVersion != vault.RecordAADv1 && got.AADVersion != vault.RecordAADv2 {
			t.Fatalf("KeyRecords: %s has AAD version %d", got.Token, got.AADVersion)
		}
	}
	up := recs[1] // v1, with an expiry
	up.AADVersion = vault.RecordAADv2
	up.Sealed = bytes.Repeat([]byte{7}, len(up.Sealed))
	if err := rs.ReplaceRecord(ctx, "alice", k.ID, up); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Record(ctx, up.Token); err != nil || !sameRecord(got, up) {
		t.Fatalf("after ReplaceRecord: %+v, %v; want %+v", got, err, up)
	}
}

func testReplaceRecord(t *testing.T, s vault.Store) {
	ctx := context.Background()
	rs := as[vault.RightsStore](t, s)
	a := mustCreate(t, s, "alice")
	orig := rec(a.ID, "det", lookup(1))
	other := rec(a.ID, "other", lookup(2))
	random := rec(a.ID, "rnd", nil)
	if err := s.PutRecords(ctx, "alice", a.ID, []vault.Record{orig, other, random}); err != nil {
		t.Fatal(err)
	}
	next := orig
	next.Sealed, next.Lookup = bytes.Repeat([]byte{9}, len(orig.Sealed)), lookup(3)
	if err := rs.ReplaceRecord(ctx, "alice", a.ID, next); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Record(ctx, "det"); err != nil || !sameRecord(got, next) {
		t.Fatalf("after replace: %+v, %v", got, err)
	}
	if _, err := s.Lookup(ctx, a.ID, lookup(1)); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("old lookup survived: %v", err)
	}
	if tok, err := s.Lookup(ctx, a.ID, lookup(3)); err != nil || tok != "det" {
		t.Fatalf("new lookup = %q, %v", tok, err)
	}
	// The new lookup belongs to another token: nothing changes.
	clash := next
	clash.Sealed, clash.Lookup = bytes.Repeat([]byte{8}, len(orig.Sealed)), lookup(2)
	if err := rs.ReplaceRecord(ctx, "alice", a.ID, clash); !errors.Is(err, vault.ErrCollision) {
		t.Fatalf("replace onto a taken lookup: %v", err)
	}
	if got, _ := s.Record(ctx, "det"); !sameRecord(got, next) {
		t.Fatal("a rejected replace changed the record")
	}
	if tok, _ := s.Lookup(ctx, a.ID, lookup(3)); tok != "det" {
		t.Fatal("a rejected replace dropped the lookup")
	}
	// Dropping the lookup (the domain's answer to that clash), and
	// adding an expiry.
	clash.Lookup, clash.Expires = nil, time.Now().UTC().Add(-time.Minute)
	if err := rs.ReplaceRecord(ctx, "alice", a.ID, clash); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(ctx, a.ID, lookup(3)); !errors.Is(err, vault.ErrNotFound) {
		t.Fatal("lookup kept after replacing with a record without one")
	}
	if tok, _ := s.Lookup(ctx, a.ID, lookup(2)); tok != "other" {
		t.Fatal("the other token lost its lookup")
	}
	if n, err := rs.PurgeExpired(ctx, time.Now(), 10); err != nil || n != 1 {
		t.Fatalf("the replaced record's expiry is not indexed: purged %d, %v", n, err)
	}
	for name, tc := range map[string]struct {
		subject string
		id      vault.KeyID
		r       vault.Record
		want    error
	}{
		"unknown token":   {"alice", a.ID, rec(a.ID, "nope", nil), vault.ErrNotFound},
		"stale key id":    {"alice", vault.KeyID{5}, rec(vault.KeyID{5}, "rnd", nil), vault.ErrErased},
		"no such subject": {"bob", a.ID, rec(a.ID, "rnd", nil), vault.ErrErased},
	} {
		t.Run(name, func(t *testing.T) {
			if err := rs.ReplaceRecord(ctx, tc.subject, tc.id, tc.r); !errors.Is(err, tc.want) {
				t.Fatalf("ReplaceRecord = %v, want %v", err, tc.want)
			}
		})
	}
	if got, _ := s.Record(ctx, "rnd"); !sameRecord(got, random) {
		t.Fatal("a rejected replace changed another record")
	}
}

func testRestriction(t *testing.T, s vault.Store) {
	ctx := context.Background()
	rs := as[vault.RightsStore](t, s)
	a := mustCreate(t, s, "alice")
	if k, _ := s.SubjectKey(ctx, "alice"); !k.Restricted.IsZero() {
		t.Fatal("new subject is restricted")
	}
	since := time.Now().UTC().Truncate(time.Microsecond)
	if err := rs.SetRestricted(ctx, "alice", since); err != nil {
		t.Fatal(err)
	}
	if k, err := s.SubjectKey(ctx, "alice"); err != nil || !k.Restricted.Equal(since) {
		t.Fatalf("SubjectKey.Restricted = %v, %v", k.Restricted, err)
	}
	if _, k, err := s.SubjectKeyByID(ctx, a.ID); err != nil || !k.Restricted.Equal(since) {
		t.Fatalf("SubjectKeyByID.Restricted = %v, %v", k.Restricted, err)
	}
	if err := rs.SetRestricted(ctx, "alice", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if k, _ := s.SubjectKey(ctx, "alice"); !k.Restricted.IsZero() {
		t.Fatal("restriction not lifted")
	}
	if err := rs.SetRestricted(ctx, "nobody", since); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("restricting an unknown subject: %v", err)
	}
	// Erasure removes the mark: a new key for the same id starts free.
	if err := rs.SetRestricted(ctx, "alice", since); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ShredSubject(ctx, "alice", vault.LedgerEntry{}); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "alice")
	if k, _ := s.SubjectKey(ctx, "alice"); !k.Restricted.IsZero() {
		t.Fatal("restriction survived erasure")
	}
}

func testExpiry(t *testing.T, s vault.Store) {
	ctx := context.Background()
	rs := as[vault.RightsStore](t, s)
	a := mustCreate(t, s, "alice")
	now := time.Now().UTC().Truncate(time.Microsecond)
	var recs []vault.Record
	for i := range 30 {
		r := rec(a.ID, fmt.Sprintf("e-%02d", i), nil)
		if i%2 == 0 {
			r.Lookup = lookup(i)
		}
		switch {
		case i < 20:
			r.Expires = now.Add(-time.Duration(i+1) * time.Minute) // due
		case i < 25:
			r.Expires = now.Add(time.Hour) // not yet
		}
		recs = append(recs, r)
	}
	if err := s.PutRecords(ctx, "alice", a.ID, recs); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Record(ctx, "e-03"); !got.Expires.Equal(recs[3].Expires) {
		t.Fatalf("expiry not stored: %v", got.Expires)
	}
	n1, err := rs.PurgeExpired(ctx, now, 15)
	if err != nil || n1 != 15 {
		t.Fatalf("first PurgeExpired = %d, %v", n1, err)
	}
	n2, err := rs.PurgeExpired(ctx, now, 15)
	if err != nil || n2 != 5 {
		t.Fatalf("second PurgeExpired = %d, %v", n2, err)
	}
	if n, _ := rs.PurgeExpired(ctx, now, 15); n != 0 {
		t.Fatalf("third PurgeExpired = %d", n)
	}
	for i, r := range recs {
		_, err := s.Record(ctx, r.Token)
		if i < 20 {
			if !errors.Is(err, vault.ErrNotFound) {
				t.Fatalf("expired record %s survived: %v", r.Token, err)
			}
			if r.Lookup != nil {
				if _, err := s.Lookup(ctx, a.ID, r.Lookup); !errors.Is(err, vault.ErrNotFound) {
					t.Fatalf("lookup of expired record %s survived", r.Token)
				}
			}
		} else if err != nil {
			t.Fatalf("unexpired record %s: %v", r.Token, err)
		}
	}
	page, _ := rs.KeyRecords(ctx, a.ID, "", 100)
	if len(page) != 10 {
		t.Fatalf("index lists %d records after purge, want 10", len(page))
	}
	// DeleteRecord removes one record and what points at it.
	if err := s.DeleteRecord(ctx, "e-20"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(ctx, a.ID, lookup(20)); !errors.Is(err, vault.ErrNotFound) {
		t.Fatal("DeleteRecord kept the lookup")
	}
	if n, _ := rs.PurgeExpired(ctx, now.Add(2*time.Hour), 100); n != 4 {
		t.Fatalf("PurgeExpired after DeleteRecord = %d, want 4 (no stale index entry)", n)
	}
	if err := s.DeleteRecord(ctx, "e-20"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("second DeleteRecord: %v", err)
	}
	// Erasure removes expiry index entries too.
	late := rec(a.ID, "late", nil)
	late.Expires = now.Add(time.Hour)
	if err := s.PutRecords(ctx, "alice", a.ID, []vault.Record{late}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ShredSubject(ctx, "alice", vault.LedgerEntry{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PurgeKey(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if n, _ := rs.PurgeExpired(ctx, now.Add(2*time.Hour), 100); n != 0 {
		t.Fatalf("expiry entries survived erasure: %d", n)
	}
}
