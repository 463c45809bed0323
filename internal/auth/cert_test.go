package auth_test

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tokenvault/tokenvault/internal/auth"
	"github.com/tokenvault/tokenvault/internal/testpki"
)

func issue(t *testing.T, ca *testpki.CA, o testpki.Leaf) *x509.Certificate {
	t.Helper()
	certFile, _ := ca.Issue(t, "client", o)
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

const paymentsID = "spiffe://example.org/ns/shop/sa/payments"

// TestCertIdentityRawSANs: identities are the SANs as encoded, and a
// certificate whose SPIFFE id is not canonical is refused, so that no
// spelling but the canonical one reaches a policy entry (security review
// item 7: "SPIFFE://…/payments" and "spiffe://…/payments#" both matched
// spiffe://…/payments after URL normalisation).
func TestCertIdentityRawSANs(t *testing.T) {
	ca := testpki.New(t, filepath.Join(t.TempDir(), "pki"))
	p, err := auth.ParsePolicy([]byte("version: 1\nidentities:\n" +
		"  - uri: " + paymentsID + "\n    roles: [payments]\n" +
		"  - uri: https://svc.example/payments\n    roles: [payments]\n" +
		"  - dns: payments.example.org\n    roles: [payments]\n" +
		"roles:\n  payments:\n    - operations: [mask]\n"))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("canonical", func(t *testing.T) {
		id, err := auth.CertIdentity(issue(t, ca, testpki.Leaf{RawURIs: []string{paymentsID}}))
		if err != nil || id.Name != paymentsID || !reflect.DeepEqual(p.Roles(id), []string{"payments"}) {
			t.Fatalf("got %+v, roles %v, %v", id, p.Roles(id), err)
		}
		// A certificate made by crypto/x509 from parsed URLs, as most
		// CAs' are, has the same identity.
		id2, err := auth.CertIdentity(issue(t, ca, testpki.Leaf{URIs: []string{paymentsID}}))
		if err != nil || !reflect.DeepEqual(id, id2) {
			t.Fatalf("got %+v, %v; want %+v", id2, err, id)
		}
	})

	for name, san := range map[string]string{
		"upper-case scheme":       "SPIFFE://example.org/ns/shop/sa/payments",
		"mixed-case scheme":       "Spiffe://example.org/ns/shop/sa/payments",
		"empty fragment":          paymentsID + "#",
		"fragment":                paymentsID + "#x",
		"empty query":             paymentsID + "?",
		"trailing slash":          paymentsID + "/",
		"doubled slash":           "spiffe://example.org/ns/shop//sa/payments",
		"dot segment":             "spiffe://example.org/ns/shop/sa/./payments",
		"dot-dot segment":         "spiffe://example.org/ns/shop/sa/x/../payments",
		"upper-case trust domain": "spiffe://Example.org/ns/shop/sa/payments",
		"port":                    "spiffe://example.org:443/ns/shop/sa/payments",
		"user info":               "spiffe://u@example.org/ns/shop/sa/payments",
		"percent-encoding":        "spiffe://example.org/ns/shop/sa/pay%6Dents",
		"no trust domain":         "spiffe:///ns/shop/sa/payments",
		"not an authority":        "spiffe:example.org/ns/shop/sa/payments",
	} {
		t.Run(name, func(t *testing.T) {
			id, err := auth.CertIdentity(issue(t, ca, testpki.Leaf{RawURIs: []string{san}}))
			if !errors.Is(err, auth.ErrUnauthenticated) {
				t.Fatalf("%q accepted as %+v (roles %v), err %v", san, id, p.Roles(id), err)
			}
			if msg := err.Error(); strings.Contains(msg, "example.org") || !strings.Contains(msg, "URI SAN 1 is not a canonical SPIFFE id") {
				t.Fatalf("error should say what is wrong without the SAN: %v", err)
			}
		})
	}

	t.Run("a bad SPIFFE id after a good name", func(t *testing.T) {
		_, err := auth.CertIdentity(issue(t, ca, testpki.Leaf{DNS: []string{"payments.example.org"}, RawURIs: []string{"urn:x", "SPIFFE://example.org/x"}}))
		if !errors.Is(err, auth.ErrUnauthenticated) || !strings.Contains(err.Error(), "URI SAN 2") {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("other schemes compare raw", func(t *testing.T) {
		id, err := auth.CertIdentity(issue(t, ca, testpki.Leaf{RawURIs: []string{"HTTPS://svc.example/payments"}}))
		if err != nil || !reflect.DeepEqual(id.URIs, []string{"HTTPS://svc.example/payments"}) {
			t.Fatalf("got %+v, %v", id, err)
		}
		if roles := p.Roles(id); len(roles) != 0 {
			t.Fatalf("HTTPS://svc.example/payments matched https://svc.example/payments: roles %v", roles)
		}
	})

	t.Run("DNS names compare raw", func(t *testing.T) {
		id, err := auth.CertIdentity(issue(t, ca, testpki.Leaf{DNS: []string{"Payments.example.org"}}))
		if err != nil || id.Name != "Payments.example.org" || len(p.Roles(id)) != 0 {
			t.Fatalf("got %+v, roles %v, %v", id, p.Roles(id), err)
		}
		id, err = auth.CertIdentity(issue(t, ca, testpki.Leaf{DNS: []string{"payments.example.org"}}))
		if err != nil || !reflect.DeepEqual(p.Roles(id), []string{"payments"}) {
			t.Fatalf("got %+v, roles %v, %v", id, p.Roles(id), err)
		}
	})

	t.Run("no names", func(t *testing.T) {
		if _, err := auth.CertIdentity(issue(t, ca, testpki.Leaf{})); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatalf("got %v", err)
		}
	})
}

// TestPolicyRejectsNonCanonicalSPIFFE: a policy entry that no certificate
// could match is an error naming the entry, not a silent dead rule.
func TestPolicyRejectsNonCanonicalSPIFFE(t *testing.T) {
	const roles = "roles:\n  r:\n    - operations: [mask]\n"
	for name, uri := range map[string]string{
		"upper-case scheme":       "SPIFFE://example.org/ns/shop/sa/payments",
		"empty fragment":          "'" + paymentsID + "#'",
		"trailing slash":          paymentsID + "/",
		"upper-case trust domain": "spiffe://EXAMPLE.org/a",
		"query":                   paymentsID + "?x=1",
		"port":                    "spiffe://example.org:8443/a",
		"dot-dot segment":         "spiffe://example.org/a/../b",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := auth.ParsePolicy([]byte("version: 1\nidentities:\n  - uri: spiffe://example.org/ok\n    roles: [r]\n  - uri: " + uri + "\n    roles: [r]\n" + roles))
			if !errors.Is(err, auth.ErrPolicy) || !strings.Contains(err.Error(), "identities[1].uri: not a canonical SPIFFE id") {
				t.Fatalf("got %v", err)
			}
		})
	}
	for _, uri := range []string{paymentsID, "spiffe://example.org", "spiffe://td_1.example-2/A.b-c_d/0", "https://Svc.example/x#y", "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"} {
		if _, err := auth.ParsePolicy([]byte("version: 1\nidentities:\n  - uri: '" + uri + "'\n    roles: [r]\n" + roles)); err != nil {
			t.Errorf("%s refused: %v", uri, err)
		}
	}
}
