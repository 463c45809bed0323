package loadgen

import (
	"errors"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tokenvault/tokenvault/client"
)

// ClientTLS configures the connection to tokenvault (and a remote echo).
type ClientTLS struct {
	// Enabled turns TLS on; it is implied by any of the files below.
	Enabled bool
	CAFile  string // PEM CA bundle to verify the server (default: system roots)
	// CertFile and KeyFile are the client certificate for mTLS.
	CertFile, KeyFile string
	// ServerName overrides the name verified in the server's certificate.
	ServerName string
}

// On reports whether TLS is used.
func (c ClientTLS) On() bool {
	return c.Enabled || c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" || c.ServerName != ""
}

// DialOptions builds the gRPC dial options: TLS or plaintext, and the API
// key sent on every call as "authorization: Bearer <key>". A key is never
// sent in plaintext to a non-loopback address.
func DialOptions(addr string, c ClientTLS, apiKey string) ([]grpc.DialOption, error) {
	var opts []grpc.DialOption
	if c.On() {
		if (c.CertFile == "") != (c.KeyFile == "") {
			return nil, errors.New("-cert and -key: give both for mTLS, or neither")
		}
		cfg, err := client.LoadTLS(client.TLSFiles{CA: c.CAFile, Cert: c.CertFile, Key: c.KeyFile, ServerName: c.ServerName})
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	} else {
		if apiKey != "" && !loopback(addr) {
			return nil, fmt.Errorf("refusing to send the API key in plaintext to non-loopback %s: use -tls (with -ca)", addr)
		}
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if apiKey != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(client.APIKeyCredentials(apiKey)))
	}
	return opts, nil
}

func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
