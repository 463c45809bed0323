package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/tokenvault/tokenvault/vault"
)

// RunKeyScan checks [vault.KeyScanStore]: the resumable scan of subject
// keys, rewrapping, and whether any key is stored.
func RunKeyScan(t *testing.T, newStore NewStore) {
	runTests(t, newStore, []test{
		{"ScanAndReplaceWrapped", testScanAndReplaceWrapped},
		{"HasSubjectKeys", testHasSubjectKeys},
	})
}

func testScanAndReplaceWrapped(t *testing.T, s vault.Store) {
	ctx := context.Background()
	ks := as[vault.KeyScanStore](t, s)
	var want []string
	for i := range 25 {
		subj := fmt.Sprintf("subject-%02d", i)
		want = append(want, subj)
		mustCreate(t, s, subj)
	}
	// Page through with a resumable cursor.
	var got []string
	after := ""
	for {
		page, err := ks.SubjectKeys(ctx, after, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			got = append(got, e.Subject)
			if e.Key.ID == (vault.KeyID{}) || len(e.Key.Wrapped) == 0 {
				t.Fatalf("scan returned an incomplete key for %s", e.Subject)
			}
		}
		after = page[len(page)-1].Subject
	}
	// Every subject exactly once, in the store's own order (a store that
	// keeps no subject id in the clear cannot order by it).
	order := slices.Clone(got)
	slices.Sort(got)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("scan (sorted) = %v, want each of %v once", got, want)
	}
	k, _ := s.SubjectKey(ctx, "subject-03")
	if err := ks.ReplaceWrapped(ctx, "subject-03", k.ID, []byte("rewrapped")); err != nil {
		t.Fatal(err)
	}
	k2, _ := s.SubjectKey(ctx, "subject-03")
	if string(k2.Wrapped) != "rewrapped" || k2.ID != k.ID || !k2.Created.Equal(k.Created) {
		t.Fatalf("after ReplaceWrapped: %+v", k2)
	}
	if _, sk, err := s.SubjectKeyByID(ctx, k.ID); err != nil || string(sk.Wrapped) != "rewrapped" {
		t.Fatalf("by id after ReplaceWrapped: %v", err)
	}
	if err := ks.ReplaceWrapped(ctx, "subject-03", vault.KeyID{7}, []byte("x")); !errors.Is(err, vault.ErrErased) {
		t.Fatalf("ReplaceWrapped with a stale key id: %v", err)
	}
	if err := ks.ReplaceWrapped(ctx, "nobody", k.ID, []byte("x")); !errors.Is(err, vault.ErrErased) {
		t.Fatalf("ReplaceWrapped of a missing subject: %v", err)
	}
	// A cursor resumes past a subject shredded meanwhile.
	if _, err := s.ShredSubject(ctx, order[1], vault.LedgerEntry{}); err != nil {
		t.Fatal(err)
	}
	page, _ := ks.SubjectKeys(ctx, order[0], 1)
	if len(page) != 1 || page[0].Subject != order[2] {
		t.Fatalf("scan after shred: %+v, want %s", page, order[2])
	}
	// And past a cursor subject that was itself shredded.
	if _, err := s.ShredSubject(ctx, order[0], vault.LedgerEntry{}); err != nil {
		t.Fatal(err)
	}
	page, _ = ks.SubjectKeys(ctx, order[0], 1)
	if len(page) != 1 || page[0].Subject != order[2] {
		t.Fatalf("scan after the cursor's shred: %+v, want %s", page, order[2])
	}
}

// testHasSubjectKeys: a store holds keys while it has a subject key or a
// shredded key whose purge has not finished (its records are still there).
func testHasSubjectKeys(t *testing.T, s vault.Store) {
	ctx := context.Background()
	ks := as[vault.KeyScanStore](t, s)
	if has, err := ks.HasSubjectKeys(ctx); err != nil || has {
		t.Fatalf("empty store HasSubjectKeys = %v, %v", has, err)
	}
	a := mustCreate(t, s, "alice")
	if has, err := ks.HasSubjectKeys(ctx); err != nil || !has {
		t.Fatalf("HasSubjectKeys = %v, %v", has, err)
	}
	b := mustCreate(t, s, "bob")
	if _, err := s.ShredSubject(ctx, "alice", vault.LedgerEntry{}); err != nil {
		t.Fatal(err)
	}
	if has, _ := ks.HasSubjectKeys(ctx); !has {
		t.Fatal("HasSubjectKeys false with bob's key and a pending purge")
	}
	if _, err := s.ShredSubject(ctx, "bob", vault.LedgerEntry{}); err != nil {
		t.Fatal(err)
	}
	if has, _ := ks.HasSubjectKeys(ctx); !has {
		t.Fatal("HasSubjectKeys false with pending purges only")
	}
	for _, id := range []vault.KeyID{a.ID, b.ID} {
		if _, err := s.PurgeKey(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if has, err := ks.HasSubjectKeys(ctx); err != nil || has {
		t.Fatalf("HasSubjectKeys after every key was shredded and purged = %v, %v", has, err)
	}
}
