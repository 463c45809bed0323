package pgstore_test

import (
	"context"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tokenvault/tokenvault/internal/testpki"
	"github.com/tokenvault/tokenvault/vault/pgstore"
)

// TestTLSVerifyFull: TLS to the database is the DSN's (pgx). With
// sslmode=verify-full and sslrootcert the store connects over TLS to a
// server whose certificate chains to that CA and names the host; a
// certificate from another CA, or for another name, is refused.
func TestTLSVerifyFull(t *testing.T) {
	ctx := context.Background()
	_, db := open(t)
	dir := t.TempDir()
	ca := testpki.New(t, dir)
	cert, key := ca.Issue(t, "db", testpki.Leaf{Server: true, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	db.EnableTLS(t, cert, key)
	other := testpki.New(t, t.TempDir())

	withTLS := func(host, rootCA string) string {
		u, err := url.Parse(db.DSN)
		if err != nil {
			t.Fatal(err)
		}
		u.Host = host + ":" + u.Port()
		q := u.Query()
		q.Set("sslmode", "verify-full")
		q.Set("sslrootcert", rootCA)
		u.RawQuery = q.Encode()
		return u.String()
	}
	dsn := withTLS("127.0.0.1", ca.CAFile)
	s, err := pgstore.Open(ctx, dsn, pgstore.Options{})
	if err != nil {
		t.Fatalf("Open with verify-full: %v", err)
	}
	s.Close()
	// The connection is TLS, as the server sees it.
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var ssl bool
	if err := c.QueryRow(ctx, `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl); err != nil || !ssl {
		t.Fatalf("pg_stat_ssl.ssl = %v, %v", ssl, err)
	}
	for name, bad := range map[string]string{
		"another CA":   withTLS("127.0.0.1", other.CAFile),
		"another name": withTLS("localhost", ca.CAFile),
	} {
		_, err := pgstore.Open(ctx, bad, pgstore.Options{})
		if err == nil {
			t.Errorf("%s: Open succeeded", name)
		} else if !strings.Contains(err.Error(), "certificate") {
			t.Errorf("%s: %v, want a certificate error", name, err)
		}
	}
}
