package badgerstore

import (
	"bytes"
	"testing"

	"github.com/dgraph-io/badger/v4/pb"

	"github.com/tokenvault/tokenvault/vault"
)

// TestKeyIDOfIssue16Keys: backups and restores know the consent and
// erasure-event keys (an unknown key type fails a restore), and tie the
// consent entries to their subject key (dropped with it when the ledger
// re-erases the subject).
func TestKeyIDOfIssue16Keys(t *testing.T) {
	id := vault.KeyID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	tag := make([]byte, consentTagSize)
	for _, tc := range []struct {
		name  string
		key   []byte
		keyed bool
	}{
		{"consent history", key(pConsent, id[:], make([]byte, 8)), true},
		{"latest consent", key(pConsentLatest, id[:], tag), true},
		{"consent counter", consentCounterKey(id), true},
		{"event counter", eventCounterKey, false},
		{"event", eventKey(7), false},
		{"cursor", key(pCursor, []byte("crm")), false},
	} {
		got, ok, err := keyIDOf(&pb.KV{Key: tc.key, Value: []byte{1}})
		if err != nil || ok != tc.keyed || (ok && got != id) {
			t.Errorf("%s: keyIDOf = %x, %v, %v", tc.name, got, ok, err)
		}
	}
}

// FuzzDecodeEvent: the erasure-event parser never panics, and what it
// accepts encodes back to the same bytes (one encoding per event).
func FuzzDecodeEvent(f *testing.F) {
	seal := make([]byte, 40)
	f.Add(storedEvent{id: vault.KeyID{1}, hash: make([]byte, 32), subject: seal}.encode())
	f.Add(storedEvent{id: vault.KeyID{2}, hash: make([]byte, 32), subject: seal, receipt: seal}.encode())
	f.Add(storedEvent{hash: make([]byte, 32)}.encode())
	f.Add([]byte{eventV1})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEvent(b)
		if err != nil {
			return
		}
		if got := e.encode(); !bytes.Equal(got, b) {
			t.Fatalf("re-encoded %x, want %x", got, b)
		}
	})
}
