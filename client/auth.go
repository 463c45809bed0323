package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// TLSFiles names PEM files for a TLS connection.
type TLSFiles struct {
	// CA verifies the server's certificate (empty: the system roots).
	CA string
	// Cert and Key: a client certificate, for mutual TLS.
	Cert, Key string
	// ServerName overrides the name checked in the server's certificate
	// (default: the host of the address dialed).
	ServerName string
}

// LoadTLS builds a client tls.Config from files.
func LoadTLS(f TLSFiles) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, ServerName: f.ServerName}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("tokenvault client: CA file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tokenvault client: CA file %s: no PEM certificate", f.CA)
		}
	}
	switch {
	case f.Cert != "" && f.Key != "":
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("tokenvault client: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case f.Cert != "" || f.Key != "":
		return nil, errors.New("tokenvault client: a client certificate needs both the certificate and the key file")
	}
	return cfg, nil
}

// WithTLS connects over TLS (mutual TLS when cfg has a client
// certificate). Without it, Dial connects in plaintext, which the server
// accepts only on loopback.
func WithTLS(cfg *tls.Config) Option {
	return WithDialOptions(grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
}

// WithAPIKey sends key on every call as "authorization: Bearer <key>".
// The key is sent only over TLS, or in plaintext to a loopback address
// (dev); any other call fails before anything is sent.
func WithAPIKey(key string) Option {
	return WithDialOptions(grpc.WithPerRPCCredentials(APIKeyCredentials(key)))
}

// APIKeyCredentials are the per-call credentials behind WithAPIKey, for
// callers that build their own grpc.ClientConn (the load generator).
func APIKeyCredentials(key string) credentials.PerRPCCredentials { return apiKey(key) }

type apiKey string

var _ credentials.PerRPCCredentials = apiKey("")

func (k apiKey) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	ri, ok := credentials.RequestInfoFromContext(ctx)
	if !ok || credentials.CheckSecurityLevel(ri.AuthInfo, credentials.PrivacyAndIntegrity) != nil {
		if len(uri) == 0 || !loopbackURI(uri[0]) {
			return nil, errors.New("tokenvault client: refusing to send the API key over a plaintext connection to a non-loopback address; use WithTLS")
		}
	}
	return map[string]string{"authorization": "Bearer " + string(k)}, nil
}

// RequireTransportSecurity is false so that the key works in plaintext on
// loopback; GetRequestMetadata enforces the rest.
func (apiKey) RequireTransportSecurity() bool { return false }

func loopbackURI(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
