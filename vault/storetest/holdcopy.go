package storetest

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
)

// HoldReceiptCopier is a store that takes copies of the receipts of hold
// shreds and pages them out by cursor, as backups and copies between
// stores do. The entry type is badgerstore's because a backup is in the
// badger store's format whichever store it came from.
type HoldReceiptCopier interface {
	PutHoldReceiptEntries(ctx context.Context, entries []badgerstore.HoldReceiptEntry) error
	HoldReceiptEntries(ctx context.Context, after []byte, limit int) ([]badgerstore.HoldReceiptEntry, error)
}

// RunHoldReceiptCopy checks [HoldReceiptCopier]: what is put reads back,
// paged in the badger store's order (hash, time made, key id).
func RunHoldReceiptCopy(t *testing.T, newStore NewStore) {
	runTests(t, newStore, []test{
		{"Paged", testHoldReceiptsPaged},
	})
}

func testHoldReceiptsPaged(t *testing.T, s vault.Store) {
	ctx := context.Background()
	hc := as[HoldReceiptCopier](t, s)
	at := time.Unix(1700000000, 5).UTC()
	var in []badgerstore.HoldReceiptEntry
	for i := range 5 {
		in = append(in, badgerstore.HoldReceiptEntry{SubjectHash: bytes.Repeat([]byte{byte(i % 2)}, 32), Made: at.Add(time.Duration(i) * time.Second),
			KeyID: vault.KeyID{byte(i)}, Receipt: []byte(fmt.Sprintf("hold receipt %d", i))})
	}
	if err := hc.PutHoldReceiptEntries(ctx, in); err != nil {
		t.Fatal(err)
	}
	var out []badgerstore.HoldReceiptEntry
	var after []byte
	for {
		page, err := hc.HoldReceiptEntries(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		out = append(out, page...)
		after = page[len(page)-1].Cursor()
	}
	order := []int{0, 2, 4, 1, 3} // hash 0… first, then by time
	if len(out) != len(in) {
		t.Fatalf("%d hold receipts read back, want %d", len(out), len(in))
	}
	for i, j := range order {
		if !bytes.Equal(out[i].Receipt, in[j].Receipt) || !out[i].Made.Equal(in[j].Made) || out[i].KeyID != in[j].KeyID {
			t.Fatalf("hold receipt %d: %q, want %q", i, out[i].Receipt, in[j].Receipt)
		}
	}
}
