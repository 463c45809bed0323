package badgerstore

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

// TestTamperedRecordMetadata: someone who can write the data directory
// edits a record's creation time, expiry or lookup key in place (the bytes
// badger holds, re-encoded as this package would). Records bind those
// (vault.RecordAADv2), so the edited record no longer opens: reveal,
// export and rectification all refuse it, and an extended expiry does not
// keep a token alive.
func TestTamperedRecordMetadata(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(filepath.Join(dir, "data"), Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	kr, _, err := agekeyring.OpenOrCreate(agekeyring.Config{Path: filepath.Join(dir, "keyring.age"), IdentityFile: filepath.Join(dir, "id.txt")}, true)
	if err != nil {
		t.Fatal(err)
	}

	ttl := time.Hour
	tests := []struct {
		name  string
		field vault.Field
		edit  func(r *vault.Record)
	}{
		{"expiry extended", vault.Field{Kind: format.Name, Value: "Ada", TTL: ttl}, func(r *vault.Record) { r.Expires = r.Expires.Add(365 * 24 * time.Hour) }},
		{"expiry removed", vault.Field{Kind: format.Name, Value: "Ada", TTL: ttl}, func(r *vault.Record) { r.Expires = time.Time{} }},
		{"expiry added", vault.Field{Kind: format.Name, Value: "Ada"}, func(r *vault.Record) { r.Expires = r.Created.Add(48 * time.Hour) }},
		{"created moved", vault.Field{Kind: format.Name, Value: "Ada"}, func(r *vault.Record) { r.Created = r.Created.Add(-time.Hour) }},
		{"created moved by 1µs", vault.Field{Kind: format.Name, Value: "Ada"}, func(r *vault.Record) { r.Created = r.Created.Add(time.Microsecond) }},
		{"lookup changed", vault.Field{Kind: format.Email, Value: "ada@example.org", Deterministic: true}, func(r *vault.Record) { r.Lookup = bytes.Repeat([]byte{1}, lookupSize) }},
		{"lookup removed", vault.Field{Kind: format.Email, Value: "ada@example.org", Deterministic: true}, func(r *vault.Record) { r.Lookup = nil }},
		{"lookup added", vault.Field{Kind: format.Email, Value: "ada@example.org"}, func(r *vault.Record) { r.Lookup = bytes.Repeat([]byte{2}, lookupSize) }},
		// The version byte is not authenticated, but calling a v2 record v1
		// makes it open with v1's associated data, which fails.
		{"relabelled AAD v1", vault.Field{Kind: format.Name, Value: "Ada", TTL: ttl}, func(r *vault.Record) { r.AADVersion = vault.RecordAADv1 }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A subject per case: a deterministic token of another case
			// must not be reused.
			subject := "subject-" + string(rune('a'+i))
			v, err := vault.New(ctx, s, kr, vault.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			toks, err := v.Tokenize(ctx, subject, []vault.Field{tt.field})
			if err != nil {
				t.Fatal(err)
			}
			tok := toks[0]
			if res, _ := v.Detokenize(ctx, toks, "test"); res[0].Err != nil {
				t.Fatalf("untouched record: %v", res[0].Err)
			}

			// The edit, straight in badger, through the store's generic
			// write (which keeps its record cache out of the way, as any
			// writer in the process must).
			h := key(pToken, tokenHash(tok))
			if err := s.update(ctx, func(txn *badger.Txn) error {
				b, err := get(txn, h)
				if err != nil {
					return err
				}
				r, group, err := decodeGrouped(b)
				if err != nil {
					return err
				}
				if r.AADVersion != vault.RecordAADv2 {
					t.Fatalf("new record has AAD version %d", r.AADVersion)
				}
				tt.edit(&r)
				enc, err := encodeRecord(r, group)
				if err != nil {
					return err
				}
				return txn.Set(h, enc)
			}); err != nil {
				t.Fatal(err)
			}

			res, err := v.Detokenize(ctx, toks, "test")
			if err != nil {
				t.Fatal(err)
			}
			if !errors.Is(res[0].Err, vault.ErrCorrupt) || res[0].Value != "" {
				t.Fatalf("edited record revealed: %+v, want vault.ErrCorrupt", res[0])
			}
			err = v.ExportSubject(ctx, subject, func(vault.ExportHeader, []vault.ExportedRecord) error { return nil })
			if !errors.Is(err, vault.ErrCorrupt) {
				t.Fatalf("export with an edited record: %v, want vault.ErrCorrupt", err)
			}
			// Rectifying would seal the edited metadata anew: refused.
			if _, err := v.Rectify(ctx, tok, tt.field.Value); !errors.Is(err, vault.ErrCorrupt) {
				t.Fatalf("rectify of an edited record: %v, want vault.ErrCorrupt", err)
			}
		})
	}
}

// TestMalformedExpiryKey: an expiry index key of the wrong size is
// reported as corruption by the purge (its first read already), not
// skipped and not taken for "nothing due".
func TestMalformedExpiryKey(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "data"), Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.update(ctx, func(txn *badger.Txn) error {
		return txn.Set(key(pExpiry, []byte("short")), nil)
	}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PurgeExpired(ctx, time.Now(), 10); !errors.Is(err, vault.ErrCorrupt) || n != 0 {
		t.Fatalf("PurgeExpired = %d, %v; want vault.ErrCorrupt", n, err)
	}
}
