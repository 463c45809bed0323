package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/vault"
)

// RunRights checks [vault.RightsStore]: export scans, rectification,
// restriction and expiry.
func RunRights(t *testing.T, newStore NewStore) {
	runTests(t, newStore, []test{
		{"KeyRecords", testKeyRecords},
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
	got := map[string]bool{}
	after := ""
	for {
		page, err := rs.KeyRecords(ctx, a.ID, after, 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, r := range page {
			if got[r.Token] {
				t.Fatalf("record %s listed twice", r.Token)
			}
			got[r.Token] = true
			if w, ok := want[r.Token]; !ok || !sameRecord(r, w) || !r.Expires.Equal(w.Expires) {
				t.Fatalf("KeyRecords returned %+v, want %+v", r, w)
			}
		}
		after = page[len(page)-1].Token
	}
	if len(got) != len(want) {
		t.Fatalf("scan found %d records, want %d", len(got), len(want))
	}
	if page, err := rs.KeyRecords(ctx, vault.KeyID{99}, "", 10); err != nil || len(page) != 0 {
		t.Fatalf("KeyRecords of an unknown key = %d, %v", len(page), err)
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
