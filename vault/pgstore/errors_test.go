package pgstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/tokenvault/tokenvault/vault"
)

// TestLostConnectionsAreUnavailable: when the server ends the store's
// connections (as a shutdown or failover does), the next statement fails
// with vault.ErrStoreUnavailable (UNAVAILABLE on the wire, not INTERNAL),
// and the one after it works again on a new connection; an unknown token
// stays ErrNotFound, not "unavailable".
func TestLostConnectionsAreUnavailable(t *testing.T) {
	ctx := context.Background()
	s, db := open(t)
	if _, err := s.Record(ctx, "no-such-token"); !errors.Is(err, vault.ErrNotFound) || errors.Is(err, vault.ErrStoreUnavailable) {
		t.Fatalf("unknown token: %v, want ErrNotFound only", err)
	}
	// The pool keeps its connections; the server ends them (SQLSTATE
	// 57P01, admin shutdown, then a closed socket).
	db.Exec(t, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	var unavailable int
	for range 3 {
		_, err := s.Record(ctx, "no-such-token")
		switch {
		case errors.Is(err, vault.ErrStoreUnavailable):
			unavailable++
		case !errors.Is(err, vault.ErrNotFound):
			t.Fatalf("after the connections were ended: %v, want ErrStoreUnavailable or ErrNotFound", err)
		}
	}
	if unavailable == 0 {
		t.Fatal("no statement met the ended connection: the test shows nothing")
	}
	if _, err := s.Record(ctx, "no-such-token"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("after reconnecting: %v, want ErrNotFound", err)
	}
}
