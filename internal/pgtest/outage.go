package pgtest

import (
	"context"
	"testing"
	"time"
)

// Refuse makes the database unreachable, as a stopped server is to its
// clients, without stopping the server the other tests share: new
// connections to it are refused (ALLOW_CONNECTIONS false) and the open
// ones are terminated (pg_terminate_backend). The returned function lets
// connections in again (also run at cleanup).
func (db *DB) Refuse(t testing.TB) (restore func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := db.srv.exec(ctx, "ALTER DATABASE "+db.Name+" ALLOW_CONNECTIONS false"); err != nil {
		t.Fatalf("pgtest: refusing connections: %v", err)
	}
	if err := db.srv.exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '"+db.Name+"'"); err != nil {
		t.Fatalf("pgtest: terminating connections: %v", err)
	}
	done := false
	restore = func() {
		if done {
			return
		}
		done = true
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := db.srv.exec(ctx, "ALTER DATABASE "+db.Name+" ALLOW_CONNECTIONS true"); err != nil {
			t.Errorf("pgtest: allowing connections again: %v", err)
		}
	}
	t.Cleanup(restore)
	return restore
}

// Terminate ends every open connection to the database
// (pg_terminate_backend), as a server restart or a failover does to its
// clients; new connections are accepted.
func (db *DB) Terminate(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := db.srv.exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '"+db.Name+"'"); err != nil {
		t.Fatalf("pgtest: terminating connections: %v", err)
	}
}
