package pgstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/internal/pgtest"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
	"github.com/tokenvault/tokenvault/vault/format"
	"github.com/tokenvault/tokenvault/vault/pgstore"
	"github.com/tokenvault/tokenvault/vault/storetest"
)

// badgerFrames is a badger store's snapshot (one subject, n records:
// tok-1 to tok-n) as a restore's Frames.
func badgerFrames(t *testing.T, key *aead.Key, n int) func(fn func([]byte) error) error {
	t.Helper()
	ctx := context.Background()
	s, err := badgerstore.Open(t.TempDir(), badgerstore.Options{IDKey: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sk := vault.SubjectKey{ID: vault.KeyID{7}, Wrapped: []byte("wrapped-key"), Created: time.Unix(1700000000, 0).UTC()}
	if _, err := s.CreateSubjectKey(ctx, "alice", sk); err != nil {
		t.Fatal(err)
	}
	var recs []vault.Record
	for i := range n {
		recs = append(recs, vault.Record{Token: fmt.Sprintf("tok-%d", i+1), KeyID: sk.ID, Kind: format.Generic, Created: sk.Created, Sealed: make([]byte, 40), AADVersion: vault.RecordAADv2})
	}
	if err := s.PutRecords(ctx, "alice", sk.ID, recs); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := s.Snapshot(&b, 0); err != nil {
		t.Fatal(err)
	}
	return framesOf(b.Bytes())
}

// framesOf is a store snapshot (length-prefixed frames) as a restore's
// Frames.
func framesOf(raw []byte) func(fn func([]byte) error) error {
	return func(fn func([]byte) error) error {
		for r := raw; len(r) > 0; {
			n := binary.LittleEndian.Uint64(r)
			if err := fn(r[8 : 8+n]); err != nil {
				return err
			}
			r = r[8+n:]
		}
		return nil
	}
}

func migrated(t *testing.T) *pgtest.DB {
	t.Helper()
	db := pgtest.New(t)
	if _, _, err := pgstore.Migrate(context.Background(), db.DSN); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestFailedRestoreLeavesNothing: a copy into the database that fails
// half way (a record there clashes) leaves an empty database behind, and
// while a restore is unfinished no server opens the database.
func TestFailedRestoreLeavesNothing(t *testing.T) {
	ctx := context.Background()
	key, _ := aead.NewKey()
	frames := badgerFrames(t, key, 2)
	db := migrated(t)

	l, err := pgstore.NewLoader(db.DSN, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.UseLedgerKey(key); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Load(frames, func(vault.KeyID) bool { return false }); err != nil {
		t.Fatal(err)
	}
	// Someone wrote tok-2 into the database meanwhile.
	h := sha256.Sum256([]byte("tok-2"))
	db.Exec(t, `INSERT INTO tokenvault_records (token_hash, token, key_id, kind, created, sealed, aad_version) VALUES ($1, 'tok-2', '\x00', 1, now(), '\x00', 2)`, h[:])
	if err := l.Finish(ctx, nil); !errors.Is(err, vault.ErrCollision) {
		t.Fatalf("Finish onto a clashing record: %v", err)
	}
	// Until Close, the database is marked: Open refuses it.
	if _, err := pgstore.Open(ctx, db.DSN, pgstore.Options{IDKey: key}); !errors.Is(err, pgstore.ErrRestoring) {
		t.Fatalf("Open during a failed restore: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := pgstore.Open(ctx, db.DSN, pgstore.Options{IDKey: key})
	if err != nil {
		t.Fatalf("Open after the failed restore was closed: %v", err)
	}
	defer s.Close()
	if has, err := s.HasSubjectKeys(ctx); err != nil || has {
		t.Fatalf("keys after a failed restore: %v, %v", has, err)
	}
	if n, err := s.CountTokens(ctx); err != nil || n != 0 {
		t.Fatalf("records after a failed restore: %d, %v", n, err)
	}

	// The same restore into a clean database works, and a database with
	// data is refused up front.
	l, err = pgstore.NewLoader(db.DSN, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.UseLedgerKey(key)
	if _, _, err := l.Load(frames, func(vault.KeyID) bool { return false }); err != nil {
		t.Fatal(err)
	}
	if err := l.Finish(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CountTokens(ctx); err != nil || n != 2 {
		t.Fatalf("records after the restore: %d, %v", n, err)
	}
	if subj, _, err := s.SubjectKeyByID(ctx, vault.KeyID{7}); err != nil || subj != "alice" {
		t.Fatalf("restored key: %q, %v", subj, err)
	}
	if _, err := pgstore.NewLoader(db.DSN, nil); err == nil {
		t.Fatal("a restore into a database with data was started")
	}
}

// restored is a fresh migrated database with frames restored into it
// under the ledger and id key, opened. A restore that works logs no
// warning or error: the test fails on one.
func restored(t *testing.T, key *aead.Key, frames func(fn func([]byte) error) error) *pgstore.Store {
	t.Helper()
	ctx := context.Background()
	target := migrated(t)
	var logged strings.Builder
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logged}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		if logged.Len() > 0 {
			t.Errorf("the restore logged:\n%s", logged.String())
		}
	}()
	l, err := pgstore.NewLoader(target.DSN, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.UseLedgerKey(key); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Load(frames, func(vault.KeyID) bool { return false }); err != nil {
		t.Fatal(err)
	}
	if err := l.Finish(ctx, nil); err != nil {
		t.Fatal(err)
	}
	s, err := pgstore.Open(ctx, target.DSN, pgstore.Options{IDKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// lockedWriter serializes writes to w: badger logs from its own
// goroutines.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestRestoreManyRecords: the copy of a subject's records pages by the
// source store's cursor. 2,500 records under one key are three pages of
// copyBatch, in badger's shared index entries (runs of up to 31): every
// one arrives, once.
func TestRestoreManyRecords(t *testing.T) {
	key, _ := aead.NewKey()
	const n = 2500
	s := restored(t, key, badgerFrames(t, key, n))
	if c, err := s.CountTokens(context.Background()); err != nil || c != n {
		t.Fatalf("records after the restore: %d, %v; want %d", c, err, n)
	}
	seen := storetest.AllKeyRecords(t, s, vault.KeyID{7}, 700)
	for i := range n {
		if tok := fmt.Sprintf("tok-%d", i+1); seen[tok].Token != tok {
			t.Fatalf("%s not restored (%d of %d are)", tok, len(seen), n)
		}
	}
}
