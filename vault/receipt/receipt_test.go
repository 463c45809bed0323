package receipt_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/crypto/keyfile"
	"github.com/tokenvault/tokenvault/vault/receipt"
)

func sample(t testing.TB) (receipt.Receipt, ed25519.PublicKey, ed25519.PrivateKey) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 3, 4, 5, 6, 7, 891011121, time.UTC)
	r := receipt.Sign(receipt.Receipt{Subject: "customer-42", ErasedAt: at, Records: 7, Lookups: 2,
		BackupsUndecryptableBy: at.Add(60 * 24 * time.Hour)}, priv)
	return r, pub, priv
}

func TestSignVerifyRoundTrip(t *testing.T) {
	r, pub, _ := sample(t)
	got, err := receipt.Parse(r.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip: got %+v, want %+v", got, r)
	}
	if err := got.Verify(pub); err != nil {
		t.Fatal(err)
	}
}

// TestTampered: changing any field, or verifying with another key, fails.
func TestTampered(t *testing.T) {
	r, pub, _ := sample(t)
	otherPub, _, _ := ed25519.GenerateKey(nil)
	edit := func(field string, v any) []byte {
		var m map[string]any
		if err := json.Unmarshal(r.Marshal(), &m); err != nil {
			t.Fatal(err)
		}
		m[field] = v
		b, _ := json.Marshal(m)
		return b
	}
	for _, tc := range []struct {
		name string
		file []byte
		pub  ed25519.PublicKey
	}{
		{"subject", edit("subject_id", "customer-43"), pub},
		{"erased_at", edit("erased_at", "2025-03-04T05:06:08.891011121Z"), pub},
		{"records", edit("records_erased", 6), pub},
		{"lookups", edit("lookups_erased", 3), pub},
		{"backup bound", edit("backups_undecryptable_by", "2030-01-01T00:00:00Z"), pub},
		{"signature", edit("signature", strings.Repeat("A", 86)+"=="), pub},
		{"other key", r.Marshal(), otherPub},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := receipt.Parse(tc.file)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if err := got.Verify(tc.pub); !errors.Is(err, receipt.ErrBadSignature) {
				t.Fatalf("Verify = %v, want ErrBadSignature", err)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	r, _, _ := sample(t)
	good := string(r.Marshal())
	for name, in := range map[string]string{
		"empty":          "",
		"not json":       "hello",
		"unknown member": strings.Replace(good, `"format"`, `"extra": 1, "format"`, 1),
		"wrong format":   strings.Replace(good, receipt.Format, "tokenvault-erasure-receipt/v2", 1),
		"local time":     strings.Replace(good, "891011121Z", "891011121+01:00", 1),
		"negative":       strings.Replace(good, `"records_erased": 7`, `"records_erased": -7`, 1),
		"trailing data":  good + "{}",
		"bad key id":     strings.Replace(good, r.KeyID, "XYZ", 1),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := receipt.Parse([]byte(in)); !errors.Is(err, receipt.ErrInvalid) {
				t.Fatalf("Parse = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestKeyFiles(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	p2, err := receipt.ParsePublicKey(receipt.MarshalPublicKey(pub))
	if err != nil || !p2.Equal(pub) {
		t.Fatalf("public key round trip: %v", err)
	}
	if _, err := receipt.ParsePublicKey(keyfile.MarshalPrivateKey(priv)); err == nil {
		t.Fatal("a private key parsed as a public key")
	}
}

// FuzzParse: the strict parser never panics; what it accepts re-encodes
// and re-parses to the same receipt with the same signed bytes.
func FuzzParse(f *testing.F) {
	r, _, _ := sample(f)
	f.Add(r.Marshal())
	f.Add([]byte(`{"format":"tokenvault-erasure-receipt/v1"}`))
	for _, v2 := range func() []receipt.Receipt { rs, _ := samplesV2(f); return rs }() {
		f.Add(v2.Marshal())
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := receipt.Parse(b)
		if err != nil {
			if !errors.Is(err, receipt.ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		again, err := receipt.Parse(got.Marshal())
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !reflect.DeepEqual(again, got) || !bytes.Equal(again.SignedBytes(), got.SignedBytes()) {
			t.Fatalf("round trip changed the receipt: %+v vs %+v", again, got)
		}
	})
}
