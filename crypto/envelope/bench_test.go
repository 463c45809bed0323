package envelope_test

import (
	"testing"

	"github.com/tokenvault/tokenvault/crypto/envelope"
)

// Parse and Marshal run once per blob in Decrypt and Encrypt; AAD once per
// blob in both.
func BenchmarkEnvelope(b *testing.B) {
	blob := validBlob(b, []byte("1 Main St, Springfield"))
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := envelope.Parse(blob); err != nil {
				b.Fatal(err)
			}
		}
	})
	bl, err := envelope.Parse(blob)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("marshal", func(b *testing.B) {
		b.ReportAllocs()
		dst := make([]byte, 0, len(blob))
		for b.Loop() {
			_ = bl.Marshal(dst[:0])
		}
	})
	b.Run("aad", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = envelope.AAD(bl.KeyID, "customer-42", "orders.shipping_address")
		}
	})
}
