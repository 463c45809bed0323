package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/internal/audit"
	"github.com/tokenvault/tokenvault/internal/config"
)

// TestRectifyRestrict: rectify one value, restrict and lift the
// restriction; each is the gRPC operation, audited under the officer.
func TestRectifyRestrict(t *testing.T) {
	s := startServer(t)
	s.seed(t, "gina", client.Field{Kind: "email", Value: "gina@old.example"})
	b := newBrowser(t, s.base)
	csrf := b.signIn(officerKey)
	tok := tokenOnPage(t, b.open(csrf, "gina"))

	// Another domain is another address: the token keeps the domain, so
	// the page says to tokenize it instead, and nothing changes.
	if p := b.do("POST", "/rectify", url.Values{"csrf": {csrf}, "token": {tok}, "value": {"gina@other.example"}}); p.code != http.StatusBadRequest ||
		!strings.Contains(p.body, "email tokens keep the domain") || strings.Contains(p.body, "other.example") {
		t.Fatalf("rectify to another domain: %d %.400s", p.code, p.body)
	}
	if p := b.do("POST", "/rectify", url.Values{"csrf": {csrf}, "token": {tok}, "value": {"gina.new@old.example"}}); p.code != http.StatusSeeOther {
		t.Fatalf("rectify: %d %s", p.code, p.body)
	}
	p := b.do("POST", "/reveal", url.Values{"csrf": {csrf}, "token": {tok}, "purpose": {"dsar"}})
	if p.code != http.StatusOK || !strings.Contains(p.body, "gina.new@old.example") {
		t.Fatalf("reveal after rectify: %d %.300s", p.code, p.body)
	}
	s.waitEntry(t, "the rectification", func(e audit.Entry) bool {
		return e.Caller == "api_key:officer" && e.Op == "rectify" && e.SubjectHash == s.subjectHash(t, "gina") && e.Outcome == "OK"
	})

	if p := b.do("POST", "/restrict", url.Values{"csrf": {csrf}}); p.code != http.StatusSeeOther {
		t.Fatalf("restrict: %d", p.code)
	}
	// Restricted: reveals are refused (as over gRPC), the page says so.
	p = b.do("POST", "/reveal", url.Values{"csrf": {csrf}, "token": {tok}, "purpose": {"dsar"}})
	if p.code == http.StatusOK || strings.Contains(p.body, "gina.new@old.example") {
		t.Fatalf("reveal of a restricted subject: %d %.300s", p.code, p.body)
	}
	if p := b.get("/subject"); !strings.Contains(p.body, "restricted since") || !strings.Contains(p.body, `action="/unrestrict"`) {
		t.Fatal("the page does not show the restriction")
	}
	if p := b.do("POST", "/unrestrict", url.Values{"csrf": {csrf}}); p.code != http.StatusSeeOther {
		t.Fatalf("unrestrict: %d", p.code)
	}
	if p := b.get("/subject"); !strings.Contains(p.body, "not restricted") {
		t.Fatal("the restriction was not lifted")
	}
	for _, op := range []string{"restrict"} {
		s.waitEntry(t, op, func(e audit.Entry) bool {
			return e.Caller == "api_key:officer" && e.Op == op && e.SubjectHash == s.subjectHash(t, "gina") && e.Outcome == "OK" &&
				e.Method == "/tokenvault.v1.TokenVault/UnrestrictSubject"
		})
	}

	// Key status: the officer has admin in this policy; support does not.
	if p := b.get("/keys"); p.code != http.StatusOK || !strings.Contains(p.body, `id="provider">local`) {
		t.Fatalf("key status: %d %.300s", p.code, p.body)
	}
	sup := newBrowser(t, s.base)
	sup.signIn(supportKey)
	if p := sup.get("/keys"); p.code != http.StatusForbidden {
		t.Fatalf("support's key status: %d", p.code)
	}
}

// TestDevMode: without a policy (loopback dev mode, as for gRPC) the
// console signs in anonymously and allows everything.
func TestDevMode(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.Auth.PolicyFile = "" })
	s.seed(t, "hank", client.Field{Kind: "email", Value: "hank@example.com"})
	b := newBrowser(t, s.base)
	csrf := b.signIn("")
	p := b.open(csrf, "hank")
	if !strings.Contains(p.body, "anonymous") || !strings.Contains(p.body, `action="/reveal"`) {
		t.Fatalf("dev mode page: %.400s", p.body)
	}
}
