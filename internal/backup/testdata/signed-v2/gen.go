// Command gen wrote this directory with tokenvault at commit 5c90d15, the
// last commit before backup orchestration moved out of the gRPC handler
// into internal/backup, along the code paths the server and the CLI used
// then (the store's WriteBackup inside age encryption, SignBackup, the
// ledger MAC), so that today's restore is tested on files the earlier
// code wrote:
//
//   - keyring.age, identity.txt: the vault's KEK keyring (agekeyring);
//   - ledger.key, verify.pem: the vault's ledger key and the public half of
//     the receipt signing key that signed the backups;
//   - backup-identity.txt: the age identity the backups are encrypted to;
//   - full.tvbak: a full backup of fixture-a (two tokens) and fixture-b
//     (two tokens and a blob, restricted);
//   - inc.tvbak: the incremental backup after fixture-c was tokenized and
//     fixture-a erased;
//   - full.payload: full.tvbak's payload, decrypted;
//   - data-full: the badger directory full.tvbak was taken of (badger's
//     DISCARD file left out: badger makes a new one);
//   - ledger.jsonl: the erasure ledger (fixture-a's entry), with its MAC;
//   - fixture.json: what the tokens and the blob hold.
//
// Kept for the record: testdata is never built.
//
//	go run ./internal/backup/testdata/signed-v2/gen.go DIR
package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"

	"filippo.io/age"

	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/crypto/keyfile"
	"github.com/tokenvault/tokenvault/internal/backup"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
	"github.com/tokenvault/tokenvault/vault/format"
)

// writer is the store's backup stream as the old gRPC handler used it.
type writer interface {
	WriteBackup(w io.Writer, since uint64) (uint64, error)
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

type tok struct {
	Token, Value string
	Kind         int
}

type fixture struct {
	Subjects map[string][]tok
	Blob     []byte
	Context  string
	Plain    string
}

func main() {
	dir := os.Args[1]
	ctx := context.Background()
	kr, _, err := agekeyring.OpenOrCreate(agekeyring.Config{Path: filepath.Join(dir, "keyring.age"), IdentityFile: filepath.Join(dir, "identity.txt")}, true)
	check(err)
	lk, _, err := keyfile.LoadOrCreateLedgerKey(filepath.Join(dir, "ledger.key"), true)
	check(err)
	signing := filepath.Join(os.TempDir(), "tokenvault-fixture-signing.pem")
	os.Remove(signing)
	sk, err := keyfile.CreateSigningKey(signing, "fixture")
	check(err)
	os.Remove(signing)
	check(keyfile.WritePublic(filepath.Join(dir, "verify.pem"), keyfile.MarshalPublicKey(sk.Public().(ed25519.PublicKey))))
	id, err := age.GenerateX25519Identity()
	check(err)
	check(os.WriteFile(filepath.Join(dir, "backup-identity.txt"), []byte(id.String()+"\n"), 0o600))

	data := filepath.Join(os.TempDir(), "tokenvault-fixture-data")
	os.RemoveAll(data)
	open := func() (vault.Store, *vault.Vault) {
		st, err := badgerstore.Open(data, badgerstore.Options{}, nil)
		check(err)
		// The vault zeroes its ledger key when it closes.
		lk, err = keyfile.LoadLedgerKey(filepath.Join(dir, "ledger.key"))
		check(err)
		v, err := vault.New(ctx, st, kr, vault.Options{Rights: vault.RightsOptions{LedgerKey: lk, ReceiptKey: sk}})
		check(err)
		return st, v
	}
	st, v := open()
	fx := fixture{Subjects: map[string][]tok{}, Context: "orders.address", Plain: "1 Fixture Lane"}
	tokenize := func(subject string, fields ...vault.Field) {
		toks, err := v.Tokenize(ctx, subject, fields)
		check(err)
		for i, t := range toks {
			fx.Subjects[subject] = append(fx.Subjects[subject], tok{t, fields[i].Value, int(fields[i].Kind)})
		}
	}
	tokenize("fixture-a", vault.Field{Kind: format.PAN, Value: "4000056655665556"},
		vault.Field{Kind: format.Email, Value: "ada.fixture@example.org", Deterministic: true})
	tokenize("fixture-b", vault.Field{Kind: format.PAN, Value: "5105105105105100"},
		vault.Field{Kind: format.Name, Value: "Bob Fixture"})
	blobs, err := v.Encrypt(ctx, "fixture-b", []vault.EncryptItem{{Plaintext: []byte(fx.Plain), Context: fx.Context}})
	check(err)
	fx.Blob = blobs[0]
	_, err = v.RestrictSubject(ctx, "fixture-b")
	check(err)

	take := func(name string, since uint64) uint64 {
		var ct, payload bytes.Buffer
		enc, err := age.Encrypt(&ct, id.Recipient())
		check(err)
		next, err := st.(writer).WriteBackup(io.MultiWriter(enc, &payload), since)
		check(err)
		check(enc.Close())
		digest := sha256.Sum256(ct.Bytes())
		h := backup.SignBackup(sk, since, next, digest[:])
		check(os.WriteFile(filepath.Join(dir, name+".tvbak"), append(h.Marshal(), ct.Bytes()...), 0o600))
		if since == 0 {
			check(os.WriteFile(filepath.Join(dir, name+".payload"), payload.Bytes(), 0o600))
		}
		return next
	}
	v.Close()
	check(st.Close())
	// The directory as the full backup sees it (reopened, as a server
	// would be).
	check(exec.Command("cp", "-r", data, filepath.Join(dir, "data-full")).Run())
	os.Remove(filepath.Join(dir, "data-full", "DISCARD"))
	st, v = open()
	next := take("full", 0)

	tokenize("fixture-c", vault.Field{Kind: format.Email, Value: "cy.fixture@example.net"})
	_, err = v.EraseSubject(ctx, "fixture-a")
	check(err)
	take("inc", next)

	kid, err := vault.LedgerKeyID(lk)
	check(err)
	l := backup.Ledger{KeyID: kid}
	check(v.ScanLedger(ctx, func(page []vault.LedgerEntry) error {
		l.Entries = append(l.Entries, page...)
		return nil
	}))
	l.MAC, err = l.Sum(lk)
	check(err)
	v.Close()
	check(backup.WriteLedger(filepath.Join(dir, "ledger.jsonl"), l))
	check(st.Close())
	os.RemoveAll(data)
	b, _ := json.MarshalIndent(fx, "", "  ")
	check(os.WriteFile(filepath.Join(dir, "fixture.json"), append(b, '\n'), 0o644))
}
