package badgerstore

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

// FuzzDecodeRecord: the strict parser never panics, rejects with
// ErrCorrupt, and what it accepts re-encodes to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	for _, aad := range []int{vault.RecordAADv1, vault.RecordAADv2} {
		r := vault.Record{Token: "tok", KeyID: vault.KeyID{1}, Kind: format.Email, Created: time.Unix(1, 2).UTC(),
			Lookup: bytes.Repeat([]byte{3}, lookupSize), Sealed: make([]byte, 30), AADVersion: aad}
		f.Add(mustEncodeRecord(f, r))
		r.Lookup = nil
		f.Add(mustEncodeRecord(f, r))
		r.Expires = time.Unix(100, 3).UTC()
		f.Add(mustEncodeRecord(f, r))
	}
	f.Add([]byte{1})
	f.Add([]byte{5})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeRecord(b)
		if err != nil {
			if !errors.Is(err, vault.ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if got.AADVersion != vault.RecordAADv1 && got.AADVersion != vault.RecordAADv2 {
			t.Fatalf("decoded AAD version %d", got.AADVersion)
		}
		if !bytes.Equal(mustEncodeRecord(t, got), b) {
			t.Fatal("decode/encode round trip changed the record")
		}
	})
}

func mustEncodeRecord(t testing.TB, r vault.Record) []byte {
	t.Helper()
	b, err := encodeRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	// PutRecords carves encodings from one buffer by this length.
	if n := encodedRecordLen(r); n != len(b) {
		t.Fatalf("encodedRecordLen = %d, encoding has %d bytes", n, len(b))
	}
	return b
}

// TestEncodeRecordRefusesUnknownAAD: a record whose AAD version the store
// cannot record is refused, not stored as something the vault would open
// with the wrong associated data.
func TestEncodeRecordRefusesUnknownAAD(t *testing.T) {
	for _, v := range []int{0, 3} {
		if _, err := encodeRecord(vault.Record{Token: "t", Sealed: make([]byte, 30), AADVersion: v}); err == nil {
			t.Errorf("encodeRecord with AAD version %d succeeded", v)
		}
	}
}

func FuzzDecodeSubjectKey(f *testing.F) {
	sk := vault.SubjectKey{ID: vault.KeyID{7}, Wrapped: []byte("wrapped"), Created: time.Unix(5, 0)}
	enc, _ := encodeSubjectKey(sk, nil)
	f.Add(enc)
	enc, _ = encodeSubjectKey(sk, make([]byte, aead.Overhead+9))
	f.Add(enc)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		sk, sealed, err := decodeSubjectKey(b)
		if err != nil {
			if !errors.Is(err, vault.ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		again, err := encodeSubjectKey(sk, sealed)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
