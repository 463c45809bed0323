package keyfile_test

import (
	"bytes"
	"crypto/ed25519"
	"testing"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/crypto/keyfile"
)

// FuzzParseLedgerKey: the parser never panics, and what it accepts
// re-encodes to a file that parses to the same key and re-encodes to the
// same bytes.
func FuzzParseLedgerKey(f *testing.F) {
	k, _ := aead.NewKey()
	f.Add(keyfile.MarshalLedgerKey(k))
	f.Add([]byte("tokenvault-ledger-key-v1:" + string(bytes.Repeat([]byte("AB"), 32)) + "\r\n"))
	f.Add([]byte("# comment\n\n  tokenvault-ledger-key-v1:00\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := keyfile.ParseLedgerKey(b)
		if err != nil {
			return
		}
		enc := keyfile.MarshalLedgerKey(k)
		k2, err := keyfile.ParseLedgerKey(enc)
		if err != nil {
			t.Fatalf("re-encoded file does not parse: %v", err)
		}
		if !bytes.Equal(k.Bytes(), k2.Bytes()) {
			t.Fatal("round trip changed the key")
		}
		if !bytes.Equal(keyfile.MarshalLedgerKey(k2), enc) {
			t.Fatal("encoding is not stable")
		}
	})
}

// FuzzParseSigningKey: the Ed25519 private and public key parsers (the
// receipt and audit key files) never panic, and what they accept
// re-encodes to a file that parses to the same key.
func FuzzParseSigningKey(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	f.Add(keyfile.MarshalPrivateKey(priv))
	f.Add(append([]byte("# a comment\n"), keyfile.MarshalPrivateKey(priv)...))
	f.Add(keyfile.MarshalPublicKey(pub))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if k, err := keyfile.ParsePrivateKey(b); err == nil {
			enc := keyfile.MarshalPrivateKey(k)
			k2, err := keyfile.ParsePrivateKey(enc)
			if err != nil || !k2.Equal(k) {
				t.Fatalf("private key round trip: %v", err)
			}
			if !bytes.Equal(keyfile.MarshalPrivateKey(k2), enc) {
				t.Fatal("private key encoding is not stable")
			}
		}
		if p, err := keyfile.ParsePublicKey(b); err == nil {
			enc := keyfile.MarshalPublicKey(p)
			p2, err := keyfile.ParsePublicKey(enc)
			if err != nil || !p2.Equal(p) {
				t.Fatalf("public key round trip: %v", err)
			}
			if keyfile.KeyID(p2) != keyfile.KeyID(p) {
				t.Fatal("key id changed in the round trip")
			}
		}
	})
}
