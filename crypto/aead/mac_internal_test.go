package aead

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"strings"
	"sync"
	"testing"
)

// refMAC is what MAC computed before the midstates: crypto/hmac over the
// length-prefixed parts.
func refMAC(key []byte, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write(binary.BigEndian.AppendUint32(nil, uint32(len(p))))
		m.Write(p)
	}
	return m.Sum(nil)
}

// MAC from the midstates is HMAC-SHA256, part lengths around the block
// size included, concurrently from several goroutines (the first MAC
// computes the midstates).
func TestMACIsHMAC(t *testing.T) {
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	cases := [][][]byte{{}, {nil}, {[]byte("tokenvault/store-subject/v1"), []byte("cust-1")},
		{[]byte(strings.Repeat("a", 55))}, {[]byte(strings.Repeat("b", 60))}, {[]byte(strings.Repeat("c", 64))},
		{[]byte(strings.Repeat("d", 1000)), nil, []byte("e")}}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for _, parts := range cases {
				got, err := k.MAC(parts...)
				if err != nil {
					t.Error(err)
					return
				}
				if want := refMAC(k.b[:], parts...); !bytes.Equal(got, want) {
					t.Errorf("MAC(%q) = %x, want %x", parts, got, want)
				}
			}
		})
	}
	wg.Wait()
}

// Zero wipes the midstates with the key: a copy of the key made before
// (copies share them) can no longer MAC, and no byte of them is left.
func TestZeroWipesMACState(t *testing.T) {
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.MAC([]byte("x")); err != nil {
		t.Fatal(err)
	}
	cp := *k
	k.Zero()
	for _, st := range [][]byte{k.mac.inner, k.mac.outer} {
		if len(st) == 0 || !bytes.Equal(st, make([]byte, len(st))) {
			t.Fatalf("midstate not wiped: %d bytes", len(st))
		}
	}
	if _, err := cp.MAC([]byte("x")); err == nil {
		t.Fatal("a copy of a zeroed key computed a MAC")
	}
	// Zeroed before any MAC: the midstates are never computed.
	k2, _ := NewKey()
	cp2 := *k2
	k2.Zero()
	if _, err := cp2.MAC([]byte("x")); err == nil || k2.mac.inner != nil {
		t.Fatal("a copy of a key zeroed before its first MAC computed one")
	}
}

// A MAC allocates its result only (hmac.New allocated seven times).
func TestMACAllocations(t *testing.T) {
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	label, subject := []byte("tokenvault/store-subject/v1"), []byte("cust-1")
	if allocs := testing.AllocsPerRun(100, func() { k.MAC(label, subject) }); allocs > 1 {
		t.Fatalf("MAC: %v allocations, want 1", allocs)
	}
}

// A caller's []byte(string) parts do not escape through MAC (the store
// hash of a subject id converts both of its parts).
func TestMACPartsDoNotEscape(t *testing.T) {
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	label, subject := "tokenvault/store-subject/v1", "cust-1"
	if allocs := testing.AllocsPerRun(100, func() { k.MAC([]byte(label), []byte(subject)) }); allocs > 1 {
		t.Fatalf("MAC of converted strings: %v allocations, want 1", allocs)
	}
}
