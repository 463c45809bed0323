package audit_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/internal/audit"
)

func newSubjectHasher(t *testing.T) *audit.SubjectHasher {
	t.Helper()
	lk, err := aead.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Zero()
	h, err := audit.NewSubjectHasher(lk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Zero)
	return h
}

func hashOf(t *testing.T, h *audit.SubjectHasher, s string) string {
	t.Helper()
	v, err := h.Hash(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Subject ids never reach the file: entries and items carry the keyed
// hash; Trail finds a subject's entries across rotated files; entries a
// log wrote before (clear ids) still verify and TrailByID finds them too.
func TestSubjectsHashed(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	key := newKey(t)
	h := newSubjectHasher(t)
	// The old format: a log without a hasher (as written by earlier
	// versions).
	old := open(t, path, key, 10)
	e := entry(0)
	e.Subject = "cust-42"
	if err := old.Write(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	old.Close()

	l, err := audit.Open(audit.Options{Path: path, SigningKey: key, SubjectHash: h.Hash,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	e = entry(1)
	e.Subject = "cust-42"
	if err := l.Write(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	items := []audit.Item{{Context: "orders.note", Subject: "cust-42", Outcome: "OK"}, {Context: "orders.note", Subject: "cust-42", Outcome: "OK"},
		{Context: "orders.note", Subject: "cust-7", Outcome: "OK"}}
	dec := audit.Entry{Op: "decrypt", Purpose: "delivery", Outcome: "OK", Items: items}
	if err := l.Write(context.Background(), dec); err != nil {
		t.Fatal(err)
	}
	if items[0].Subject != "cust-42" || items[0].SubjectHash != "" {
		t.Errorf("the caller's items were changed: %+v", items[0])
	}
	e = entry(2)
	e.Subject = "cust-7"
	if err := l.WriteAsync(e); err != nil {
		t.Fatal(err)
	}
	l.Close()

	if _, err := audit.VerifyDir(dir, pubOf(key)); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	for _, de := range ents {
		b, _ := os.ReadFile(filepath.Join(dir, de.Name()))
		// Only the old entry names a subject in the clear.
		if n := strings.Count(string(b), "cust-"); n > 0 && !(n == 1 && strings.Contains(string(b), `"subject":"cust-42"`)) {
			t.Errorf("%s names subject ids %d times", de.Name(), n)
		}
	}
	h42 := hashOf(t, h, "cust-42")
	if len(h42) != 32 || h42 == hashOf(t, h, "cust-7") || h42 == hashOf(t, newSubjectHasher(t), "cust-42") {
		t.Fatalf("hash %q: want 128 bits, distinct per subject and per ledger key", h42)
	}
	tr, err := audit.Trail(dir, h42, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(tr) != 2 || tr[0].Entry.SubjectHash != h42 || tr[1].Entry.Op != "decrypt" || tr[1].Entry.Items[1].SubjectHash != h42 ||
		tr[1].Entry.Items[2].SubjectHash == h42 || tr[0].File == tr[1].File {
		t.Fatalf("trail of cust-42: %+v", tr)
	}
	if tr, _ := audit.Trail(dir, h42, 1); len(tr) != 1 || tr[0].Entry.Op != "decrypt" {
		t.Errorf("limit 1: %+v, want the newest", tr)
	}
	all, err := audit.TrailByID(dir, h, "cust-42", 0)
	if err != nil || len(all) != 3 || all[0].Entry.Subject != "cust-42" {
		t.Fatalf("TrailByID: %+v %v", all, err)
	}
}
