package vault

import (
	"strings"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/vault/format"
)

// TestRecordAADCap: recordAADCap bounds the associated data of both
// versions, so sealRecord's one buffer holds the data and the plaintext
// without growing (a second allocation, and an unzeroed copy of the
// plaintext in the first buffer's place).
func TestRecordAADCap(t *testing.T) {
	created := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		r    Record
	}{
		{"v1", Record{AADVersion: RecordAADv1, Token: "4111110000001111", Kind: format.PAN}},
		{"v2", Record{AADVersion: RecordAADv2, Token: "4111110000001111", Kind: format.PAN, Created: created}},
		{"v2, expiry and lookup", Record{AADVersion: RecordAADv2, Token: strings.Repeat("t", 300), Kind: format.Address,
			Created: created, Expires: created.Add(time.Hour), Lookup: make([]byte, 255)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, subject := range []string{"", "customer-42", strings.Repeat("s", 1000)} {
				aad, err := appendRecordAAD(nil, subject, &c.r)
				if err != nil {
					t.Fatal(err)
				}
				if n := recordAADCap(subject, &c.r); len(aad) > n {
					t.Fatalf("subject of %d bytes: %d bytes of associated data, cap %d", len(subject), len(aad), n)
				}
			}
		})
	}
}
