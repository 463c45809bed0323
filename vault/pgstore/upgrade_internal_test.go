package pgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/internal/pgtest"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

// TestUpgrade: a database at each older schema version, with data
// written by that version's code (the statements on its tables are
// unchanged), is refused by Open with the "run tokenvault store migrate"
// message, and Migrate takes it to the current version keeping
// everything: keys, records, the ledger and a pending purge (version 1),
// consent and erasure events with cursors (version 2); consent, erasure
// events and holds then work on it.
func TestUpgrade(t *testing.T) {
	for from := 1; from < SchemaVersion(); from++ {
		t.Run(fmt.Sprintf("from=%d", from), func(t *testing.T) { testUpgrade(t, from) })
	}
}

func testUpgrade(t *testing.T, version int) {
	ctx := context.Background()
	db := pgtest.New(t)
	if from, to, err := migrateTo(ctx, db.DSN, version); err != nil || from != 0 || to != version {
		t.Fatalf("migrating to version %d: %d, %d, %v", version, from, to, err)
	}
	key, err := aead.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	defer key.Zero()

	// Old data, through a store handle on the old database (Open would
	// refuse it: built by hand).
	pool, err := openPool(ctx, db.DSN, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := newIDKeys(key)
	if err != nil {
		t.Fatal(err)
	}
	v1 := &Store{pool: dbPool{pool}, q: dbPool{pool}, log: slog.Default(), ids: ids}
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
	// Version 2: a consent history, an erasure event and a cursor.
	carol := vault.SubjectKey{ID: vault.KeyID{3}, Wrapped: []byte("wrapped-carol"), Created: created}
	old := vault.ConsentEntry{Tag: bytes.Repeat([]byte{5}, consentTagSize), Sealed: bytes.Repeat([]byte{6}, 64)}
	if version >= 2 {
		if _, err := v1.CreateSubjectKey(ctx, "carol", carol); err != nil {
			t.Fatal(err)
		}
		if err := v1.AppendConsent(ctx, "alice", alice.ID, old); err != nil {
			t.Fatal(err)
		}
		if err := v1.RegisterConsumer(ctx, "crm"); err != nil {
			t.Fatal(err)
		}
		if _, err := v1.ShredErasure(ctx, "carol", vault.LedgerEntry{}, vault.ErasureEvent{ErasedAt: created}); err != nil {
			t.Fatal(err)
		}
	}
	v1.Close()

	_, err = Open(ctx, db.DSN, Options{IDKey: key})
	var se *SchemaError
	if !errors.As(err, &se) || se.Database != version || se.Binary != SchemaVersion() || !strings.Contains(err.Error(), "run `tokenvault store migrate --config FILE`") {
		t.Fatalf("Open of a version-%d database: %v", version, err)
	}
	if from, to, err := Migrate(ctx, db.DSN); err != nil || from != version || to != SchemaVersion() {
		t.Fatalf("Migrate of a version-%d database = %d, %d, %v", version, from, to, err)
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
	if p, err := s.PendingPurges(ctx); err != nil || len(p) != version { // bob, and carol from version 2
		t.Fatalf("pending purges after the upgrade: %v, %v", p, err)
	}
	if _, err := s.PurgeKey(ctx, bob.ID); err != nil {
		t.Fatalf("purging bob's key (erased before the upgrade): %v", err)
	}
	firstSeq := uint64(1)
	if version >= 2 {
		if h, err := s.ConsentHistory(ctx, alice.ID, 0, 10); err != nil || len(h) != 1 || !bytes.Equal(h[0].Sealed, old.Sealed) {
			t.Fatalf("consent after the upgrade: %d entries, %v", len(h), err)
		}
		if evs, err := s.ErasureEvents(ctx, 0, 10); err != nil || len(evs) != 1 || evs[0].Subject != "carol" {
			t.Fatalf("erasure events after the upgrade: %+v, %v", evs, err)
		}
		firstSeq = 2
	}

	// The newer capabilities on the upgraded database.
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
	held := vault.SubjectKey{ID: vault.KeyID{4}, Wrapped: []byte("wrapped-held"), Created: created}
	if _, err := s.CreateSubjectKey(ctx, vault.HoldSubject("alice", "tax"), held); err != nil {
		t.Fatal(err)
	}
	hold := vault.Hold{ID: held.ID, Class: "tax", ErasedAt: created, Until: created.Add(time.Hour)}
	ev, err := s.ShredErasure(ctx, "alice", vault.LedgerEntry{}, vault.ErasureEvent{ErasedAt: time.Now(), Holds: []vault.Hold{hold}})
	if err != nil || ev.Seq != firstSeq || ev.KeyID != alice.ID {
		t.Fatalf("erasure event after the upgrade: %+v, %v (want number %d)", ev, err, firstSeq)
	}
	if got, err := s.HoldOf(ctx, held.ID); err != nil || !got.Until.Equal(hold.Until) {
		t.Fatalf("hold after the upgrade: %+v, %v", got, err)
	}
	if c, err := s.Consumers(ctx); err != nil || c["crm"] != 0 {
		t.Fatalf("consumers: %v, %v", c, err)
	}
}
