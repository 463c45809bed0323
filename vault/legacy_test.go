package vault_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tokenvault/tokenvault/crypto/kek"
	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/internal/testfs"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
	"github.com/tokenvault/tokenvault/vault/format"
)

// legacyData is testdata/legacy-v1/legacy.json: what the old code stored
// there (see testdata/legacy-v1/gen.go).
type legacyData struct {
	Subject string
	Tokens  []struct {
		Token, Value string
		Kind         format.Kind
	}
	Blob    []byte
	Context string
	Plain   string
}

// openLegacy copies testdata/legacy-v1 (written before wraps and records
// were bound) to a temporary directory and opens a vault on it.
func openLegacy(t *testing.T) (*vault.Vault, vault.Store, agekeyring.Provider, legacyData) {
	t.Helper()
	dir := testfs.CopyTree(t, filepath.Join("testdata", "legacy-v1"))
	var data legacyData
	b, err := os.ReadFile(filepath.Join(dir, "legacy.json"))
	if err == nil {
		err = json.Unmarshal(b, &data)
	}
	if err != nil {
		t.Fatal(err)
	}
	store, err := badgerstore.Open(filepath.Join(dir, "data"), badgerstore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	kr, _, err := agekeyring.OpenOrCreate(agekeyring.Config{Path: filepath.Join(dir, "keyring.age"), IdentityFile: filepath.Join(dir, "identity.txt")}, false)
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.New(context.Background(), store, kr, vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v, store, kr, data
}

// checkLegacyOpens reveals everything legacy-v1 holds through v; the
// subject holds extra tokens besides.
func checkLegacyOpens(t *testing.T, v *vault.Vault, data legacyData, extra int) {
	t.Helper()
	ctx := context.Background()
	var toks []string
	for _, tk := range data.Tokens {
		toks = append(toks, tk.Token)
	}
	res, err := v.Detokenize(ctx, toks, "test")
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Err != nil || r.Value != data.Tokens[i].Value || r.Kind != data.Tokens[i].Kind {
			t.Fatalf("legacy token %d: %+v", i, r)
		}
	}
	dec, err := v.Decrypt(ctx, []vault.DecryptItem{{Blob: data.Blob, Context: data.Context}}, "test")
	if err != nil || dec[0].Err != nil || string(dec[0].Plaintext) != data.Plain || dec[0].Subject != data.Subject {
		t.Fatalf("legacy blob: %+v, %v", dec, err)
	}
	n := 0
	err = v.ExportSubject(ctx, data.Subject, func(_ vault.ExportHeader, recs []vault.ExportedRecord) error {
		n += len(recs)
		return nil
	})
	if err != nil || n != len(data.Tokens)+extra {
		t.Fatalf("legacy export: %d records, %v", n, err)
	}
}

// TestLegacyDataOpens: a data directory and keyring written before wrapped
// keys were bound to their subject and records to their metadata open and
// work; `tokenvault kek rewrap` (RewrapKeys) binds the old wrapped key, and
// a rectification rewrites an old record in the new form.
func TestLegacyDataOpens(t *testing.T) {
	ctx := context.Background()
	v, store, kr, data := openLegacy(t)
	checkLegacyOpens(t, v, data, 0)

	// Deterministic tokenization still finds the old token.
	for _, tk := range data.Tokens {
		if tk.Kind != format.Email {
			continue
		}
		got, err := v.Tokenize(ctx, data.Subject, []vault.Field{{Kind: tk.Kind, Value: tk.Value, Deterministic: true}})
		if err != nil || got[0] != tk.Token {
			t.Fatalf("deterministic tokenize of a legacy value = %v, %v; want %s", got, err, tk.Token)
		}
	}
	// New tokens for the old subject are written in the new form.
	fresh, err := v.Tokenize(ctx, data.Subject, []vault.Field{{Kind: format.Name, Value: "Charles Babbage"}})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := store.Record(ctx, fresh[0]); err != nil || r.AADVersion != vault.RecordAADv2 {
		t.Fatalf("new record: AAD version %d, %v", r.AADVersion, err)
	}

	old, err := store.SubjectKey(ctx, data.Subject)
	if err != nil {
		t.Fatal(err)
	}
	st, err := v.KEKStatus(ctx)
	if err != nil || st.Unbound != 1 || st.KeysByVersion[1] != 1 {
		t.Fatalf("status of legacy data = %+v, %v; want one unbound key under version 1", st, err)
	}
	// The rewrap binds the unbound key without a rotation...
	p, err := v.RewrapKeys(ctx, nil)
	if err != nil || p.Scanned != 1 || p.Rewrapped != 1 {
		t.Fatalf("rewrap = %+v, %v", p, err)
	}
	st, err = v.KEKStatus(ctx)
	if err != nil || st.Unbound != 0 || st.KeysByVersion[1] != 1 {
		t.Fatalf("status after rewrap = %+v, %v; want no unbound key", st, err)
	}
	bound, err := store.SubjectKey(ctx, data.Subject)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := kr.Describe(bound.Wrapped); err != nil || !info.Bound || bound.ID != old.ID {
		t.Fatalf("rewrapped key: %+v, %v (same id: %v)", info, err, bound.ID == old.ID)
	}
	if _, err := kr.Unwrap(ctx, bound.Wrapped, vault.KeyBinding(bound.ID, "decoy")); !errors.Is(err, kek.ErrInvalidWrapped) {
		t.Fatalf("rewrapped legacy key unwraps for another subject: %v", err)
	}
	// ...and a second run has nothing left to do.
	if p, err := v.RewrapKeys(ctx, nil); err != nil || p.Rewrapped != 0 {
		t.Fatalf("second rewrap = %+v, %v", p, err)
	}

	// Everything still opens, through the bound key and a cold cache.
	cold, err := vault.New(ctx, store, kr, vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cold.Close()
	checkLegacyOpens(t, cold, data, 1)

	// Rectifying an old record rewrites it bound to its metadata.
	tk := data.Tokens[len(data.Tokens)-1] // the one with an expiry
	before, err := store.Record(ctx, tk.Token)
	if err != nil || before.AADVersion != vault.RecordAADv1 || before.Expires.IsZero() {
		t.Fatalf("legacy record: %+v, %v", before, err)
	}
	if _, err := cold.Rectify(ctx, tk.Token, "Ada King"); err != nil {
		t.Fatal(err)
	}
	after, err := store.Record(ctx, tk.Token)
	if err != nil || after.AADVersion != vault.RecordAADv2 || !after.Expires.Equal(before.Expires) || !after.Created.Equal(before.Created) {
		t.Fatalf("rectified legacy record: %+v, %v", after, err)
	}
	res, err := cold.Detokenize(ctx, []string{tk.Token}, "test")
	if err != nil || res[0].Err != nil || res[0].Value != "Ada King" {
		t.Fatalf("rectified legacy token: %+v, %v", res, err)
	}
}
