package badgerstore

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

// FuzzDecodeRecord: the strict parser never panics, rejects with
// ErrCorrupt, and what it accepts re-encodes to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	r := vault.Record{Token: "tok", KeyID: vault.KeyID{1}, Kind: format.Email, Created: time.Unix(1, 2).UTC(),
		Lookup: bytes.Repeat([]byte{3}, lookupSize), Sealed: make([]byte, 30)}
	f.Add(encodeRecord(r))
	r.Lookup = nil
	f.Add(encodeRecord(r))
	r.Expires = time.Unix(100, 3).UTC()
	f.Add(encodeRecord(r))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeRecord(b)
		if err != nil {
			if !errors.Is(err, vault.ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if !bytes.Equal(encodeRecord(got), b) {
			t.Fatal("decode/encode round trip changed the record")
		}
	})
}

func FuzzDecodeSubjectKey(f *testing.F) {
	enc, _ := encodeSubjectKey(vault.SubjectKey{ID: vault.KeyID{7}, Wrapped: []byte("wrapped"), Created: time.Unix(5, 0)})
	f.Add(enc)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		sk, err := decodeSubjectKey(b)
		if err != nil {
			if !errors.Is(err, vault.ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		again, err := encodeSubjectKey(sk)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
