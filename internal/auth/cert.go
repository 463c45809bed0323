package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
)

// CertIdentity names the owner of a verified client certificate: its URI
// SANs (SPIFFE ids and the like) and DNS SANs. The primary name is the
// first URI SAN, else the first DNS SAN. The subject common name is not
// used: it is deprecated for names and unconstrained by name constraints.
func CertIdentity(cert *x509.Certificate) (Identity, error) {
	id := Identity{Method: MethodMTLS, DNSNames: cert.DNSNames}
	for _, u := range cert.URIs {
		id.URIs = append(id.URIs, u.String())
	}
	switch {
	case len(id.URIs) > 0:
		id.Name = id.URIs[0]
	case len(id.DNSNames) > 0:
		id.Name = id.DNSNames[0]
	default:
		return Identity{}, fmt.Errorf("%w: client certificate has no URI or DNS subject alternative name", ErrUnauthenticated)
	}
	return id, nil
}

// TLSFiles names the server's TLS material (PEM files).
type TLSFiles struct {
	Cert string `yaml:"cert_file"`
	Key  string `yaml:"key_file"`
	// ClientCA verifies client certificates (mutual TLS). Empty: clients
	// are not asked for certificates and must use API keys.
	ClientCA string `yaml:"client_ca_file"`
	// RequireClientCert refuses connections without a client certificate
	// (API keys are then refused at the TLS layer already).
	RequireClientCert bool `yaml:"require_client_cert"`
}

// ServerTLS serves TLS from files that can be reloaded (certificate
// renewal, CA rotation) without a restart: Reload swaps in new material
// and new handshakes use it.
type ServerTLS struct {
	files TLSFiles
	cur   atomic.Pointer[tls.Config]
}

// NewServerTLS loads the files.
func NewServerTLS(files TLSFiles) (*ServerTLS, error) {
	s := &ServerTLS{files: files}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload re-reads the files; on error the old material stays in use.
func (s *ServerTLS) Reload() error {
	cert, err := tls.LoadX509KeyPair(s.files.Cert, s.files.Key)
	if err != nil {
		return fmt.Errorf("tls: loading cert_file/key_file: %w", err)
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		// TLS 1.3 only: every gRPC stack in use supports it, and it
		// leaves no weak cipher suites to configure.
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{"h2"},
	}
	if s.files.ClientCA != "" {
		pool, err := LoadCertPool(s.files.ClientCA)
		if err != nil {
			return fmt.Errorf("tls: client_ca_file: %w", err)
		}
		cfg.ClientCAs = pool
		// Without RequireClientCert, callers without a certificate may
		// still come in with an API key; a certificate that is presented
		// must verify (wrong CA, expired: the handshake fails).
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if s.files.RequireClientCert {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	s.cur.Store(cfg)
	return nil
}

// Config returns a tls.Config whose handshakes use the current material.
func (s *ServerTLS) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{"h2"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.cur.Load(), nil
		},
	}
}

// LoadCertPool reads PEM certificates into a pool.
func LoadCertPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no PEM certificate found")
	}
	return pool, nil
}
