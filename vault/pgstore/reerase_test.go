package pgstore_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/internal/backup"
	"github.com/tokenvault/tokenvault/internal/pgtest"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
	"github.com/tokenvault/tokenvault/vault/pgstore"
)

// TestReEraseSchedulesHolds: a pg_dump taken before an erasure holds the
// subject's tax-hold key without its schedule. Restored and re-erased
// with the live ledger and the holds configuration, the subject's
// ordinary data is erased, its held data is revealed only for the hold's
// purpose (other purposes: ErrHeld) and is shredded when the hold ends.
// Without the holds configuration ReErase refuses and changes nothing.
func TestReEraseSchedulesHolds(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	holds := map[string]vault.HoldClass{"tax": {Years: 7, Purposes: []string{"legal"}}}
	lk, err := aead.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Zero()
	kr, _, err := agekeyring.OpenOrCreate(agekeyring.Config{Path: filepath.Join(dir, "k.age"), IdentityFile: filepath.Join(dir, "id")}, true)
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(nil)
	now := time.Now().UTC()
	openVault := func(s vault.Store) *vault.Vault {
		t.Helper()
		// Each vault zeroes its ledger key on Close: give it a copy.
		k, err := aead.KeyFromBytes(lk.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		v, err := vault.New(ctx, s, kr, vault.Options{Holds: holds, Now: func() time.Time { return now },
			Rights: vault.RightsOptions{LedgerKey: k, ReceiptKey: priv, BackupHorizon: 24 * time.Hour}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(v.Close)
		return v
	}
	openStore := func(db *pgtest.DB) *pgstore.Store {
		t.Helper()
		s, err := pgstore.Open(ctx, db.DSN, pgstore.Options{IDKey: lk})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}

	live := migrated(t)
	ls := openStore(live)
	v := openVault(ls)
	plain, err := v.Tokenize(ctx, "alice", []vault.Field{{Kind: format.Email, Value: "ada@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	held, err := v.Tokenize(ctx, "alice", []vault.Field{{Kind: format.Name, Value: "Ada Lovelace", Hold: "tax"}})
	if err != nil {
		t.Fatal(err)
	}
	kept, err := v.Tokenize(ctx, "bob", []vault.Field{{Kind: format.Email, Value: "bob@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	dump := filepath.Join(dir, "before.dump")
	if err := pgtest.PgDump(live.DSN, dump); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Hour)
	if _, _, err := v.EraseSubject(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	entries, err := ls.LedgerEntries(ctx, nil, 100)
	if err != nil || len(entries) != 1 {
		t.Fatalf("live ledger: %d entries, %v", len(entries), err)
	}
	kid, err := vault.LedgerKeyID(lk)
	if err != nil {
		t.Fatal(err)
	}
	ledger := backup.Ledger{KeyID: kid, Entries: entries}
	if ledger.MAC, err = ledger.Sum(lk); err != nil {
		t.Fatal(err)
	}

	restored := pgtest.New(t)
	if err := pgtest.PgRestore(dump, restored.DSN); err != nil {
		t.Fatal(err)
	}
	rs := openStore(restored)
	if _, err := backup.ReErase(ctx, rs, lk, ledger, "ledger", nil); !errors.Is(err, backup.ErrHoldClassNotConfigured) {
		t.Fatalf("reerase without the holds configuration = %v, want ErrHoldClassNotConfigured", err)
	}
	if _, err := rs.SubjectKey(ctx, "alice"); err != nil {
		t.Fatalf("the refused reerase changed the store: %v", err)
	}
	res, err := backup.ReErase(ctx, rs, lk, ledger, "ledger", holds)
	if err != nil {
		t.Fatal(err)
	}
	if res.ReErased != 1 || res.Held != 1 || res.Purged != 1 || res.Ledger != 1 {
		t.Fatalf("reerase = %+v, want alice re-erased (1 record purged) and her tax hold scheduled", res)
	}
	sk, err := rs.SubjectKey(ctx, vault.HoldSubject("alice", "tax"))
	if err != nil {
		t.Fatal(err)
	}
	if h, err := rs.HoldOf(ctx, sk.ID); err != nil || !h.ErasedAt.Equal(entries[0].ErasedAt) || !h.Until.Equal(holds["tax"].Until(entries[0].ErasedAt)) {
		t.Fatalf("the hold's schedule = %+v, %v; want from the ledger's erasure time", h, err)
	}

	rv := openVault(rs)
	reveal := func(tokens []string, purpose string) vault.Revealed {
		t.Helper()
		got, err := rv.Detokenize(ctx, tokens, purpose)
		if err != nil {
			t.Fatal(err)
		}
		return got[0]
	}
	if got := reveal(plain, "support"); got.Err == nil {
		t.Fatalf("alice's ordinary data came back after the reerase: %v", got.Err)
	}
	if got := reveal(kept, "support"); got.Err != nil || got.Value != "bob@example.com" {
		t.Fatalf("bob's data after the reerase: %+v", got)
	}
	if got := reveal(held, "legal"); got.Err != nil || got.Value != "Ada Lovelace" {
		t.Fatalf("held data for its hold's purpose: %+v", got)
	}
	if got := reveal(held, "support"); !errors.Is(got.Err, vault.ErrHeld) {
		t.Fatalf("held data for another purpose: %v, want ErrHeld", got.Err)
	}
	// Run again: nothing left to do, the schedule stays.
	if res, err := backup.ReErase(ctx, rs, lk, ledger, "ledger", holds); err != nil || res.ReErased != 0 || res.Held != 0 {
		t.Fatalf("a second reerase = %+v, %v; want nothing to do", res, err)
	}
	// Every hold is scheduled now: the classes are not needed, and a run
	// without them is not refused.
	if res, err := backup.ReErase(ctx, rs, lk, ledger, "ledger", nil); err != nil || res.ReErased != 0 || res.Held != 0 {
		t.Fatalf("reerase of a copy whose holds are all scheduled, without the holds config = %+v, %v; want nothing to do", res, err)
	}

	now = holds["tax"].Until(entries[0].ErasedAt)
	if got := reveal(held, "legal"); !errors.Is(got.Err, vault.ErrErased) {
		t.Fatalf("held data after the hold ended: %+v", got)
	}
	if n, err := rv.ShredDueHolds(ctx); err != nil || n != 1 {
		t.Fatalf("ShredDueHolds = %d, %v; want the re-erased subject's hold shredded", n, err)
	}
	if _, err := rs.Record(ctx, held[0]); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("the hold's shred left its record: %v", err)
	}
}

// TestReEraseRefusesMismatchedHolds: a copy in which an erased subject's
// hold key is unscheduled but the subject has a key made after the
// erasure does not match the ledger; ReErase refuses rather than shred
// the newer key with the holds, and changes nothing.
func TestReEraseRefusesMismatchedHolds(t *testing.T) {
	ctx := context.Background()
	lk, err := aead.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Zero()
	s, err := pgstore.Open(ctx, migrated(t).DSN, pgstore.Options{IDKey: lk})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	erased := time.Unix(1700000000, 0).UTC()
	for i, k := range []struct {
		subject string
		created time.Time
	}{{vault.HoldSubject("carol", "tax"), erased.Add(-time.Hour)}, {"carol", erased.Add(time.Hour)}} {
		if _, err := s.CreateSubjectKey(ctx, k.subject, vault.SubjectKey{ID: vault.KeyID{byte(i + 1), 0x3e}, Wrapped: []byte("w"), Created: k.created}); err != nil {
			t.Fatal(err)
		}
	}
	h, err := vault.LedgerHash(lk, "carol")
	if err != nil {
		t.Fatal(err)
	}
	kid, err := vault.LedgerKeyID(lk)
	if err != nil {
		t.Fatal(err)
	}
	ledger := backup.Ledger{KeyID: kid, Entries: []vault.LedgerEntry{{Hash: h, ErasedAt: erased}}}
	if ledger.MAC, err = ledger.Sum(lk); err != nil {
		t.Fatal(err)
	}
	holds := map[string]vault.HoldClass{"tax": {Years: 7, Purposes: []string{"legal"}}}
	if _, err := backup.ReErase(ctx, s, lk, ledger, "ledger", holds); err == nil {
		t.Fatal("reerase of a copy that does not match the ledger succeeded")
	}
	if _, err := s.SubjectKey(ctx, "carol"); err != nil {
		t.Fatalf("the refused reerase shredded the newer key: %v", err)
	}
	if entries, err := s.LedgerEntries(ctx, nil, 10); err != nil || len(entries) != 0 {
		t.Fatalf("the refused reerase added %d ledger entries (%v)", len(entries), err)
	}
}
