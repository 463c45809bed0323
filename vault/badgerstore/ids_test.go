package badgerstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"filippo.io/age"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/crypto/keyfile"
	"github.com/tokenvault/tokenvault/internal/backup"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
	"github.com/tokenvault/tokenvault/vault/format"
)

// layout1 is testdata/layout-1/fixture.json (see testdata/layout-1/gen.go:
// a directory written by the store of layout 1, ids in the clear).
type layout1 struct {
	Live, Restricted, Erased string
	Tokens                   []struct {
		Token, Value string
		Kind         format.Kind
	}
	Blob           []byte
	Context, Plain string
}

func (f layout1) ids() []string { return []string{f.Live, f.Restricted, f.Erased} }

func openLayout1(t *testing.T) (dir string, fx layout1, lk *aead.Key, kr agekeyring.Provider) {
	t.Helper()
	dir = copyTree(t, filepath.Join("testdata", "layout-1"))
	b, err := os.ReadFile(filepath.Join(dir, "fixture.json"))
	if err == nil {
		err = json.Unmarshal(b, &fx)
	}
	if err != nil {
		t.Fatal(err)
	}
	if lk, err = keyfile.LoadLedgerKey(filepath.Join(dir, "ledger.key")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lk.Zero)
	kr, _, err = agekeyring.OpenOrCreate(agekeyring.Config{Path: filepath.Join(dir, "keyring.age"), IdentityFile: filepath.Join(dir, "identity.txt")}, false)
	if err != nil {
		t.Fatal(err)
	}
	return dir, fx, lk, kr
}

var (
	copyTree     = badgerstore.CopyTree
	filesHolding = badgerstore.FilesHolding
)

