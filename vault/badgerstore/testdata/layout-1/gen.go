// Command gen wrote this directory with tokenvault at commit 4a53f2a, the
// last store layout 1 (subject ids in the clear in k/ and i/ keys): a
// keyring, a ledger key, and a badger data directory holding a live
// subject (tokens, one deterministic, and a blob), a restricted subject,
// and an erased subject (its deletion markers and the erasure-ledger
// entry), with what they hold in fixture.json. Kept for the record:
// testdata is never built.
//
//	go run ./cmd/gen DIR   # as cmd/gen/main.go in a checkout of that commit
package main

import (
	"context"
	"encoding/json"
	"log"
	"os"
	"path/filepath"

	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/crypto/keyfile"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
	"github.com/tokenvault/tokenvault/vault/format"
)

func main() {
	dir := os.Args[1]
	ctx := context.Background()
	kr, _, err := agekeyring.OpenOrCreate(agekeyring.Config{Path: filepath.Join(dir, "keyring.age"), IdentityFile: filepath.Join(dir, "identity.txt")}, true)
	if err != nil {
		log.Fatal(err)
	}
	lk, _, err := keyfile.LoadOrCreateLedgerKey(filepath.Join(dir, "ledger.key"), true)
	if err != nil {
		log.Fatal(err)
	}
	store, err := badgerstore.Open(filepath.Join(dir, "data"), badgerstore.Options{}, nil)
	if err != nil {
		log.Fatal(err)
	}
	v, err := vault.New(ctx, store, kr, vault.Options{Rights: vault.RightsOptions{LedgerKey: lk}})
	if err != nil {
		log.Fatal(err)
	}
	const live, restricted, erased = "zz-live-subject-3c9a", "zz-restricted-subject-51b0", "zz-erased-subject-7d1f"
	type tok struct {
		Token, Value string
		Kind         int
	}
	out := struct {
		Live, Restricted, Erased string
		Tokens                   []tok
		Blob                     []byte
		Context, Plain           string
	}{Live: live, Restricted: restricted, Erased: erased, Context: "orders.address", Plain: "1 Main St"}
	fields := []vault.Field{
		{Kind: format.PAN, Value: "4111111111111111"},
		{Kind: format.Email, Value: "ada@example.org", Deterministic: true},
	}
	toks, err := v.Tokenize(ctx, live, fields)
	if err != nil {
		log.Fatal(err)
	}
	for i, f := range fields {
		out.Tokens = append(out.Tokens, tok{toks[i], f.Value, int(f.Kind)})
	}
	blobs, err := v.Encrypt(ctx, live, []vault.EncryptItem{{Plaintext: []byte(out.Plain), Context: out.Context}})
	if err != nil {
		log.Fatal(err)
	}
	out.Blob = blobs[0]
	for _, s := range []string{restricted, erased} {
		if _, err := v.Tokenize(ctx, s, []vault.Field{{Kind: format.Name, Value: "Bob Erased"}, {Kind: format.Email, Value: "bob@example.org", Deterministic: true}}); err != nil {
			log.Fatal(err)
		}
	}
	if _, err := v.RestrictSubject(ctx, restricted); err != nil {
		log.Fatal(err)
	}
	if _, _, err := v.EraseSubject(ctx, erased); err != nil {
		log.Fatal(err)
	}
	v.Close()
	if err := store.Close(); err != nil {
		log.Fatal(err)
	}
	b, _ := json.MarshalIndent(out, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "fixture.json"), append(b, '\n'), 0o600); err != nil {
		log.Fatal(err)
	}
}
