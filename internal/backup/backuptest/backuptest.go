// Package backuptest is the one backup→restore suite every store that can
// be backed up ([backup.Source]) and restored into ([backup.Loader])
// runs. It takes backups through [backup.Service] (encrypted, signed,
// with the ledger's MAC, as the server does) and restores them with
// [backup.Restore], then reads the restored store through the vault.
package backuptest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/internal/backup"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

// Store is the kind of store under test.
type Store struct {
	// Open opens the store at target, creating it if it is new, with the
	// vault's ledger key (stores hash and seal subject ids with it, see
	// [vault.StoreSubjectHash]); the suite closes it. It must be a
	// [backup.Source].
	Open func(t *testing.T, target string, ledgerKey *aead.Key) vault.Store
	// Loader makes the restore's loader (what cmd/tokenvault wires in).
	Loader backup.Opener
	// NewTarget names a new, unused place for a store (for a store in a
	// directory: a path under t.TempDir()).
	NewTarget func(t *testing.T) string
	// FullOnly: the store takes full backups only (PostgreSQL keeps no
	// entry versions): an incremental backup must be refused with an
	// error that matches errors.ErrUnsupported, instead of restored.
	FullOnly bool
}

// Run runs the suite.
func Run(t *testing.T, s Store) {
	t.Run("FullBackup", func(t *testing.T) { fullBackup(t, newEnv(t, s)) })
	t.Run("ErasedAfterBackup", func(t *testing.T) { erasedAfterBackup(t, newEnv(t, s)) })
	if s.FullOnly {
		t.Run("IncrementalRefused", func(t *testing.T) { incrementalRefused(t, newEnv(t, s)) })
	} else {
		t.Run("Incremental", func(t *testing.T) { incremental(t, newEnv(t, s)) })
	}
	t.Run("Refusals", func(t *testing.T) { refusals(t, newEnv(t, s)) })
}

// env is one vault's keys: the KEK, the ledger key, the signing key and
// the age identity the backups are encrypted to.
type env struct {
	s         Store
	kek       agekeyring.Provider
	ledgerKey []byte
	signing   ed25519.PrivateKey
	id        *age.X25519Identity
}

func newEnv(t *testing.T, s Store) *env {
	t.Helper()
	dir := t.TempDir()
	kr, _, err := agekeyring.OpenOrCreate(agekeyring.Config{Path: filepath.Join(dir, "keyring.age"), IdentityFile: filepath.Join(dir, "identity.txt")}, true)
	if err != nil {
		t.Fatal(err)
	}
	lk, err := aead.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	_, signing, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return &env{s: s, kek: kr, ledgerKey: bytes.Clone(lk.Bytes()), signing: signing, id: id}
}