func openStore(t *testing.T, dir string, lk *aead.Key) *badgerstore.Store {
	t.Helper()
	s, err := badgerstore.Open(dir, badgerstore.Options{IDKey: lk}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkLayout1Data checks, through a vault on s, that everything the
// layout-1 fixture holds is there: the live subject's tokens and blob
// (with its subject id, from the sealed copy), the restriction, the
// erasure and its ledger entry.
func checkLayout1Data(t *testing.T, s *badgerstore.Store, fx layout1, lk *aead.Key, kr agekeyring.Provider) {
	t.Helper()
	ctx := context.Background()
	v, err := vault.New(ctx, s, kr, vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	var toks []string
	for _, tk := range fx.Tokens {
		toks = append(toks, tk.Token)
	}
	res, err := v.Detokenize(ctx, toks, "test")
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Err != nil || r.Value != fx.Tokens[i].Value || r.Kind != fx.Tokens[i].Kind {
			t.Fatalf("token %d: %+v", i, r)
		}
	}
	dec, err := v.Decrypt(ctx, []vault.DecryptItem{{Blob: fx.Blob, Context: fx.Context}}, "test")
	if err != nil || dec[0].Err != nil || string(dec[0].Plaintext) != fx.Plain || dec[0].Subject != fx.Live {
		t.Fatalf("blob: %+v, %v", dec, err)
	}
	if sk, err := s.SubjectKey(ctx, fx.Restricted); err != nil || sk.Restricted.IsZero() {
		t.Fatalf("restricted subject: %+v, %v", sk, err)
	}
	if _, err := s.SubjectKey(ctx, fx.Erased); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("erased subject: %v", err)
	}
	h, _ := vault.LedgerHash(lk, fx.Erased)
	if l, err := s.LedgerEntries(ctx, nil, 10); err != nil || len(l) != 1 || !bytes.Equal(l[0].Hash, h) {
		t.Fatalf("ledger %+v, %v", l, err)
	}
	page, err := s.SubjectKeys(ctx, "", 10)
	if err != nil || len(page) != 2 {
		t.Fatalf("subject keys %+v, %v", page, err)
	}
	for _, e := range page {
		if e.Subject != fx.Live && e.Subject != fx.Restricted {
			t.Fatalf("subject keys list %q", e.Subject)
		}
	}
}

// TestMigratesLayout1: a data directory of store layout 1 (written by
// the code before this layout, ids in the clear, an erased subject's
// among them) opens: it is migrated in place, every subject id is gone
// from every file of the directory, and everything it held works.
func TestMigratesLayout1(t *testing.T) {
	dir, fx, lk, kr := openLayout1(t)
	data := filepath.Join(dir, "data")
	// What layout 1 left on disk: the ids of all three, the erased one's
	// in its deletion markers and older versions.
	if hits := filesHolding(t, data, fx.ids()...); len(hits) != 3 {
		t.Fatalf("the fixture holds %v: want each id once", hits)
	}
	s := openStore(t, data, lk)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if hits := filesHolding(t, data, fx.ids()...); len(hits) != 0 {
		t.Fatalf("after the migration: %v", hits)
	}
	s = openStore(t, data, lk)
	defer s.Close()
	checkLayout1Data(t, s, fx, lk, kr)
}

// TestWrongIDKeyRefused: a directory migrated with one ledger key does not
// open with another, or with none: no subject would be found.
func TestWrongIDKeyRefused(t *testing.T) {
	dir, _, lk, _ := openLayout1(t)
	data := filepath.Join(dir, "data")
	openStore(t, data, lk).Close()
	other, _ := aead.NewKey()
	for name, k := range map[string]*aead.Key{"another key": other, "no key": nil} {
		s, err := badgerstore.Open(data, badgerstore.Options{IDKey: k}, nil)
		if err == nil {
			s.Close()
		}
		if !errors.Is(err, badgerstore.ErrWrongIDKey) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// LoadIDKey is told the directory is keyed, so that a lost key file
	// is not replaced by a new key.
	var keyed bool
	s, err := badgerstore.Open(data, badgerstore.Options{LoadIDKey: func(k bool) (*aead.Key, error) { keyed = k; return lk, nil }}, nil)
	if err != nil || !keyed {
		t.Fatalf("LoadIDKey told keyed=%v, %v", keyed, err)
	}
	s.Close()
	s, err = badgerstore.Open(t.TempDir(), badgerstore.Options{LoadIDKey: func(k bool) (*aead.Key, error) { keyed = k; return lk, nil }}, nil)
	if err != nil || keyed {
		t.Fatalf("a new directory: LoadIDKey told keyed=%v, %v", keyed, err)
	}
	s.Close()
}

// TestNoSubjectIDAtRest: with subjects of distinctive ids, one erased and
// one restricted, no id appears in any file of the data directory, in a
// backup (its file and its decrypted payload) or in a restore of it,
// which works.
func TestNoSubjectIDAtRest(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const live, restricted, erased = "zz-live-subject-3c9a", "zz-restricted-subject-51b0", "zz-erased-subject-7d1f"
	ids := []string{live, restricted, erased}
	kr, _, err := agekeyring.OpenOrCreate(agekeyring.Config{Path: filepath.Join(dir, "keyring.age"), IdentityFile: filepath.Join(dir, "identity.txt")}, true)
	if err != nil {
		t.Fatal(err)
	}
	lk, _, err := keyfile.LoadOrCreateLedgerKey(filepath.Join(dir, "ledger.key"), true)
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	s := openStore(t, data, lk)
	ledgerKey, _ := aead.KeyFromBytes(lk.Bytes()) // the vault zeroes its own
	v, err := vault.New(ctx, s, kr, vault.Options{Rights: vault.RightsOptions{LedgerKey: ledgerKey}})
	if err != nil {
		t.Fatal(err)
	}
	fields := []vault.Field{{Kind: format.PAN, Value: "4111111111111111"}, {Kind: format.Email, Value: "ada@example.org", Deterministic: true}}
	var toks []string
	for _, subj := range ids {
		tk, err := v.Tokenize(ctx, subj, fields)
		if err != nil {
			t.Fatal(err)
		}
		if subj == live {
			toks = tk
		}
	}
	blobs, err := v.Encrypt(ctx, live, []vault.EncryptItem{{Plaintext: []byte("1 Main St"), Context: "orders.address"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.RestrictSubject(ctx, restricted); err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.EraseSubject(ctx, erased); err != nil {
		t.Fatal(err)
	}
	// A KEK rotation and rewrap rewrites every subject key entry.
	if _, err := v.RotateKEK(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := v.RewrapKeys(ctx, nil); err != nil {
		t.Fatal(err)
	}
	var payload bytes.Buffer
	if _, err := backup.WritePayload(&payload, s, 0); err != nil {
		t.Fatal(err)
	}
	ledger, err := s.LedgerEntries(ctx, nil, 10)
	if err != nil || len(ledger) != 1 {
		t.Fatalf("ledger %d entries, %v", len(ledger), err)
	}
	v.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if hits := filesHolding(t, data, ids...); len(hits) != 0 {
		t.Fatalf("data directory: %v", hits)
	}
	for _, id := range ids {
		if bytes.Contains(payload.Bytes(), []byte(id)) {
			t.Fatalf("the backup payload holds %s", id)
		}
	}
	bak := filepath.Join(t.TempDir(), "full.tvbak")
	id, _ := age.GenerateX25519Identity()
	var file bytes.Buffer
	w, err := backup.Encrypt(&file, []age.Recipient{id.Recipient()})
	if err == nil {
		_, err = w.Write(payload.Bytes())
	}
	if err == nil {
		err = w.Close()
	}
	if err == nil {
		err = os.WriteFile(bak, file.Bytes(), 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
	if hits := filesHolding(t, filepath.Dir(bak), ids...); len(hits) != 0 {
		t.Fatalf("backup file: %v", hits)
	}

	// The restore, through the loader as `tokenvault restore` drives it.
	target := filepath.Join(t.TempDir(), "restored")
	ld, err := badgerstore.NewLoader(target, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ld.Close()
	if err := ld.UseLedgerKey(lk); err != nil {
		t.Fatal(err)
	}
	frames := func(fn func([]byte) error) error {
		_, err := backup.ReadPayload(bytes.NewReader(payload.Bytes()), fn)
		return err
	}
	// The scan names the live subjects (once per version of their key).
	named := map[string]bool{}
	if err := frames(func(f []byte) error {
		return ld.Scan(f, func(subject string, _ vault.SubjectKey) { named[subject] = true }, func(vault.LedgerEntry) {})
	}); err != nil || len(named) != 2 || !named[live] || !named[restricted] {
		t.Fatalf("scan named %v, %v", named, err)
	}
	if _, _, err := ld.Load(frames, func(vault.KeyID) bool { return false }); err != nil {
		t.Fatal(err)
	}
	if err := ld.Finish(ctx, ledger); err != nil {
		t.Fatal(err)
	}
	if hits := filesHolding(t, target, ids...); len(hits) != 0 {
		t.Fatalf("restored directory: %v", hits)
	}
	s = openStore(t, target, lk)
	defer s.Close()
	v, err = vault.New(ctx, s, kr, vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	res, err := v.Detokenize(ctx, toks, "test")
	if err != nil || res[0].Err != nil || res[0].Value != fields[0].Value {
		t.Fatalf("restored token: %+v, %v", res, err)
	}
	dec, err := v.Decrypt(ctx, []vault.DecryptItem{{Blob: blobs[0], Context: "orders.address"}}, "test")
	if err != nil || dec[0].Err != nil || dec[0].Subject != live {
		t.Fatalf("restored blob: %+v, %v", dec, err)
	}
	if _, err := s.SubjectKey(ctx, erased); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("erased subject in the restore: %v", err)
	}
}
