package backup

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/vault"
)

// FuzzParseLedger: the strict parser never panics; what it accepts
// re-encodes to a file that parses to the same ledger.
func FuzzParseLedger(f *testing.F) {
	l := Ledger{KeyID: "0123456789abcdef", Entries: []vault.LedgerEntry{
		{Hash: bytes.Repeat([]byte{7}, 32), ErasedAt: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)}}}
	f.Add(l.Marshal())
	f.Add(Ledger{KeyID: "0123456789abcdef"}.Marshal())
	f.Add([]byte("{}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParseLedger(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrLedger) {
				t.Fatalf("error %v is not ErrLedger", err)
			}
			return
		}
		again, err := ParseLedger(bytes.NewReader(got.Marshal()))
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzParseHeader: the backup file header parser never panics and round
// trips.
func FuzzParseHeader(f *testing.F) {
	f.Add(Header{Since: 5, Next: 9}.Marshal())
	f.Add(make([]byte, HeaderSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			return
		}
		if !bytes.Equal(h.Marshal(), b) {
			t.Fatal("header does not re-encode to the same bytes")
		}
	})
}

func TestLedgerRejects(t *testing.T) {
	good := Ledger{KeyID: "0123456789abcdef", Entries: []vault.LedgerEntry{
		{Hash: bytes.Repeat([]byte{7}, 32), ErasedAt: time.Unix(100, 0).UTC()}}}.Marshal()
	lines := bytes.SplitAfter(good, []byte("\n"))
	for name, in := range map[string][]byte{
		"empty":       nil,
		"truncated":   lines[0],
		"extra entry": append(bytes.Clone(good), lines[1]...),
		"bad hash":    bytes.Replace(good, []byte("0707"), []byte("zz07"), 1),
		"bad key id":  bytes.Replace(good, []byte("0123456789abcdef"), []byte("XYZ"), 1),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseLedger(bytes.NewReader(in)); !errors.Is(err, ErrLedger) {
				t.Fatalf("ParseLedger = %v, want ErrLedger", err)
			}
		})
	}
}
