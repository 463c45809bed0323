package storetest

import (
	"context"
	"testing"

	"github.com/tokenvault/tokenvault/vault"
)

// AllKeyRecords lists every record under key id, limit at a time,
// resuming from each page's last Cursor as the vault's own listings do.
// It fails t on an error, a page longer than limit or a record listed
// twice, and returns the records by token.
func AllKeyRecords(t testing.TB, s vault.RightsStore, id vault.KeyID, limit int) map[string]vault.Record {
	t.Helper()
	got := map[string]vault.Record{}
	for after := ""; ; {
		page, err := s.KeyRecords(context.Background(), id, after, limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			return got
		}
		if len(page) > limit {
			t.Fatalf("KeyRecords with limit %d returned %d records", limit, len(page))
		}
		for _, r := range page {
			if _, ok := got[r.Token]; ok {
				t.Fatalf("record %s listed twice", r.Token)
			}
			got[r.Token] = r
		}
		after = page[len(page)-1].Cursor
	}
}
