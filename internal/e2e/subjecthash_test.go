package e2e

import (
	"path/filepath"
	"testing"

	"github.com/tokenvault/tokenvault/crypto/keyfile"
	"github.com/tokenvault/tokenvault/internal/audit"
)

// subjectHash is the audit log's keyed hash of a subject id, computed from
// the ledger key file in keysDir, as `tokenvault audit grep` does: entries
// name subjects only by it.
func subjectHash(t *testing.T, keysDir, subject string) string {
	t.Helper()
	lk, err := keyfile.LoadLedgerKey(filepath.Join(keysDir, "ledger.key"))
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Zero()
	h, err := audit.NewSubjectHasher(lk)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Zero()
	s, err := h.Hash(subject)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
