package auth

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
)

// CertIdentity names the owner of a verified client certificate: its URI
// SANs (SPIFFE ids and the like) and DNS SANs. The primary name is the
// first URI SAN, else the first DNS SAN. The subject common name is not
// used: it is deprecated for names and unconstrained by name constraints.
//
// Names are the SAN strings exactly as the certificate encodes them, and
// the policy compares them byte for byte. Not crypto/x509's parsed URLs:
// printing those normalises ("SPIFFE://x/a" becomes "spiffe://x/a", a
// trailing "#" goes), so certificates with different names would match one
// policy entry. A URI SAN in the spiffe scheme must moreover be a
// canonical SPIFFE id (see [checkSPIFFEID]), else the certificate is
// refused: a CA that issues "SPIFFE://…" or "spiffe://…/a/" issues names
// no SPIFFE implementation would, and nothing should rest on them.
func CertIdentity(cert *x509.Certificate) (Identity, error) {
	uris, err := rawURISANs(cert)
	if err != nil {
		return Identity{}, err
	}
	id := Identity{Method: MethodMTLS, DNSNames: cert.DNSNames, URIs: uris}
	for i, u := range uris {
		if u == "" {
			return Identity{}, fmt.Errorf("%w: client certificate URI SAN %d is empty", ErrUnauthenticated, i+1)
		}
		if !isSPIFFE(u) {
			continue
		}
		// The reason names what is wrong, never the SAN itself.
		if err := checkSPIFFEID(u); err != nil {
			return Identity{}, fmt.Errorf("%w: client certificate URI SAN %d is not a canonical SPIFFE id: %v", ErrUnauthenticated, i+1, err)
		}
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

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// rawURISANs returns the certificate's URI SANs as encoded (IA5Strings,
// context tag 6 of GeneralName, RFC 5280 4.2.1.6), in order. crypto/x509
// has already parsed the same extension into cert.URIs; the counts must
// agree.
func rawURISANs(cert *x509.Certificate) ([]string, error) {
	bad := fmt.Errorf("%w: client certificate subject alternative names do not parse", ErrUnauthenticated)
	var uris []string
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		var seq asn1.RawValue
		rest, err := asn1.Unmarshal(ext.Value, &seq)
		if err != nil || len(rest) > 0 || seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
			return nil, bad
		}
		for b := seq.Bytes; len(b) > 0; {
			var gn asn1.RawValue
			if b, err = asn1.Unmarshal(b, &gn); err != nil {
				return nil, bad
			}
			if gn.Class == asn1.ClassContextSpecific && gn.Tag == 6 && !gn.IsCompound {
				uris = append(uris, string(gn.Bytes))
			}
		}
	}
	if len(uris) != len(cert.URIs) {
		return nil, bad
	}
	return uris, nil
}

// isSPIFFE reports whether the URI s is in the spiffe scheme, in any case
// (a scheme is case-insensitive, so "SPIFFE:" claims to be one too).
func isSPIFFE(s string) bool {
	scheme, _, ok := strings.Cut(s, ":")
	return ok && strings.EqualFold(scheme, "spiffe")
}

// maxSPIFFEID is the SPIFFE specification's limit on an id's length.
const maxSPIFFEID = 2048

// checkSPIFFEID accepts only canonical SPIFFE ids (SPIFFE-ID specification,
// section 2): "spiffe://" in lower case, a trust domain of lower-case
// letters, digits, '.', '-' and '_', and a path of non-empty segments of
// letters, digits, '.', '-' and '_' other than "." and "..": no port, user
// info, query, fragment, percent-encoding, empty segment or trailing
// slash. Each such id has one spelling, so exact comparison is sound. The
// error says what is wrong without repeating the id.
func checkSPIFFEID(s string) error {
	const prefix = "spiffe://"
	if len(s) > maxSPIFFEID {
		return fmt.Errorf("longer than %d bytes", maxSPIFFEID)
	}
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return errors.New(`must start with "spiffe://" in lower case`)
	}
	td, path, _ := strings.Cut(rest, "/")
	if td == "" {
		return errors.New("empty trust domain")
	}
	for _, c := range []byte(td) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
		case c >= 'A' && c <= 'Z':
			return errors.New("trust domain has upper-case letters")
		default:
			return fmt.Errorf("trust domain has %s (only a-z, 0-9, '.', '-', '_')", describe(c))
		}
	}
	if len(rest) == len(td) {
		return nil // the trust domain's own id
	}
	for seg := range strings.SplitSeq(path, "/") {
		switch seg {
		case "":
			return errors.New("empty path segment (a trailing or doubled '/')")
		case ".", "..":
			return errors.New(`path segment "." or ".."`)
		}
		for _, c := range []byte(seg) {
			switch {
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
			default:
				return fmt.Errorf("path has %s (only letters, digits, '.', '-', '_')", describe(c))
			}
		}
	}
	return nil
}

// describe names a character that has no place in a SPIFFE id.
func describe(c byte) string {
	switch c {
	case ':':
		return "a ':' (a port?)"
	case '@':
		return "an '@' (user info?)"
	case '?':
		return "a '?' (a query)"
	case '#':
		return "a '#' (a fragment)"
	case '%':
		return "a '%' (percent-encoding)"
	}
	if c < 0x20 || c >= 0x7f {
		return "a control or non-ASCII byte"
	}
	return fmt.Sprintf("a %q", rune(c))
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
