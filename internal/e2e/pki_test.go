package e2e

import (
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tokenvault/tokenvault/client"
)

// dialTLS connects with the given client certificate (none if empty) and
// extra options (an API key).
func dialTLS(t *testing.T, addr, caFile, certFile, keyFile string, extra ...client.Option) *client.Client {
	t.Helper()
	cfg, err := client.LoadTLS(client.TLSFiles{CA: caFile, Cert: certFile, Key: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(addr, append([]client.Option{client.WithTLS(cfg)}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dialTLSRaw(t *testing.T, addr, caFile string) *grpc.ClientConn {
	t.Helper()
	cfg, err := client.LoadTLS(client.TLSFiles{CA: caFile})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
