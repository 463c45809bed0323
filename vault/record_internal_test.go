package vault

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/vault/format"
)

// TestRecordAADCap: recordAADCap bounds the associated data of both
// versions, so sealRecord's one buffer holds the data and the plaintext
// without growing (which would cost a second allocation).
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

// TestRecordAADLayout checks the associated data byte for byte against
// the layout documented at appendRecordAAD, built here by hand: every
// stored record was sealed with it, so any drift would make them all
// fail to open. Both starting points (nil, and a buffer as sealRecord
// passes) give the same bytes.
func TestRecordAADLayout(t *testing.T) {
	created := time.Date(2026, 12, 1, 10, 0, 0, 123456000, time.UTC)
	var id KeyID
	for i := range id {
		id[i] = byte(i + 1)
	}
	lp := func(s string) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(s))), s...)
	}
	head := func(label string) []byte {
		b := append([]byte(label), id[:]...)
		b = append(b, lp("customer-42")...)
		b = append(b, byte(format.PAN))
		return append(b, lp("4111110000001111")...)
	}
	v2 := func(expires time.Time, lookup []byte) []byte {
		b := head("tokenvault/record/v2")
		b = binary.BigEndian.AppendUint64(b, uint64(created.UnixMicro()))
		if expires.IsZero() {
			b = binary.BigEndian.AppendUint64(b, 0)
		} else {
			b = binary.BigEndian.AppendUint64(b, uint64(expires.UnixMicro()))
		}
		b = append(b, byte(len(lookup)))
		return append(b, lookup...)
	}
	base := Record{Token: "4111110000001111", KeyID: id, Kind: format.PAN, Created: created}
	lookup := bytes.Repeat([]byte{0xab}, 32)
	for _, c := range []struct {
		name string
		r    Record
		want []byte
	}{
		{"v1", func() Record { r := base; r.AADVersion = RecordAADv1; r.Lookup = lookup; return r }(), head("tokenvault/record/v1")},
		{"v2", func() Record { r := base; r.AADVersion = RecordAADv2; return r }(), v2(time.Time{}, nil)},
		{"v2, expiry and lookup", func() Record {
			r := base
			r.AADVersion, r.Expires, r.Lookup = RecordAADv2, created.Add(90*24*time.Hour), lookup
			return r
		}(), v2(created.Add(90*24*time.Hour), lookup)},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, dst := range [][]byte{nil, make([]byte, 0, recordAADCap("customer-42", &c.r)+16)} {
				got, err := appendRecordAAD(dst, "customer-42", &c.r)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, c.want) {
					t.Fatalf("associated data\n got %x\nwant %x", got, c.want)
				}
			}
		})
	}
}
