package envelope_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/crypto/envelope"
)

func validBlob(t testing.TB, plaintext []byte) []byte {
	k, err := aead.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	id := envelope.KeyID{1, 2, 3}
	sealed, err := k.Seal(nil, plaintext, envelope.AAD(id, "s", "c"))
	if err != nil {
		t.Fatal(err)
	}
	return envelope.Blob{KeyID: id, Sealed: sealed}.Marshal(nil)
}

func TestParse(t *testing.T) {
	good := validBlob(t, []byte("hello"))
	badVersion := bytes.Clone(good)
	badVersion[0] = 2
	badIDLen := bytes.Clone(good)
	badIDLen[1] = 15
	for name, tc := range map[string]struct {
		in []byte
		ok bool
	}{
		"valid":          {good, true},
		"empty payload":  {validBlob(t, nil), true},
		"max size":       {validBlob(t, make([]byte, envelope.MaxPlaintext)), true},
		"over max size":  {validBlob(t, make([]byte, envelope.MaxPlaintext+1)), false},
		"empty":          {nil, false},
		"version only":   {[]byte{1}, false},
		"bad version":    {badVersion, false},
		"bad key id len": {badIDLen, false},
		"truncated":      {good[:envelope.MinSize-1], false},
	} {
		t.Run(name, func(t *testing.T) {
			bl, err := envelope.Parse(tc.in)
			if tc.ok != (err == nil) {
				t.Fatalf("Parse err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, envelope.ErrMalformed) {
				t.Fatalf("err %v is not ErrMalformed", err)
			}
			if err == nil && !bytes.Equal(bl.Marshal(nil), tc.in) {
				t.Fatal("Marshal(Parse(b)) != b")
			}
		})
	}
}

func TestAADBindsEverything(t *testing.T) {
	id := envelope.KeyID{9}
	base := envelope.AAD(id, "subject", "orders.address")
	for name, aad := range map[string][]byte{
		"other key id":  envelope.AAD(envelope.KeyID{8}, "subject", "orders.address"),
		"other subject": envelope.AAD(id, "subject2", "orders.address"),
		"other context": envelope.AAD(id, "subject", "orders.phone"),
		"shifted split": envelope.AAD(id, "subjecto", "rders.address"),
	} {
		if bytes.Equal(aad, base) {
			t.Errorf("%s: same associated data", name)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(validBlob(f, []byte("hello")))
	f.Add([]byte{1, 16})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		bl, err := envelope.Parse(b)
		if err != nil {
			if !errors.Is(err, envelope.ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if out := bl.Marshal(nil); !bytes.Equal(out, b) {
			t.Fatalf("round trip: %x != %x", out, b)
		}
		if len(b) < envelope.MinSize || len(b) > envelope.MaxSize {
			t.Fatalf("accepted a blob of size %d", len(b))
		}
	})
}
