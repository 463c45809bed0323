package badgerstore

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

// FuzzDecodeRecord: the strict parser never panics, rejects with
// ErrCorrupt, and what it accepts re-encodes, with its group, to the same
// bytes.
func FuzzDecodeRecord(f *testing.F) {
	group := bytes.Repeat([]byte{5}, 32)
	for _, aad := range []int{vault.RecordAADv1, vault.RecordAADv2} {
		for _, g := range [][]byte{nil, group} {
			r := vault.Record{Token: "tok", KeyID: vault.KeyID{1}, Kind: format.Email, Created: time.Unix(1, 2).UTC(),
				Lookup: bytes.Repeat([]byte{3}, lookupSize), Sealed: make([]byte, 30), AADVersion: aad}
			f.Add(mustEncodeRecord(f, r, g))
			r.Lookup = nil
			f.Add(mustEncodeRecord(f, r, g))
			r.Expires = time.Unix(100, 3).UTC()
			f.Add(mustEncodeRecord(f, r, g))
		}
	}
	f.Add([]byte{1})
	f.Add([]byte{5})
	f.Add([]byte{encGrouped | encV1})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, g, err := decodeGrouped(b)
		if err != nil {
			if !errors.Is(err, vault.ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if got.AADVersion != vault.RecordAADv1 && got.AADVersion != vault.RecordAADv2 {
			t.Fatalf("decoded AAD version %d", got.AADVersion)
		}
		if g != nil && len(g) != 32 {
			t.Fatalf("group of %d bytes", len(g))
		}
		if !bytes.Equal(mustEncodeRecord(t, got, g), b) {
			t.Fatal("decode/encode round trip changed the record")
		}
		if r, err := decodeRecord(b); err != nil || r.Token != got.Token || !bytes.Equal(r.Sealed, got.Sealed) {
			t.Fatalf("decodeRecord disagrees with decodeGrouped: %v", err)
		}
	})
}

func mustEncodeRecord(t testing.TB, r vault.Record, group []byte) []byte {
	t.Helper()
	b, err := encodeRecord(r, group)
	if err != nil {
		t.Fatal(err)
	}
	// PutRecords carves encodings from one buffer by this length.
	if n := encodedRecordLen(r, group); n != len(b) {
		t.Fatalf("encodedRecordLen = %d, encoding has %d bytes", n, len(b))
	}
	return b
}

// TestEncodeRecordRefusesUnknownAAD: a record whose AAD version the store
// cannot record is refused, not stored as something the vault would open
// with the wrong associated data.
func TestEncodeRecordRefusesUnknownAAD(t *testing.T) {
	for _, v := range []int{0, 3} {
		if _, err := encodeRecord(vault.Record{Token: "t", Sealed: make([]byte, 30), AADVersion: v}, nil); err == nil {
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

// TestRecordReadAllocations: Record copies a record that fits recordGuess
// into the allocation of its key, a longer one on its own (one allocation
// more), and both read back whole.
func TestRecordReadAllocations(t *testing.T) {
	allocs := map[string]float64{}
	for _, cache := range []int64{-1, 0} {
		miss := cache < 0
		s, err := Open("", Options{InMemory: true, RecordCache: cache}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx := t.Context()
		id := vault.KeyID{7}
		if _, err := s.CreateSubjectKey(ctx, "s", vault.SubjectKey{ID: id, Wrapped: []byte("w")}); err != nil {
			t.Fatal(err)
		}
		short := vault.Record{Token: "4111110000001111", KeyID: id, Kind: format.PAN, Created: time.Unix(1, 0).UTC(),
			Sealed: make([]byte, aead.Overhead+16), AADVersion: vault.RecordAADv2}
		long := short
		long.Token, long.Sealed = "4111110000002222", bytes.Repeat([]byte{9}, aead.Overhead+recordGuess)
		if encodedRecordLen(short, nil) > recordGuess || encodedRecordLen(long, nil) <= recordGuess {
			t.Fatal("test records do not straddle recordGuess")
		}
		if err := s.PutRecords(ctx, "s", id, []vault.Record{short, long}); err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string]vault.Record{"short": short, "long": long} {
			got, err := s.Record(ctx, want.Token)
			if err != nil {
				t.Fatal(err)
			}
			if got.Token != want.Token || !bytes.Equal(got.Sealed, want.Sealed) || got.Kind != want.Kind {
				t.Fatalf("%s record read back as %+v", name, got)
			}
			allocs[fmt.Sprintf("%s, miss %v", name, miss)] = testing.AllocsPerRun(50, func() { s.Record(ctx, want.Token) })
		}
		hits, _ := s.records.stats()
		if miss != (hits == 0) {
			t.Fatalf("record cache %d: %d hits", cache, hits)
		}
	}
	// Read from badger, a short record's value is copied into its key's
	// allocation; from the cache, either is one copy of the encoding and
	// the token's string.
	if allocs["long, miss true"] != allocs["short, miss true"]+1 ||
		allocs["short, miss false"] != 2 || allocs["long, miss false"] != 2 {
		t.Fatalf("allocations per read: %v; want the short record's value copied into its key's allocation, two allocations from the cache", allocs)
	}
}
