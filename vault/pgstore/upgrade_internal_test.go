package pgstore

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/internal/pgtest"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

// TestUpgradeFromVersion1: a database at schema version 1, with data
// written by the version-1 code (the statements on version-1 tables are
// unchanged), is refused by Open with the "run tokenvault store migrate"
// message, and Migrate takes it to version 2 keeping everything: keys,
// records, the ledger and a pending purge; consent and erasure events
// then work on it, numbered from 1.
func TestUpgradeFromVersion1(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	if from, to, err := migrateTo(ctx, db.DSN, 1); err != nil || from != 0 || to != 1 {
		t.Fatalf("migrating to version 1: %d, %d, %v", from, to, err)
	}
	key, err := aead.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	defer key.Zero()

	// Version-1 data, through a store handle on the version-1 database
	// (Open would refuse it: built by hand).
	pool, err := openPool(ctx, db.DSN, 2)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := newIDKeys(key)
	if err != nil {
		t.Fatal(err)
	}
	v1 := &Store{pool: pool, q: pool, log: slog.Default(), ids: ids}
	if err := v1.checkIDKey(ctx); err != nil {
		t.Fatal(err)
	}
	created := time.Unix(1700000000, 0).UTC()
	alice := vault.SubjectKey{ID: vault.KeyID{1}, Wrapped: []byte("wrapped-alice"), Created: created}
	bob := vault.SubjectKey{ID: vault.KeyID{2}, Wrapped: []byte("wrapped-bob"), Created: created}
	for subj, sk := range map[string]vault.SubjectKey{"alice": alice, "bob": bob} {
		if _, err := v1.CreateSubjectKey(ctx, subj, sk); err != nil {
			t.Fatal(err)
		}
	}
	rec := vault.Record{Token: "tok-v1", KeyID: alice.ID, Kind: format.Generic, Created: created, Sealed: make([]byte, 40), AADVersion: vault.RecordAADv2}
	if err := v1.PutRecords(ctx, "alice", alice.ID, []vault.Record{rec}); err != nil {
		t.Fatal(err)
	}
	ledgerHash := bytes.Repeat([]byte{9}, ledgerHashSize)
	if _, err := v1.ShredSubject(ctx, "bob", vault.LedgerEntry{Hash: ledgerHash, ErasedAt: created}); err != nil {
		t.Fatal(err)
	}
	v1.Close()

	_, err = Open(ctx, db.DSN, Options{IDKey: key})
	var se *SchemaError
	if !errors.As(err, &se) || se.Database != 1 || se.Binary != SchemaVersion() || !strings.Contains(err.Error(), "run `tokenvault store migrate --config FILE`") {
		t.Fatalf("Open of a version-1 database: %v", err)
	}
	if from, to, err := Migrate(ctx, db.DSN); err != nil || from != 1 || to != SchemaVersion() {
		t.Fatalf("Migrate of a version-1 database = %d, %d, %v", from, to, err)
	}
	s, err := Open(ctx, db.DSN, Options{IDKey: key})
	if err != nil {
		t.Fatalf("Open after the upgrade: %v", err)
	}
	defer s.Close()

	if subj, sk, err := s.SubjectKeyByID(ctx, alice.ID); err != nil || subj != "alice" || !bytes.Equal(sk.Wrapped, alice.Wrapped) {
		t.Fatalf("alice's key after the upgrade: %q, %v", subj, err)
	}
	if r, err := s.Record(ctx, "tok-v1"); err != nil || r.KeyID != alice.ID {
		t.Fatalf("record after the upgrade: %+v, %v", r, err)
	}
	if l, err := s.LedgerEntries(ctx, nil, 10); err != nil || len(l) != 1 || !bytes.Equal(l[0].Hash, ledgerHash) {
		t.Fatalf("ledger after the upgrade: %v, %v", l, err)
	}
	if p, err := s.PendingPurges(ctx); err != nil || len(p) != 1 || p[0] != bob.ID {
		t.Fatalf("pending purges after the upgrade: %v, %v", p, err)
	}
	if _, err := s.PurgeKey(ctx, bob.ID); err != nil {
		t.Fatalf("purging bob's key (erased before the upgrade): %v", err)
	}

	// The version-2 capabilities on the upgraded database.
	e := vault.ConsentEntry{Tag: bytes.Repeat([]byte{3}, consentTagSize), Sealed: bytes.Repeat([]byte{4}, 64)}
	if err := s.AppendConsent(ctx, "alice", alice.ID, e); err != nil {
		t.Fatal(err)
	}
	if got, err := s.LatestConsent(ctx, alice.ID, e.Tag); err != nil || !bytes.Equal(got.Sealed, e.Sealed) {
		t.Fatalf("consent after the upgrade: %v", err)
	}
	if err := s.RegisterConsumer(ctx, "crm"); err != nil {
		t.Fatal(err)
	}
	ev, err := s.ShredErasure(ctx, "alice", vault.LedgerEntry{}, vault.ErasureEvent{ErasedAt: time.Now()})
	if err != nil || ev.Seq != 1 || ev.KeyID != alice.ID {
		t.Fatalf("first erasure event after the upgrade: %+v, %v", ev, err)
	}
	if c, err := s.Consumers(ctx); err != nil || c["crm"] != 0 {
		t.Fatalf("consumers: %v, %v", c, err)
	}
}