// ledger is a fresh copy of the ledger key (a vault zeroes its own when
// it closes).
func (e *env) ledger(t *testing.T) *aead.Key {
	k, err := aead.KeyFromBytes(e.ledgerKey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// live is a vault over a store of the kind under test, and its backup
// service.
type live struct {
	v       *vault.Vault
	backups *backup.Service
}

func (e *env) open(t *testing.T, target string) live {
	t.Helper()
	st := e.s.Open(t, target, e.ledger(t))
	if c, ok := st.(interface{ Close() error }); ok {
		t.Cleanup(func() { c.Close() })
	}
	src, ok := st.(backup.Source)
	if !ok {
		t.Fatalf("the store (%T) is not a backup.Source", st)
	}
	lk := e.ledger(t)
	v, err := vault.New(context.Background(), st, e.kek, vault.Options{Rights: vault.RightsOptions{LedgerKey: lk, ReceiptKey: e.signing}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return live{v: v, backups: backup.NewService(src, v, backup.Keys{Signing: e.signing, Ledger: e.ledger(t)})}
}

// takeBackup writes a backup file as `tokenvault backup` does: the signed
// header, then the ciphertext exactly as the service sent it.
func (e *env) takeBackup(t *testing.T, l live, since uint64) (string, backup.Header) {
	t.Helper()
	var ct bytes.Buffer
	var lastRead int64
	next, kid, sig, err := l.backups.Backup(context.Background(), []string{e.id.Recipient().String()}, since,
		func(chunk []byte, read, total int64) error {
			if len(chunk) == 0 || len(chunk) > backup.ChunkSize || read < lastRead || total < read {
				t.Errorf("chunk of %d bytes, read %d (before %d), total %d", len(chunk), read, lastRead, total)
			}
			lastRead = read
			ct.Write(chunk)
			return nil
		})
	if err != nil {
		t.Fatalf("backup since %d: %v", since, err)
	}
	h := backup.Header{Since: since, Next: next, KeyID: kid, Signature: sig}
	if since > 0 && next < since {
		t.Fatalf("incremental backup since %d ends at %d", since, next)
	}
	path := filepath.Join(t.TempDir(), "backup.tvbak")
	if err := os.WriteFile(path, append(h.Marshal(), ct.Bytes()...), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, h
}

// exportLedger is the erasure ledger as `tokenvault ledger export` gets it.
func exportLedger(t *testing.T, l live) backup.Ledger {
	t.Helper()
	var out backup.Ledger
	kid, mac, err := l.backups.ExportLedger(context.Background(), func(kid string, page []vault.LedgerEntry) error {
		out.Entries = append(out.Entries, page...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out.KeyID, out.MAC = kid, mac
	return out
}

func (e *env) restore(t *testing.T, target string, ledger backup.Ledger, files ...string) (backup.RestoreResult, error) {
	t.Helper()
	return backup.Restore(context.Background(), backup.RestoreOptions{DataDir: target, Open: e.s.Loader, Files: files,
		Identities: []age.Identity{e.id}, LedgerKey: e.ledger(t), Ledger: ledger,
		VerifyKey: e.signing.Public().(ed25519.PublicKey)})
}

// subject is everything the vault reveals about a subject.
type subject struct {
	Header  vault.ExportHeader
	Records []vault.ExportedRecord
}

func export(t *testing.T, v *vault.Vault, name string) (subject, error) {
	t.Helper()
	var s subject
	err := v.ExportSubject(context.Background(), name, func(h vault.ExportHeader, recs []vault.ExportedRecord) error {
		s.Header = h
		s.Records = append(s.Records, recs...)
		return nil
	})
	return s, err
}

func mustExport(t *testing.T, v *vault.Vault, name string) subject {
	t.Helper()
	s, err := export(t, v, name)
	if err != nil {
		t.Fatalf("export %s: %v", name, err)
	}
	return s
}

func sameSubject(t *testing.T, what string, got, want subject) {
	t.Helper()
	// Times compare as instants: a store may keep another location.
	norm := func(s subject) subject {
		s.Header.KeyCreated = s.Header.KeyCreated.UTC()
		s.Header.Restricted = s.Header.Restricted.UTC()
		recs := make([]vault.ExportedRecord, len(s.Records))
		for i, r := range s.Records {
			r.Created, r.Expires = r.Created.UTC(), r.Expires.UTC()
			recs[i] = r
		}
		s.Records = recs
		return s
	}
	if g, w := norm(got), norm(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("%s after the restore:\n got %+v\nwant %+v", what, g, w)
	}
}

var (
	fieldsA = []vault.Field{
		{Kind: format.PAN, Value: "4000056655665556"},
		{Kind: format.Email, Value: "alice.suite@example.org", Deterministic: true},
	}
	fieldsB = []vault.Field{
		{Kind: format.PAN, Value: "5105105105105100"},
		{Kind: format.Name, Value: "Bob Suite"},
		{Kind: format.Generic, Value: "bob-note-" + strings.Repeat("b", 2000)}, // a large value
	}
	fieldsC = []vault.Field{{Kind: format.Email, Value: "carol.suite@example.net", Deterministic: true}}
)

func tokenize(t *testing.T, v *vault.Vault, name string, fields []vault.Field) []string {
	t.Helper()
	toks, err := v.Tokenize(context.Background(), name, fields)
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

// fullBackup: a full backup restores to a store that reveals the same
// tokens, values, restriction and blob, and finds deterministic tokens
// again.
func fullBackup(t *testing.T, e *env) {
	ctx := context.Background()
	l := e.open(t, e.s.NewTarget(t))
	tokA := tokenize(t, l.v, "subject-a", fieldsA)
	tokenize(t, l.v, "subject-b", fieldsB)
	blobs, err := l.v.Encrypt(ctx, "subject-b", []vault.EncryptItem{{Plaintext: []byte("1 Suite Street"), Context: "orders.address"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.v.RestrictSubject(ctx, "subject-b"); err != nil {
		t.Fatal(err)
	}
	wantA, wantB := mustExport(t, l.v, "subject-a"), mustExport(t, l.v, "subject-b")
	file, h := e.takeBackup(t, l, 0)

	target := e.s.NewTarget(t)
	res, err := e.restore(t, target, exportLedger(t, l), file)
	if err != nil {
		t.Fatal(err)
	}
	if res.ReErased != 0 || res.Dropped != 0 || res.Entries == 0 || res.Next != h.Next || res.Ledger != 0 {
		t.Fatalf("restore result %+v (backup header %+v)", res, h)
	}
	r := e.open(t, target)
	sameSubject(t, "subject-a", mustExport(t, r.v, "subject-a"), wantA)
	sameSubject(t, "subject-b", mustExport(t, r.v, "subject-b"), wantB)
	if mustExport(t, r.v, "subject-b").Header.Restricted.IsZero() {
		t.Fatal("subject-b is no longer restricted")
	}
	if err := r.v.UnrestrictSubject(ctx, "subject-b"); err != nil {
		t.Fatal(err)
	}
	dec, err := r.v.Decrypt(ctx, []vault.DecryptItem{{Blob: blobs[0], Context: "orders.address"}}, "suite")
	if err != nil || dec[0].Err != nil || string(dec[0].Plaintext) != "1 Suite Street" {
		t.Fatalf("blob after the restore: %+v, %v", dec, err)
	}
	// The lookup of the deterministic token came back with it.
	again := tokenize(t, r.v, "subject-a", fieldsA[1:])
	if again[0] != tokA[1] {
		t.Fatalf("deterministic tokenize after the restore made a new token %q", again[0])
	}
}

// erasedAfterBackup: a subject erased after the backup was taken stays
// erased (re-erased from the ledger), the other subjects restore, and the
// restored store keeps the ledger.
func erasedAfterBackup(t *testing.T, e *env) {
	ctx := context.Background()
	l := e.open(t, e.s.NewTarget(t))
	tokA := tokenize(t, l.v, "subject-a", fieldsA)
	tokenize(t, l.v, "subject-b", fieldsB)
	wantB := mustExport(t, l.v, "subject-b")
	file, _ := e.takeBackup(t, l, 0)
	if _, _, err := l.v.EraseSubject(ctx, "subject-a"); err != nil {
		t.Fatal(err)
	}
	ledger := exportLedger(t, l)
	if len(ledger.Entries) != 1 {
		t.Fatalf("ledger of %d entries after one erasure", len(ledger.Entries))
	}

	target := e.s.NewTarget(t)
	res, err := e.restore(t, target, ledger, file)
	if err != nil {
		t.Fatal(err)
	}
	// A's key, its records and their index and lookup entries.
	if res.ReErased != 1 || res.Dropped < int64(len(fieldsA))+1 || res.Ledger != 1 {
		t.Fatalf("restore result %+v: want subject-a re-erased, its entries left out, the ledger kept", res)
	}
	r := e.open(t, target)
	if _, err := export(t, r.v, "subject-a"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("subject-a after the restore: %v, want not found", err)
	}
	rev, err := r.v.Detokenize(ctx, tokA, "suite")
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range rev {
		if x.Err == nil || x.Value != "" {
			t.Fatalf("token %d of the erased subject reveals %q (%v)", i, x.Value, x.Err)
		}
	}
	sameSubject(t, "subject-b", mustExport(t, r.v, "subject-b"), wantB)
	if got := exportLedger(t, r); len(got.Entries) != 1 || !bytes.Equal(got.Entries[0].Hash, ledger.Entries[0].Hash) {
		t.Fatalf("the restored store's ledger: %+v, want %+v", got.Entries, ledger.Entries)
	}
}

// incremental: a full backup and an incremental one restore together: what
// was added, rectified, restricted and erased between them is as the live
// store had it, and a subject id used again after its erasure keeps its
// new key.
func incrementalRefused(t *testing.T, e *env) {
	l := e.open(t, e.s.NewTarget(t))
	tokenize(t, l.v, "subject-a", fieldsA)
	_, h1 := e.takeBackup(t, l, 0)
	_, _, _, err := l.backups.Backup(context.Background(), []string{e.id.Recipient().String()}, h1.Next,
		func([]byte, int64, int64) error { return nil })
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("incremental backup of a full-only store: %v, want an ErrUnsupported", err)
	}
}

func incremental(t *testing.T, e *env) {
	ctx := context.Background()
	l := e.open(t, e.s.NewTarget(t))
	tokenize(t, l.v, "subject-a", fieldsA)
	tokB := tokenize(t, l.v, "subject-b", fieldsB)
	full, h1 := e.takeBackup(t, l, 0)

	tokenize(t, l.v, "subject-c", fieldsC)
	if _, err := l.v.Rectify(ctx, tokB[1], "Robert Suite"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.v.RestrictSubject(ctx, "subject-b"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.v.EraseSubject(ctx, "subject-a"); err != nil {
		t.Fatal(err)
	}
	tokenize(t, l.v, "subject-a", fieldsA[:1]) // the id again, a new key
	want := map[string]subject{}
	for _, s := range []string{"subject-a", "subject-b", "subject-c"} {
		want[s] = mustExport(t, l.v, s)
	}
	inc, h2 := e.takeBackup(t, l, h1.Next)
	if h2.Since != h1.Next {
		t.Fatalf("incremental header %+v after %+v", h2, h1)
	}

	target := e.s.NewTarget(t)
	res, err := e.restore(t, target, exportLedger(t, l), full, inc)
	if err != nil {
		t.Fatal(err)
	}
	if res.ReErased != 1 || res.Next != h2.Next {
		t.Fatalf("restore result %+v: want the old subject-a re-erased, next %d", res, h2.Next)
	}
	r := e.open(t, target)
	for s, w := range want {
		sameSubject(t, s, mustExport(t, r.v, s), w)
	}
	// The next incremental backup of the live store follows on.
	tokenize(t, l.v, "subject-d", fieldsC)
	inc2, _ := e.takeBackup(t, l, h2.Next)
	target2 := e.s.NewTarget(t)
	if _, err := e.restore(t, target2, exportLedger(t, l), full, inc, inc2); err != nil {
		t.Fatal(err)
	}
	mustExport(t, e.open(t, target2).v, "subject-d")
}

// refusals: a restore into a target that holds a store is refused and
// leaves that store as it was; a restore that fails half-way leaves
// nothing behind, so the same target takes the next restore.
func refusals(t *testing.T, e *env) {
	ctx := context.Background()
	src := e.s.NewTarget(t)
	l := e.open(t, src)
	tokenize(t, l.v, "subject-b", fieldsB)
	want := mustExport(t, l.v, "subject-b")
	file, _ := e.takeBackup(t, l, 0)
	ledger := exportLedger(t, l)

	existing := e.s.NewTarget(t)
	x := e.open(t, existing)
	tokenize(t, x.v, "subject-x", fieldsC)
	if _, err := e.restore(t, existing, ledger, file); err == nil {
		t.Fatal("a restore into a target holding a store succeeded")
	}
	mustExport(t, x.v, "subject-x")
	if _, err := export(t, x.v, "subject-b"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("the refused restore wrote into the existing store: %v", err)
	}

	// Fails after the files were verified, while loading: the payload
	// cannot be decrypted with the identity given.
	target := e.s.NewTarget(t)
	other, _ := age.GenerateX25519Identity()
	_, err := backup.Restore(ctx, backup.RestoreOptions{DataDir: target, Open: e.s.Loader, Files: []string{file},
		Identities: []age.Identity{other}, LedgerKey: e.ledger(t), Ledger: ledger,
		VerifyKey: e.signing.Public().(ed25519.PublicKey)})
	if err == nil || !strings.Contains(err.Error(), "cannot decrypt") {
		t.Fatalf("restore with another identity: %v", err)
	}
	if _, err := e.restore(t, target, ledger, file); err != nil {
		t.Fatalf("restore after a failed one into the same target: %v", err)
	}
	sameSubject(t, "subject-b", mustExport(t, e.open(t, target).v, "subject-b"), want)
}
