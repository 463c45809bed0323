package pgstore_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/internal/backup"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/pgstore"
)

var _ backup.HoldLoader = (*pgstore.Loader)(nil)

// TestBackupKeepsConsentEventsAndHolds: a backup of the PostgreSQL store
// restored into another database keeps the consent history, the pending
// erasure events (subject id, receipt, numbers) and the consumers'
// cursors, hold schedules and the receipts of hold shreds, and the next
// erasure continues the numbering.
func TestBackupKeepsConsentEventsAndHolds(t *testing.T) {
	ctx := context.Background()
	key, err := aead.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	defer key.Zero()
	src, err := pgstore.Open(ctx, migrated(t).DSN, pgstore.Options{IDKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	keys := map[string]vault.SubjectKey{}
	for i, subj := range []string{"alice", "bob", "carol"} {
		sk := vault.SubjectKey{ID: vault.KeyID{byte(i + 1), 0xb7}, Wrapped: []byte("wrapped-" + subj), Created: time.Unix(1700000000, 0).UTC()}
		if _, err := src.CreateSubjectKey(ctx, subj, sk); err != nil {
			t.Fatal(err)
		}
		keys[subj] = sk
	}
	consent := []vault.ConsentEntry{
		{Tag: bytes.Repeat([]byte{1}, 32), Sealed: bytes.Repeat([]byte{'g'}, 40)},
		{Tag: bytes.Repeat([]byte{1}, 32), Sealed: bytes.Repeat([]byte{'w'}, 40)},
	}
	for _, e := range consent {
		if err := src.AppendConsent(ctx, "alice", keys["alice"].ID, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := src.RegisterConsumer(ctx, "crm"); err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1700000100, 123456789).UTC()
	for _, subj := range []string{"bob", "carol"} {
		if _, err := src.ShredErasure(ctx, subj, vault.LedgerEntry{}, vault.ErasureEvent{ErasedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	if err := src.AttachReceipt(ctx, 1, []byte("receipt of bob")); err != nil {
		t.Fatal(err)
	}
	if err := src.AckErasures(ctx, "crm", 1); err != nil {
		t.Fatal(err)
	}
	if err := src.RegisterConsumer(ctx, "billing"); err != nil {
		t.Fatal(err)
	}
	// dave's erasure schedules a hold (event 3); erin's hold has been
	// shredded, leaving its receipt.
	held := map[string]vault.SubjectKey{}
	for i, subj := range []string{"dave", "erin"} {
		sk := vault.SubjectKey{ID: vault.KeyID{byte(i + 1), 0x4d}, Wrapped: []byte("wrapped-held"), Created: time.Unix(1700000000, 0).UTC()}
		if _, err := src.CreateSubjectKey(ctx, vault.HoldSubject(subj, "tax"), sk); err != nil {
			t.Fatal(err)
		}
		held[subj] = sk
	}
	daveHold := vault.Hold{ID: held["dave"].ID, Class: "tax", ErasedAt: at, Until: at.Add(24 * time.Hour)}
	if _, err := src.ShredErasure(ctx, "dave", vault.LedgerEntry{}, vault.ErasureEvent{ErasedAt: at, Holds: []vault.Hold{daveHold}}); err != nil {
		t.Fatal(err)
	}
	erinHold := vault.Hold{ID: held["erin"].ID, Class: "tax", ErasedAt: at, Until: at}
	if _, err := src.ShredSubjectHolding(ctx, "erin", vault.LedgerEntry{}, []vault.Hold{erinHold}); err != nil {
		t.Fatal(err)
	}
	if err := src.ShredHold(ctx, erinHold.ID, vault.LedgerEntry{}, "erin", []byte("hold receipt of erin")); err != nil {
		t.Fatal(err)
	}

	var b bytes.Buffer
	if _, err := src.Snapshot(&b, 0); err != nil {
		t.Fatal(err)
	}
	dst := restored(t, key, framesOf(b.Bytes()))

	h, err := dst.ConsentHistory(ctx, keys["alice"].ID, 0, 10)
	if err != nil || len(h) != 2 || !bytes.Equal(h[0].Sealed, consent[0].Sealed) || !bytes.Equal(h[1].Sealed, consent[1].Sealed) {
		t.Fatalf("restored consent history: %d entries, %v", len(h), err)
	}
	if h, err := dst.HoldOf(ctx, daveHold.ID); err != nil || !h.Until.Equal(daveHold.Until) || h.Class != "tax" {
		t.Fatalf("restored hold: %+v, %v", h, err)
	}
	if rs, err := dst.HoldReceipts(ctx, "erin"); err != nil || len(rs) != 1 || string(rs[0]) != "hold receipt of erin" {
		t.Fatalf("restored hold receipts: %q, %v", rs, err)
	}
	evs, err := dst.ErasureEvents(ctx, 0, 10)
	if err != nil || len(evs) != 3 {
		t.Fatalf("restored events: %+v, %v", evs, err)
	}
	for i, subj := range []string{"bob", "carol"} {
		if ev := evs[i]; ev.Seq != uint64(i+1) || ev.Subject != subj || ev.KeyID != keys[subj].ID || !ev.ErasedAt.Equal(at) {
			t.Fatalf("restored event %d: %+v", i, ev)
		}
	}
	if string(evs[0].Receipt) != "receipt of bob" || evs[1].Receipt != nil {
		t.Fatalf("restored receipts: %q, %q", evs[0].Receipt, evs[1].Receipt)
	}
	if c, err := dst.Consumers(ctx); err != nil || len(c) != 2 || c["crm"] != 1 || c["billing"] != 0 {
		t.Fatalf("restored cursors: %v, %v", c, err)
	}
	ev, err := dst.ShredErasure(ctx, "alice", vault.LedgerEntry{}, vault.ErasureEvent{ErasedAt: time.Now()})
	if err != nil || ev.Seq != 4 {
		t.Fatalf("the first erasure after the restore: %+v, %v (want number 4)", ev, err)
	}
}
