package agekeyring

import (
	"bytes"
	"testing"
)

// FuzzParseKeyring: the keyring file's plaintext parser never panics, and
// what it accepts re-encodes to a plaintext that parses again and
// re-encodes to the same bytes. (The age layer around it is age's own,
// fuzzed there.)
func FuzzParseKeyring(f *testing.F) {
	// As the current and earlier versions write it.
	f.Add([]byte(`{"format":"tokenvault-keyring-v1","current":2,"versions":[` +
		`{"version":1,"key":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","created":"2026-01-02T03:04:05.123456789Z"},` +
		`{"version":2,"key":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","created":"2026-02-02T03:04:05+01:00"}]}`))
	f.Add([]byte(`{"format":"tokenvault-keyring-v1","current":1,"versions":[]}`))
	f.Add([]byte(`{"format":"tokenvault-keyring-v1","current":1,"versions":[{"version":1,"key":"AA==","created":"0001-01-01T00:00:00Z"}]} x`))
	f.Fuzz(func(t *testing.T, plain []byte) {
		cur, versions, err := decodeFile(plain)
		if err != nil {
			return
		}
		enc, err := encodeFile(cur, versions)
		if err != nil {
			// A time the JSON encoder refuses (year beyond 9999) cannot
			// come from the decoder.
			t.Fatalf("accepted keyring does not re-encode: %v", err)
		}
		cur2, versions2, err := decodeFile(enc)
		if err != nil {
			t.Fatalf("re-encoded keyring does not parse: %v", err)
		}
		if cur2 != cur || len(versions2) != len(versions) {
			t.Fatal("round trip changed the keyring")
		}
		for n, v := range versions {
			v2 := versions2[n]
			if v2 == nil || !bytes.Equal(v.key.Bytes(), v2.key.Bytes()) || !v.created.Equal(v2.created) {
				t.Fatalf("round trip changed version %d", n)
			}
		}
		enc2, _ := encodeFile(cur2, versions2)
		if !bytes.Equal(enc, enc2) {
			t.Fatal("encoding is not stable")
		}
	})
}
