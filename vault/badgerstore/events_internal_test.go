package badgerstore

import (
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
