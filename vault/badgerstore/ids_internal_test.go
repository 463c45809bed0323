package badgerstore

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/crypto/keyfile"
	"github.com/tokenvault/tokenvault/internal/testfs"
	"github.com/tokenvault/tokenvault/vault"
)

// The subject ids of testdata/layout-1 (fixture.json).
var layout1IDs = []string{"zz-live-subject-3c9a", "zz-restricted-subject-51b0", "zz-erased-subject-7d1f"}

// TestMigrationResumes: a crash at any point of the migration loses
// nothing: the next Open finishes it, and the directory then holds every
// subject key and no subject id. The crash points: after the subjects
// were copied to layout 2 (the old entries still there), after the
// placeholders for DropPrefix were written, and after the drop, before
// the marker.
func TestMigrationResumes(t *testing.T) {
	for name, crash := range map[string]func(t *testing.T, s *Store){
		"after the copy": func(t *testing.T, s *Store) {
			if n, err := s.migrate(context.Background()); err != nil || n != 2 {
				t.Fatalf("migrate: %d, %v", n, err)
			}
		},
		"after the placeholders": func(t *testing.T, s *Store) {
			if _, err := s.migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
			err := s.db.Update(func(txn *badger.Txn) error {
				if err := txn.Set(key(pKey), nil); err != nil {
					return err
				}
				return txn.Set(key(pKeyID), nil)
			})
			if err != nil {
				t.Fatal(err)
			}
		},
		"before the marker": func(t *testing.T, s *Store) {
			if err := s.upgrade(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(layoutKey) }); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			data, lk := layout1Copy(t)
			db, err := badger.Open(badgerOptions(data, slog.Default()))
			if err != nil {
				t.Fatal(err)
			}
			ids, err := newIDKeys(lk)
			if err != nil {
				t.Fatal(err)
			}
			crash(t, &Store{db: db, log: slog.Default(), ids: ids})
			ids.Zero()
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}

			s, err := Open(data, Options{IDKey: lk}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			for _, subj := range layout1IDs[:2] {
				sk, err := s.SubjectKey(ctx, subj)
				if err != nil {
					t.Fatalf("%s after the resumed migration: %v", subj, err)
				}
				if got, _, err := s.SubjectKeyByID(ctx, sk.ID); err != nil || got != subj {
					t.Fatalf("%s by key id: %q, %v", subj, got, err)
				}
			}
			if _, err := s.SubjectKey(ctx, layout1IDs[2]); !errors.Is(err, vault.ErrNotFound) {
				t.Fatalf("the erased subject: %v", err)
			}
			if old, err := s.anyVersion(ctx, key(pKey), key(pKeyID)); err != nil || old {
				t.Fatalf("layout-1 entries left: %v, %v", old, err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if hits := idsIn(t, data); len(hits) != 0 {
				t.Fatalf("subject ids on disk: %v", hits)
			}
		})
	}
}

func layout1Copy(t *testing.T) (string, *aead.Key) {
	t.Helper()
	dir := CopyTree(t, filepath.Join("testdata", "layout-1"))
	lk, err := keyfile.LoadLedgerKey(filepath.Join(dir, "ledger.key"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lk.Zero)
	return filepath.Join(dir, "data"), lk
}

func idsIn(t *testing.T, dir string) []string { return FilesHolding(t, dir, layout1IDs...) }

// CopyTree copies src to a new temporary directory (for the external
// tests too: exported from a test file, it is not part of the package).
func CopyTree(t *testing.T, src string) string {
	t.Helper()
	return testfs.CopyTree(t, src)
}

// FilesHolding is a byte search: the files under dir that contain any of
// needles, as "file holds needle".
func FilesHolding(t *testing.T, dir string, needles ...string) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				hits = append(hits, filepath.Base(path)+" holds "+n)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// TestMigrationDropsMarkersOfErasedSubjects: a layout-1 directory whose
// subjects were all erased holds their ids only in deletion markers and
// older versions; the migration drops those too (DropPrefix alone would
// skip a prefix without a live key).
func TestMigrationDropsMarkersOfErasedSubjects(t *testing.T) {
	data := t.TempDir()
	db, err := badger.Open(badgerOptions(data, slog.Default()))
	if err != nil {
		t.Fatal(err)
	}
	const erased = "zz-erased-subject-7d1f"
	sk := vault.SubjectKey{ID: vault.KeyID{9}, Wrapped: []byte("wrapped")}
	enc, _ := encodeSubjectKey(sk, nil)
	for _, fn := range []func(txn *badger.Txn) error{
		func(txn *badger.Txn) error {
			if err := txn.Set(key(pKey, []byte(erased)), enc); err != nil {
				return err
			}
			return txn.Set(key(pKeyID, sk.ID[:]), []byte(erased))
		},
		func(txn *badger.Txn) error { // the layout-1 shred
			if err := txn.Delete(key(pKey, []byte(erased))); err != nil {
				return err
			}
			return txn.Delete(key(pKeyID, sk.ID[:]))
		},
	} {
		if err := db.Update(fn); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if hits := idsIn(t, data); len(hits) == 0 {
		t.Fatal("the layout-1 directory does not hold the id: the test checks nothing")
	}
	s, err := Open(data, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if hits := idsIn(t, data); len(hits) != 0 {
		t.Fatalf("after the migration: %v", hits)
	}
}

// TestLayout2Raised: a layout-2 directory opens without a rewrite and
// its marker is raised to the current layout, so that an older
// tokenvault refuses it; a marker from a newer layout is refused, and
// the records written before the raise still read.
func TestLayout2Raised(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, sk := openWithKey(t, dir, "alice")
	recs := filterRecords(sk.ID, "l2", 40)
	if err := s.PutRecords(ctx, "alice", sk.ID, recs); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	setMarker := func(ver byte) []byte {
		t.Helper()
		db, err := badger.Open(badgerOptions(dir, slog.Default()))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var m []byte
		if err := db.Update(func(txn *badger.Txn) error {
			if m, err = get(txn, layoutKey); err != nil {
				return err
			}
			if ver != 0 {
				m[0] = ver
				return txn.Set(layoutKey, m)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := setMarker(0); m[0] != layoutVersion || layoutVersion != 3 {
		t.Fatalf("a new directory has layout %d (const %d), want 3", m[0], layoutVersion)
	}

	setMarker(2)
	s, err := Open(dir, Options{}, nil)
	if err != nil {
		t.Fatalf("opening a layout-2 directory: %v", err)
	}
	if got, err := s.KeyRecords(ctx, sk.ID, "", 100); err != nil || len(got) != 40 {
		t.Fatalf("after the raise: %d records listed, %v", len(got), err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if m := setMarker(0); m[0] != 3 {
		t.Fatalf("marker after opening a layout-2 directory: %d, want 3", m[0])
	}

	setMarker(4)
	if s, err := Open(dir, Options{}, nil); err == nil {
		s.Close()
		t.Fatal("a layout-4 directory opened")
	} else if !strings.Contains(err.Error(), "newer tokenvault") {
		t.Fatalf("a layout-4 directory: %v", err)
	}
}
