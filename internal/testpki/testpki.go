// Package testpki makes a throwaway PKI for tests with crypto/x509: a CA,
// server and client certificates with URI/DNS/IP SANs, written as PEM
// files the way users configure them.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a test certificate authority; CAFile is its PEM certificate.
type CA struct {
	dir    string
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	CAFile string
}

// New makes a CA in dir.
func New(t testing.TB, dir string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tokenvault test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := &CA{dir: dir, caCert: cert, caKey: key, CAFile: filepath.Join(dir, "ca.pem")}
	writePEM(t, p.CAFile, "CERTIFICATE", der)
	return p
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Leaf describes a certificate to issue.
type Leaf struct {
	URIs []string
	// RawURIs are URI SANs written byte for byte as given, after URIs.
	// crypto/x509 writes parsed URLs, which normalises some names
	// ("SPIFFE://…" becomes "spiffe://…"); tests of such names need these.
	RawURIs  []string
	DNS      []string
	IPs      []net.IP
	Server   bool      // a server certificate (else a client one)
	NotAfter time.Time // zero: in a day
}

var serial atomic.Int64

// Issue writes name.pem and name-key.pem and returns their paths.
func (p *CA) Issue(t testing.TB, name string, o Leaf) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(100 + serial.Add(1)), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: o.NotAfter,
		DNSNames: o.DNS, IPAddresses: o.IPs, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	}
	if o.Server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	for _, u := range o.URIs {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	if len(o.RawURIs) > 0 {
		tmpl.ExtraExtensions = []pkix.Extension{rawSANs(t, o)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", kder)
	return certFile, keyFile
}

// rawSANs encodes o's names as a subjectAltName extension (RFC 5280
// 4.2.1.6), URIs exactly as given; crypto/x509 then uses it instead of
// encoding the template's names itself.
func rawSANs(t testing.TB, o Leaf) pkix.Extension {
	t.Helper()
	var names []asn1.RawValue
	add := func(tag int, b []byte) {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tag, Bytes: b})
	}
	for _, d := range o.DNS {
		add(2, []byte(d))
	}
	for _, ip := range o.IPs {
		if ip4 := ip.To4(); ip4 != nil {
			ip = ip4
		}
		add(7, ip)
	}
	for _, u := range append(slices.Clone(o.URIs), o.RawURIs...) {
		add(6, []byte(u))
	}
	der, err := asn1.Marshal(names)
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: der}
}
