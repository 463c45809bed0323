package vault_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/crypto/kek"
	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
	"github.com/tokenvault/tokenvault/vault/format"
	"github.com/tokenvault/tokenvault/vault/receipt"
)

var testHolds = map[string]vault.HoldClass{"tax": {Years: 7, Purposes: []string{"legal"}}}

type holdsEnv struct {
	store *badgerstore.Store
	kr    agekeyring.Provider
	now   time.Time
	opts  vault.Options
}

func newHoldsEnv(t *testing.T) *holdsEnv {
	dir := t.TempDir()
	store, err := badgerstore.Open(filepath.Join(dir, "data"), badgerstore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	kr, _, err := agekeyring.OpenOrCreate(agekeyring.Config{Path: filepath.Join(dir, "k.age"), IdentityFile: filepath.Join(dir, "id")}, true)
	if err != nil {
		t.Fatal(err)
	}
	lk, err := aead.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(nil)
	e := &holdsEnv{store: store, kr: kr, now: time.Now().UTC()}
	e.opts = vault.Options{Holds: testHolds, Now: func() time.Time { return e.now },
		Rights: vault.RightsOptions{LedgerKey: lk, ReceiptKey: priv, BackupHorizon: 60 * 24 * time.Hour}}
	return e
}

// open is a vault on the env's store: a new one is a restart (cold cache,
// and New resumes interrupted purges).
func (e *holdsEnv) open(t *testing.T) *vault.Vault {
	t.Helper()
	opts := e.opts
	// Each vault zeroes its ledger key on Close: give it a copy.
	lk, err := aead.KeyFromBytes(e.opts.Rights.LedgerKey.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	opts.Rights.LedgerKey = lk
	v, err := vault.New(context.Background(), e.store, e.kr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

// TestHoldRotationEpoch: the rotation-epoch guarantee covers hold keys:
// rewrapping carries them to the new KEK version (held data stays
// revealable), and retiring the old version kills a backup's copy.
func TestHoldRotationEpoch(t *testing.T) {
	ctx := context.Background()
	e := newHoldsEnv(t)
	v := e.open(t)
	toks, err := v.Tokenize(ctx, "alice", []vault.Field{{Kind: format.Name, Value: "Ada Lovelace", Hold: "tax"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.EraseSubject(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	backup, err := e.store.SubjectKey(ctx, vault.HoldSubject("alice", "tax"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.RotateKEK(ctx); err != nil {
		t.Fatal(err)
	}
	if p, err := v.RewrapKeys(ctx, nil); err != nil || p.Rewrapped != 1 {
		t.Fatalf("rewrap = %+v, %v; want the hold key rewrapped", p, err)
	}
	e.now = e.now.Add(31 * 24 * time.Hour)
	if res, err := v.RetireKEK(ctx, 30*24*time.Hour); err != nil || len(res.Retired) != 1 {
		t.Fatalf("retire = %+v, %v", res, err)
	}
	if _, err := e.kr.Unwrap(ctx, backup.Wrapped, vault.KeyBinding(backup.ID, vault.HoldSubject("alice", "tax"))); !errors.Is(err, kek.ErrInvalidWrapped) {
		t.Fatalf("a backup's copy of the hold key still unwraps after retirement: %v", err)
	}
	got, err := e.open(t).Detokenize(ctx, toks, "legal")
	if err != nil || got[0].Err != nil || got[0].Value != "Ada Lovelace" {
		t.Fatalf("held data after the rotation: %+v, %v", got, err)
	}
}

// TestHoldShredResumes: a shred interrupted at either side of its commit
// completes: before it the schedule stays and the next run shreds; after
// it the purge is pending and the next start finishes it.
func TestHoldShredResumes(t *testing.T) {
	ctx := context.Background()
	e := newHoldsEnv(t)
	v := e.open(t)
	var toks []string
	for _, s := range []string{"before", "after"} {
		tk, err := v.Tokenize(ctx, s, []vault.Field{{Kind: format.Name, Value: "Ada Lovelace", Hold: "tax"}})
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tk[0])
		if _, _, err := v.EraseSubject(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	// Erasing again: nothing to erase, and the message does not claim
	// that nothing is kept (the hold keeps the name).
	if _, _, err := v.EraseSubject(ctx, "before"); !errors.Is(err, vault.ErrNotFound) || !strings.Contains(err.Error(), "what a hold keeps stays") {
		t.Fatalf("a second erase = %v", err)
	}
	if got, err := v.Detokenize(ctx, toks[:1], "legal"); err != nil || got[0].Err != nil {
		t.Fatalf("held data after a second erase: %+v, %v", got, err)
	}
	e.now = e.now.AddDate(7, 0, 1)
	// "after": the shred committed, then the process died before the purge.
	sk, err := e.store.SubjectKey(ctx, vault.HoldSubject("after", "tax"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.ShredHold(ctx, sk.ID, vault.LedgerEntry{}, "after", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Record(ctx, toks[1]); err != nil {
		t.Fatalf("control: the record is there before the purge: %v", err)
	}
	// "before": the process died before the shred. A restart:
	v = e.open(t)
	if _, err := e.store.Record(ctx, toks[1]); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("the start did not finish the interrupted purge: %v", err)
	}
	got, err := v.Detokenize(ctx, toks[:1], "legal")
	if err != nil || !errors.Is(got[0].Err, vault.ErrErased) {
		t.Fatalf("held data revealed after its hold ended: %+v, %v", got, err)
	}
	if _, err := v.Rectify(ctx, toks[0], "Ada King"); !errors.Is(err, vault.ErrErased) {
		t.Fatalf("held data rectified after its hold ended: %v", err)
	}
	n, err := v.ShredDueHolds(ctx)
	if err != nil || n != 1 {
		t.Fatalf("ShredDueHolds = %d, %v", n, err)
	}
	if _, err := e.store.Record(ctx, toks[0]); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("the shred left the record: %v", err)
	}
	rs, files, err := v.HoldReceipts(ctx, "before")
	if err != nil || len(rs) != 1 || rs[0].Records != 1 || !rs[0].BackupsUndecryptableBy.Equal(rs[0].ErasedAt.Add(60*24*time.Hour)) {
		t.Fatalf("hold receipts = %+v, %v", rs, err)
	}
	parsed, err := receipt.Parse(files[0])
	if err != nil || parsed.Verify(v.ReceiptPublicKey()) != nil || parsed.Subject != "before" {
		t.Fatalf("hold receipt file: %+v, %v", parsed, err)
	}
	if n, err := v.ShredDueHolds(ctx); err != nil || n != 0 {
		t.Fatalf("a second run = %d, %v; want nothing left", n, err)
	}
}

// TestRestrictCoversHolds: restricting a subject blocks reveals of its
// held data too, before and after its erasure; lifting it lifts both.
func TestRestrictCoversHolds(t *testing.T) {
	ctx := context.Background()
	e := newHoldsEnv(t)
	v := e.open(t)
	if _, err := v.Tokenize(ctx, "alice", []vault.Field{{Kind: format.Name, Value: "Ada Lovelace"}}); err != nil {
		t.Fatal(err)
	}
	held, err := v.Tokenize(ctx, "alice", []vault.Field{{Kind: format.Name, Value: "Ada Lovelace", Hold: "tax"}})
	if err != nil {
		t.Fatal(err)
	}
	reveal := func() error {
		got, err := v.Detokenize(ctx, held, "legal")
		if err != nil {
			t.Fatal(err)
		}
		return got[0].Err
	}
	if _, err := v.RestrictSubject(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := reveal(); !errors.Is(err, vault.ErrRestricted) {
		t.Fatalf("held data of a restricted subject: %v", err)
	}
	if err := v.UnrestrictSubject(ctx, "alice"); err != nil || reveal() != nil {
		t.Fatalf("after lifting the restriction: %v, %v", err, reveal())
	}
	if _, _, err := v.EraseSubject(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	// Erased: only held data is left, and it can still be restricted.
	if _, err := v.RestrictSubject(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := reveal(); !errors.Is(err, vault.ErrRestricted) {
		t.Fatalf("held data of a restricted, erased subject: %v", err)
	}
	if err := v.UnrestrictSubject(ctx, "alice"); err != nil || reveal() != nil {
		t.Fatalf("after lifting the restriction: %v, %v", err, reveal())
	}
	if _, err := v.RestrictSubject(ctx, "nobody"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("restricting an unknown subject: %v", err)
	}
}

// TestHoldReceiptCountsManyPages: the receipt of a hold shred counts
// every held record, however many pages of the store's listing they take
// (450 records: three pages, in runs that share index entries).
func TestHoldReceiptCountsManyPages(t *testing.T) {
	ctx := context.Background()
	e := newHoldsEnv(t)
	v := e.open(t)
	const calls, per = 5, 90
	for c := range calls {
		var fields []vault.Field
		for i := range per {
			fields = append(fields, vault.Field{Kind: format.Email, Value: fmt.Sprintf("u%d-%d@example.com", c, i), Hold: "tax"})
		}
		if _, err := v.Tokenize(ctx, "alice", fields); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := v.EraseSubject(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	e.now = e.now.AddDate(7, 0, 1)
	if n, err := v.ShredDueHolds(ctx); err != nil || n != 1 {
		t.Fatalf("ShredDueHolds = %d, %v", n, err)
	}
	rs, _, err := v.HoldReceipts(ctx, "alice")
	if err != nil || len(rs) != 1 {
		t.Fatalf("hold receipts = %+v, %v", rs, err)
	}
	if rs[0].Records != calls*per {
		t.Fatalf("the receipt counts %d records, want %d", rs[0].Records, calls*per)
	}
}
