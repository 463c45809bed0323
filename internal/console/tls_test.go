package console_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/internal/auth"
	"github.com/tokenvault/tokenvault/internal/config"
	"github.com/tokenvault/tokenvault/internal/testpki"
)

// TestTLS: with auth.tls the console serves TLS with the server's
// certificate, its cookie is Secure, and a verified client certificate of
// a policy identity signs in.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.New(t, filepath.Join(dir, "pki"))
	srvCert, srvKey := ca.Issue(t, "server", testpki.Leaf{Server: true, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	offCert, offKey := ca.Issue(t, "officer", testpki.Leaf{URIs: []string{"spiffe://test.example/officer"}})
	pem, err := os.ReadFile(ca.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	setupTLS = &tls.Config{RootCAs: roots}
	t.Cleanup(func() { setupTLS = nil })
	s := startServer(t, func(c *config.Config) {
		c.Auth.TLS = auth.TLSFiles{Cert: srvCert, Key: srvKey, ClientCA: ca.CAFile}
	})
	s.seed(t, "frank", client.Field{Kind: "email", Value: "frank@example.com"})
	base := strings.Replace(s.base, "http://", "https://", 1)

	// Plaintext is not served.
	if resp, err := http.Get(s.base + "/signin"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plaintext HTTP to the TLS console: %d", resp.StatusCode)
		}
	}

	cert, err := tls.LoadX509KeyPair(offCert, offKey)
	if err != nil {
		t.Fatal(err)
	}
	b := newTLSBrowser(t, base, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}})
	p := b.get("/signin")
	if !strings.Contains(p.body, "spiffe://test.example/officer") || !strings.Contains(p.body, `value="cert"`) {
		t.Fatalf("sign-in page does not offer the certificate: %d %.400s", p.code, p.body)
	}
	if p.header.Get("Strict-Transport-Security") == "" {
		t.Error("no Strict-Transport-Security under TLS")
	}
	p = b.do("POST", "/signin", url.Values{"csrf": {csrfOf(t, p)}, "method": {"cert"}})
	if p.code != http.StatusSeeOther {
		t.Fatalf("certificate sign-in: %d %s", p.code, p.body)
	}
	secure := false
	for _, c := range (&http.Response{Header: p.header}).Cookies() {
		if c.Name == "tv_console" {
			secure = c.Secure && c.HttpOnly && c.SameSite == http.SameSiteStrictMode
		}
	}
	if !secure {
		t.Fatal("the session cookie is not Secure, HttpOnly and SameSite=Strict under TLS")
	}
	csrf := csrfOf(t, b.get("/lookup"))
	p = b.open(csrf, "frank")
	if !strings.Contains(p.body, "spiffe://test.example/officer") || !strings.Contains(p.body, `action="/reveal"`) {
		t.Fatalf("the officer's certificate session: %d %.400s", p.code, p.body)
	}

	// Without a certificate, an API key still signs in (as for gRPC
	// without require_client_cert).
	b2 := newTLSBrowser(t, base, &tls.Config{RootCAs: roots})
	b2.signIn(supportKey)
}
