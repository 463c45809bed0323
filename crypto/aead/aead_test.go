package aead_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/tokenvault/tokenvault/crypto/aead"
)

func mustKey(t *testing.T) *aead.Key {
	t.Helper()
	k, err := aead.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	k := mustKey(t)
	other := mustKey(t)
	msg, aad := []byte("4111111111111111"), []byte("token|subject|pan")
	sealed, err := k.Seal(nil, msg, aad)
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed) != len(msg)+aead.Overhead || bytes.Contains(sealed, msg) {
		t.Fatalf("sealed message has wrong size or contains the plaintext")
	}
	got, err := k.Open(nil, sealed, aad)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	again, _ := k.Seal(nil, msg, aad)
	if bytes.Equal(again, sealed) {
		t.Error("two seals of the same message are equal: nonce not random")
	}

	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	for name, tc := range map[string]struct {
		key    *aead.Key
		sealed []byte
		aad    []byte
	}{
		"wrong aad":   {k, sealed, []byte("token|other-subject|pan")},
		"no aad":      {k, sealed, nil},
		"wrong key":   {other, sealed, aad},
		"tampered":    {k, flipped, aad},
		"truncated":   {k, sealed[:len(sealed)-1], aad},
		"too short":   {k, sealed[:aead.Overhead-1], aad},
		"empty input": {k, nil, aad},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := tc.key.Open(nil, tc.sealed, tc.aad); !errors.Is(err, aead.ErrDecrypt) {
				t.Fatalf("Open err = %v, want ErrDecrypt", err)
			}
		})
	}
}

func TestKeyIsRedacted(t *testing.T) {
	k, err := aead.KeyFromBytes(bytes.Repeat([]byte{0xAB}, aead.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
		out := fmt.Sprintf(verb, k)
		if out != "[REDACTED]" {
			t.Errorf("Sprintf(%q, key) = %q", verb, out)
		}
	}
	wrapped := fmt.Sprintf("%v", struct{ K *aead.Key }{k})
	if bytes.Contains([]byte(wrapped), []byte("ab")) || bytes.Contains([]byte(wrapped), []byte("171")) {
		t.Errorf("key inside a struct printed key bytes: %s", wrapped)
	}
}

func TestZero(t *testing.T) {
	k := mustKey(t)
	b := k.Bytes()
	k.Zero()
	if !bytes.Equal(b, make([]byte, aead.KeySize)) {
		t.Fatal("Zero left key bytes behind")
	}
	if _, err := k.Seal(nil, []byte("x"), nil); err == nil {
		t.Fatal("Seal with a zeroed key succeeded")
	}
	if _, err := k.MAC([]byte("x")); err == nil {
		t.Fatal("MAC with a zeroed key succeeded")
	}
	if _, err := k.Derive("x"); err == nil {
		t.Fatal("Derive with a zeroed key succeeded")
	}
}

func TestKeyFromBytesSize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := aead.KeyFromBytes(make([]byte, n)); err == nil {
			t.Errorf("KeyFromBytes(%d bytes) succeeded", n)
		}
	}
}

func TestDeriveAndMAC(t *testing.T) {
	k := mustKey(t)
	a1, _ := k.Derive("a")
	a2, _ := k.Derive("a")
	b, _ := k.Derive("b")
	if !bytes.Equal(a1.Bytes(), a2.Bytes()) {
		t.Error("Derive is not deterministic")
	}
	if bytes.Equal(a1.Bytes(), b.Bytes()) || bytes.Equal(a1.Bytes(), k.Bytes()) {
		t.Error("derived keys for different labels (or the parent) are equal")
	}
	m1, _ := a1.MAC([]byte("ab"), []byte("c"))
	m2, _ := a1.MAC([]byte("a"), []byte("bc"))
	m3, _ := a2.MAC([]byte("ab"), []byte("c"))
	if bytes.Equal(m1, m2) {
		t.Error("MAC parts are not length-prefixed")
	}
	if !bytes.Equal(m1, m3) {
		t.Error("MAC is not deterministic")
	}
}
