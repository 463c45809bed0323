// Command gen wrote this directory with tokenvault at commit 6978447, before
// wrapped keys were bound to their subject and records to their metadata:
// a keyring with one KEK version, and a badger data directory holding one
// subject ("legacy-subject"), its wrapped key (agekeyring format 1), three
// tokens (random, deterministic, and one with an expiry, all sealed with
// record AAD v1) and, in legacy.json, what they hold plus one
// field-encryption blob. badger's DISCARD file was left out (badger makes
// a new one). Kept for the record: testdata is never built.
//
//	go run ./cmd/gen DIR   # as cmd/gen/main.go in a checkout of that commit
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
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
	store, err := badgerstore.Open(filepath.Join(dir, "data"), badgerstore.Options{}, nil)
	if err != nil {
		log.Fatal(err)
	}
	v, err := vault.New(ctx, store, kr, vault.Options{})
	if err != nil {
		log.Fatal(err)
	}
	fields := []vault.Field{
		{Kind: format.PAN, Value: "4111111111111111"},
		{Kind: format.Email, Value: "ada@example.org", Deterministic: true},
		{Kind: format.Name, Value: "Ada Lovelace", TTL: 50 * 365 * 24 * time.Hour},
	}
	toks, err := v.Tokenize(ctx, "legacy-subject", fields)
	if err != nil {
		log.Fatal(err)
	}
	blobs, err := v.Encrypt(ctx, "legacy-subject", []vault.EncryptItem{{Plaintext: []byte("1 Main St"), Context: "orders.address"}})
	if err != nil {
		log.Fatal(err)
	}
	type tok struct {
		Token, Value string
		Kind         int
	}
	m := struct {
		Subject string
		Tokens  []tok
		Blob    []byte
		Context string
		Plain   string
	}{Subject: "legacy-subject", Blob: blobs[0], Context: "orders.address", Plain: "1 Main St"}
	for i, t := range toks {
		m.Tokens = append(m.Tokens, tok{t, fields[i].Value, int(fields[i].Kind)})
	}
	v.Close()
	if err := store.Close(); err != nil {
		log.Fatal(err)
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	os.WriteFile(filepath.Join(dir, "legacy.json"), append(b, '\n'), 0o644)
	fmt.Println("ok")
}
