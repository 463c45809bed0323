package loadgen

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
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
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
		if c.CAFile != "" {
			pem, err := os.ReadFile(c.CAFile)
			if err != nil {
				return nil, fmt.Errorf("-ca: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("-ca: no PEM certificate in %s", c.CAFile)
			}
		}
		if (c.CertFile == "") != (c.KeyFile == "") {
			return nil, errors.New("-cert and -key: give both for mTLS, or neither")
		}
		if c.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("-cert/-key: %w", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	} else {
		if apiKey != "" && !loopback(addr) {
			return nil, fmt.Errorf("refusing to send the API key in plaintext to non-loopback %s: use -tls (with -ca)", addr)
		}
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if apiKey != "" {
		md := metadata.Pairs("authorization", "Bearer "+apiKey)
		opts = append(opts, grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, o ...grpc.CallOption) error {
			return invoker(metadata.NewOutgoingContext(ctx, md), method, req, reply, cc, o...)
		}))
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
