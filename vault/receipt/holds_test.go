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

	"github.com/tokenvault/tokenvault/vault/receipt"
)

// samplesV2 are an erasure that left data under holds and the shred of
// one hold.
func samplesV2(t testing.TB) ([]receipt.Receipt, ed25519.PublicKey) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 3, 4, 5, 6, 7, 891011121, time.UTC)
	erasure := receipt.Sign(receipt.Receipt{Subject: "customer-42", ErasedAt: at, Records: 7, Lookups: 2,
		BackupsUndecryptableBy: at.Add(60 * 24 * time.Hour),
		Held:                   []receipt.Held{{Class: "audit", Until: at.AddDate(1, 0, 0)}, {Class: "tax", Until: at.AddDate(7, 0, 0)}}}, priv)
	shred := receipt.Sign(receipt.Receipt{Subject: "customer-42", ErasedAt: at.AddDate(7, 0, 1), Records: 3, Lookups: 1,
		BackupsUndecryptableBy: at.AddDate(7, 2, 1), HoldClass: "tax", SubjectErasedAt: at}, priv)
	return []receipt.Receipt{erasure, shred}, pub
}

func TestV2RoundTrip(t *testing.T) {
	rs, pub := samplesV2(t)
	for _, r := range rs {
		b := r.Marshal()
		if !bytes.Contains(b, []byte(receipt.FormatV2)) {
			t.Fatalf("a receipt with holds is not version 2:\n%s", b)
		}
		got, err := receipt.Parse(b)
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
	// Without holds a receipt stays version 1, byte for byte as before.
	v1, _, _ := sample(t)
	if b := v1.Marshal(); !bytes.Contains(b, []byte(receipt.Format)) || bytes.Contains(b, []byte("held")) {
		t.Fatalf("a receipt without holds is not version 1:\n%s", b)
	}
}

// TestV2Tampered: every version 2 member is covered by the signature.
func TestV2Tampered(t *testing.T) {
	rs, pub := samplesV2(t)
	edit := func(r receipt.Receipt, fn func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(r.Marshal(), &m); err != nil {
			t.Fatal(err)
		}
		fn(m)
		b, _ := json.Marshal(m)
		return b
	}
	for name, file := range map[string][]byte{
		"held until": edit(rs[0], func(m map[string]any) {
			m["held"].([]any)[1].(map[string]any)["until"] = "2026-03-04T05:06:07.891011121Z"
		}),
		"held class":   edit(rs[0], func(m map[string]any) { m["held"].([]any)[1].(map[string]any)["class"] = "tay" }),
		"held dropped": edit(rs[0], func(m map[string]any) { m["held"] = m["held"].([]any)[1:] }),
		"hold class":   edit(rs[1], func(m map[string]any) { m["hold_class"] = "audit" }),
		"subject erased at": edit(rs[1], func(m map[string]any) {
			m["subject_erased_at"] = "2025-03-05T05:06:07.891011121Z"
		}),
	} {
		t.Run(name, func(t *testing.T) {
			got, err := receipt.Parse(file)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if err := got.Verify(pub); !errors.Is(err, receipt.ErrBadSignature) {
				t.Fatalf("Verify = %v, want ErrBadSignature", err)
			}
		})
	}
}

func TestV2ParseRejects(t *testing.T) {
	rs, _ := samplesV2(t)
	erasure, shred := string(rs[0].Marshal()), string(rs[1].Marshal())
	for name, in := range map[string]string{
		"no hold at all":      strings.Replace(strings.Replace(shred, `"hold_class": "tax"`, `"hold_class": ""`, 1), `"subject_erased_at": "2025-03-04T05:06:07.891011121Z"`, `"subject_erased_at": ""`, 1),
		"class without time":  strings.Replace(shred, `"subject_erased_at": "2025-03-04T05:06:07.891011121Z"`, `"subject_erased_at": ""`, 1),
		"held and hold_class": strings.Replace(erasure, `"hold_class": ""`, `"hold_class": "tax"`, 1),
		"bad class":           strings.Replace(erasure, `"class": "tax"`, `"class": "Tax"`, 1),
		"out of order":        strings.Replace(erasure, `"class": "audit"`, `"class": "zzz"`, 1),
		"missing member":      strings.Replace(shred, `"hold_class": "tax",`, ``, 1),
		"local time":          strings.Replace(erasure, `2032-03-04T05:06:07.891011121Z`, `2032-03-04T05:06:07.891011121+01:00`, 1),
	} {
		t.Run(name, func(t *testing.T) {
			if in == erasure || in == shred {
				t.Fatal("the edit did not apply")
			}
			if _, err := receipt.Parse([]byte(in)); !errors.Is(err, receipt.ErrInvalid) {
				t.Fatalf("Parse = %v, want ErrInvalid", err)
			}
		})
	}
}

// TestParseWithout: the vault's stored form of a hold receipt (no subject
// id) gets the subject back and verifies; a stored receipt with a subject
// is refused.
func TestParseWithout(t *testing.T) {
	rs, pub := samplesV2(t)
	stored := rs[1]
	stored.Subject = ""
	got, err := receipt.ParseWithout(stored.Marshal(), "customer-42")
	if err != nil || got.Verify(pub) != nil || !reflect.DeepEqual(got, rs[1]) {
		t.Fatalf("ParseWithout = %+v, %v", got, err)
	}
	if _, err := receipt.ParseWithout(rs[1].Marshal(), "customer-42"); !errors.Is(err, receipt.ErrInvalid) {
		t.Fatalf("ParseWithout of a receipt with its subject = %v", err)
	}
	if _, err := receipt.Parse(stored.Marshal()); !errors.Is(err, receipt.ErrInvalid) {
		t.Fatalf("Parse of a receipt without subject = %v", err)
	}
	// Unsigned (a vault without a receipt key).
	unsigned := stored
	unsigned.KeyID, unsigned.Signature = "", nil
	if got, err := receipt.ParseWithout(unsigned.Marshal(), "customer-42"); err != nil || got.Signature != nil {
		t.Fatalf("ParseWithout of an unsigned receipt = %+v, %v", got, err)
	}
}
