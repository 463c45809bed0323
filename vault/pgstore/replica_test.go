package pgstore_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/internal/pgtest"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
	"github.com/tokenvault/tokenvault/vault/pgstore"
)

// replicas are two vaults, as two tokenvault replicas would run them: one
// database, a store handle (pool) each, the same KEK and ledger key.
func replicas(t *testing.T, wrap func(*pgstore.Store) vault.Store) (a, b *vault.Vault, sa *pgstore.Store) {
	t.Helper()
	ctx := context.Background()
	db := pgtest.New(t)
	if _, _, err := pgstore.Migrate(ctx, db.DSN); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kr, _, err := agekeyring.OpenOrCreate(agekeyring.Config{Path: filepath.Join(dir, "keyring.age"), IdentityFile: filepath.Join(dir, "id.txt")}, true)
	if err != nil {
		t.Fatal(err)
	}
	ledger, err := aead.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ledger.Zero)
	mk := func() (*vault.Vault, *pgstore.Store) {
		k, err := aead.KeyFromBytes(ledger.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		s, err := pgstore.Open(ctx, db.DSN, pgstore.Options{IDKey: k})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		var over vault.Store = s
		if wrap != nil {
			over = wrap(s)
		}
		v, err := vault.New(ctx, over, kr, vault.Options{Rights: vault.RightsOptions{LedgerKey: k}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(v.Close)
		return v, s
	}
	a, sa = mk()
	b, _ = mk()
	return a, b, sa
}

// claimsExclusive is the store wrongly claiming to be this process's
// alone: the negative control of the test below.
type claimsExclusive struct{ *pgstore.Store }

func (claimsExclusive) Exclusive() bool { return true }

func reveal(t *testing.T, v *vault.Vault, tok string) (string, error) {
	t.Helper()
	res, err := v.Detokenize(context.Background(), []string{tok}, "test")
	if err != nil {
		t.Fatal(err)
	}
	return res[0].Value, res[0].Err
}

// TestEraseOnOneReplicaHoldsOnTheOther: after EraseSubject returns on
// replica A, replica B refuses the subject's tokens at once, although B
// has just revealed one and holds the subject's key in its cache. The
// store is shared (not vault.ExclusiveStore), so B reads the subject key
// with every reveal; no notification is involved.
func TestEraseOnOneReplicaHoldsOnTheOther(t *testing.T) {
	ctx := context.Background()
	a, b, sa := replicas(t, nil)
	toks, err := a.Tokenize(ctx, "alice", []vault.Field{{Kind: format.Email, Value: "alice@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := reveal(t, b, toks[0]); err != nil || got != "alice@example.com" {
		t.Fatalf("reveal on B = %q, %v", got, err)
	}
	if b.CachedKeys() == 0 {
		t.Fatal("B did not cache the key: the test would not show what it claims")
	}
	// Restriction on A holds on B.
	if _, err := a.RestrictSubject(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := reveal(t, b, toks[0]); !errors.Is(err, vault.ErrRestricted) {
		t.Fatalf("reveal on B after restriction on A: %v, want ErrRestricted", err)
	}
	if err := a.UnrestrictSubject(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := reveal(t, b, toks[0]); err != nil {
		t.Fatalf("reveal on B after the restriction was lifted on A: %v", err)
	}
	// A second token made on B, so B's cache holds the subject both ways.
	more, err := b.Tokenize(ctx, "alice", []vault.Field{{Kind: format.Email, Value: "alice@example.org"}})
	if err != nil {
		t.Fatal(err)
	}
	// The shred alone (as if A crashed before purging): the records are
	// still there, only the key is gone, and B's cache has it.
	if _, err := sa.ShredSubject(ctx, "alice", vault.LedgerEntry{}); err != nil {
		t.Fatal(err)
	}
	for _, tok := range append(toks, more...) {
		if _, err := reveal(t, b, tok); !errors.Is(err, vault.ErrErased) {
			t.Fatalf("reveal on B after the shred on A: %v, want ErrErased", err)
		}
	}
	// The whole erasure of another subject.
	toks, err = a.Tokenize(ctx, "bob", []vault.Field{{Kind: format.Email, Value: "bob@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reveal(t, b, toks[0]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.EraseSubject(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	for _, tok := range toks {
		if got, err := reveal(t, b, tok); err == nil || got != "" {
			t.Fatalf("reveal on B after erasure on A = %q, %v; want refused", got, err)
		}
	}
	// And B makes no new token under the erased key: a new one is made.
	if _, err := b.Tokenize(ctx, "alice", []vault.Field{{Kind: format.Email, Value: "alice@example.com"}}); err != nil {
		t.Fatal(err)
	}
}

// TestReplicaControl: the scenario above does catch a store that
// claims exclusivity (the vault then answers from its cache): B reveals
// after the shred on A.
func TestReplicaControl(t *testing.T) {
	ctx := context.Background()
	a, b, sa := replicas(t, func(s *pgstore.Store) vault.Store { return claimsExclusive{s} })
	toks, err := a.Tokenize(ctx, "alice", []vault.Field{{Kind: format.Email, Value: "alice@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reveal(t, b, toks[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := sa.ShredSubject(ctx, "alice", vault.LedgerEntry{}); err != nil {
		t.Fatal(err)
	}
	if got, err := reveal(t, b, toks[0]); err != nil || got != "alice@example.com" {
		t.Fatalf("with a store claiming exclusivity B = %q, %v; the replica test would not catch it", got, err)
	}
}
