package console_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/internal/audit"
)

const wantCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"

func TestSecurityHeaders(t *testing.T) {
	s := startServer(t)
	s.seed(t, "alice", client.Field{Kind: "email", Value: "alice@example.com"})
	b := newBrowser(t, s.base)
	check := func(name string, p page) {
		t.Helper()
		if got := p.header.Get("Content-Security-Policy"); got != wantCSP {
			t.Errorf("%s: CSP %q, want %q", name, got, wantCSP)
		}
		if got := p.header.Get("X-Frame-Options"); got != "DENY" {
			t.Errorf("%s: X-Frame-Options %q", name, got)
		}
		if got := p.header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store", name, got)
		}
	}
	check("sign-in", b.get("/signin"))
	// Every response: a redirect of a visitor not signed in, an asset.
	if p := newBrowser(t, s.base).get("/"); p.code != http.StatusSeeOther {
		t.Fatalf("GET / without a session: %d", p.code)
	} else {
		check("redirect to sign-in", p)
	}
	check("stylesheet", b.get("/static/console.css"))
	csrf := b.signIn(officerKey)
	p := b.open(csrf, "alice")
	check("subject", p)
	if strings.Contains(p.body, "<script>") || strings.Contains(p.body, " style=") || strings.Contains(p.body, "onclick") {
		t.Error("the page has inline script or style, which the CSP refuses")
	}
	tok := tokenOnPage(t, p)
	check("reveal", b.do("POST", "/reveal", url.Values{"csrf": {csrf}, "token": {tok}, "purpose": {"support-call"}}))
}

func TestSessionCookieFlags(t *testing.T) {
	s := startServer(t)
	b := newBrowser(t, s.base)
	p := b.get("/signin")
	p2 := b.do("POST", "/signin", url.Values{"csrf": {csrfOf(t, p)}, "api_key": {officerKey}})
	var found bool
	for _, c := range (&http.Response{Header: p2.header}).Cookies() {
		if c.Name != "tv_console" {
			continue
		}
		found = true
		if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
			t.Errorf("session cookie: HttpOnly %v SameSite %v Path %q", c.HttpOnly, c.SameSite, c.Path)
		}
		if c.Secure {
			t.Error("Secure on a plaintext loopback console: the browser would never send it back")
		}
	}
	if !found {
		t.Fatalf("no session cookie after sign-in (%d)", p2.code)
	}
}

func TestSignInRefused(t *testing.T) {
	s := startServer(t)
	b := newBrowser(t, s.base)
	p := b.get("/signin")
	bad := "tvk_wrong_key_0123456789abcdef0123456789ab"
	p = b.do("POST", "/signin", url.Values{"csrf": {csrfOf(t, p)}, "api_key": {bad}})
	if p.code != http.StatusUnauthorized {
		t.Fatalf("wrong key: %d, want 401", p.code)
	}
	if strings.Contains(s.logs.String(), bad) || strings.Contains(p.body, bad) {
		t.Error("the refused key is in the log or on the page")
	}
	// Without the sign-in form's token (a forged sign-in form elsewhere).
	b2 := newBrowser(t, s.base)
	p = b2.do("POST", "/signin", url.Values{"api_key": {officerKey}})
	if p.code != http.StatusForbidden {
		t.Fatalf("sign-in without the form's CSRF token: %d, want 403", p.code)
	}
	// Not signed in: pages send you to sign in, actions are refused.
	if p := b2.get("/subject"); p.code != http.StatusSeeOther || p.header.Get("Location") != "/signin" {
		t.Errorf("GET /subject signed out: %d %q", p.code, p.header.Get("Location"))
	}
	if p := b2.do("POST", "/restrict", url.Values{}); p.code != http.StatusUnauthorized {
		t.Errorf("POST /restrict signed out: %d, want 401", p.code)
	}
}

func TestCSRFRequired(t *testing.T) {
	s := startServer(t)
	s.seed(t, "bob", client.Field{Kind: "email", Value: "bob@example.com"})
	b := newBrowser(t, s.base)
	csrf := b.signIn(officerKey)
	b.open(csrf, "bob")
	for name, form := range map[string]url.Values{
		"none":  {},
		"wrong": {"csrf": {strings.Repeat("A", len(csrf))}},
	} {
		if p := b.do("POST", "/restrict", form); p.code != http.StatusForbidden {
			t.Errorf("restrict with %s CSRF token: %d, want 403", name, p.code)
		}
	}
	if p := b.get("/subject"); !strings.Contains(p.body, "not restricted") {
		t.Fatal("a request without the CSRF token restricted the subject")
	}
	// A cross-site request is refused even with the token.
	req, _ := http.NewRequest("POST", s.base+"/restrict", strings.NewReader(url.Values{"csrf": {csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := b.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST: %d, want 403", resp.StatusCode)
	}
	if p := b.do("POST", "/restrict", url.Values{"csrf": {csrf}}); p.code != http.StatusSeeOther {
		t.Fatalf("restrict with the token: %d %s", p.code, p.body)
	}
	if p := b.get("/subject"); !strings.Contains(p.body, "restricted since") {
		t.Fatal("restrict with the token did not restrict")
	}
}

// TestSupportCannotReveal: a mask-only identity sees masked values and no
// reveal control, and a reveal it forges is refused by the guard (and
// audited as refused), exactly as its gRPC call would be.
func TestSupportCannotReveal(t *testing.T) {
	s := startServer(t)
	toks := s.seed(t, "carol", client.Field{Kind: "email", Value: "carol@example.com"})
	b := newBrowser(t, s.base)
	csrf := b.signIn(supportKey)
	p := b.open(csrf, "carol")
	if p.code != http.StatusOK || !strings.Contains(p.body, "c****@example.com") && !strings.Contains(p.body, "@example.com") {
		t.Fatalf("support's subject page: %d %s", p.code, p.body)
	}
	if strings.Contains(p.body, "carol@example.com") {
		t.Fatal("support's page shows the value")
	}
	for _, c := range []string{`action="/reveal"`, `action="/export"`, `action="/erase"`, `action="/rectify"`, `href="/erase"`} {
		if strings.Contains(p.body, c) {
			t.Errorf("support's page has the control %s", c)
		}
	}
	if strings.Contains(p.body, toks[0]) {
		t.Error("support's page holds the raw token")
	}
	// Looking a subject up is on record, naming the subject (by its hash),
	// though no item was refused.
	s.waitEntry(t, "support's listing", func(e audit.Entry) bool {
		return e.Caller == "api_key:support" && e.Op == "mask" && e.Outcome == "OK" &&
			e.SubjectHash == s.subjectHash(t, "carol")
	})
	p = b.do("POST", "/reveal", url.Values{"csrf": {csrf}, "token": {toks[0]}, "purpose": {"support-call"}})
	if p.code != http.StatusForbidden || strings.Contains(p.body, "carol@example.com") {
		t.Fatalf("forged reveal: %d %s", p.code, p.body)
	}
	s.waitEntry(t, "support's refused reveal", func(e audit.Entry) bool {
		return e.Caller == "api_key:support" && e.Op == "detokenize" && e.Outcome == "PermissionDenied"
	})
	for path, form := range map[string]url.Values{
		"/export": {"purpose": {"dsar"}}, "/erase": {"confirm": {"carol"}}, "/restrict": {},
		"/rectify": {"token": {toks[0]}, "value": {"x@example.com"}},
	} {
		form.Set("csrf", csrf)
		if p := b.do("POST", path, form); p.code != http.StatusForbidden {
			t.Errorf("support POST %s: %d, want 403", path, p.code)
		}
	}
}

// TestManyTokens: a subject with 10,000 tokens pages through them.
func TestManyTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("tokenizes 10,000 values")
	}
	s := startServer(t)
	const n = 10_000
	for i := 0; i < n; i += 500 {
		fields := make([]client.Field, 500)
		for j := range fields {
			fields[j] = client.Field{Kind: "email", Value: fmt.Sprintf("u%05d@example.com", i+j)}
		}
		s.seed(t, "big", fields...)
	}
	b := newBrowser(t, s.base)
	csrf := b.signIn(officerKey)
	p := b.open(csrf, "big")
	seen := map[string]bool{}
	pages := 0
	for {
		pages++
		toks := tokensOnPage(p)
		if len(toks) == 0 || len(toks) > 50 {
			t.Fatalf("page %d has %d tokens", pages, len(toks))
		}
		for _, tk := range toks {
			if seen[tk] {
				t.Fatalf("token listed twice (page %d)", pages)
			}
			seen[tk] = true
		}
		if !hasNextPage(p) || pages == 4 {
			break
		}
		// The cursor stays in the session: the page holds no token for it.
		p = b.do("POST", "/subject/page", url.Values{"csrf": {csrf}})
		if p.code != http.StatusOK {
			t.Fatalf("page %d: %d", pages+1, p.code)
		}
	}
	if pages != 4 || len(seen) != 200 {
		t.Fatalf("%d pages, %d tokens; want 4 full pages", pages, len(seen))
	}
}

// TestSignInThrottled: after a burst of failed sign-ins from one address,
// further attempts, even with the right key, are refused with 429 and a
// Retry-After until the bucket refills; other addresses are not affected.
func TestSignInThrottled(t *testing.T) {
	s := startServer(t)
	b := newBrowser(t, s.base)
	bad := "tvk_wrong_key_0123456789abcdef0123456789ab"
	for i := 0; i < 5; i++ { // the burst (throttle.go)
		p := b.get("/signin")
		if p = b.do("POST", "/signin", url.Values{"csrf": {csrfOf(t, p)}, "api_key": {bad}}); p.code != http.StatusUnauthorized {
			t.Fatalf("failed sign-in %d: %d, want 401", i+1, p.code)
		}
	}
	p := b.get("/signin")
	p = b.do("POST", "/signin", url.Values{"csrf": {csrfOf(t, p)}, "api_key": {officerKey}})
	if p.code != http.StatusTooManyRequests || p.header.Get("Retry-After") == "" {
		t.Fatalf("sign-in after 5 failures: %d (Retry-After %q), want 429 with Retry-After", p.code, p.header.Get("Retry-After"))
	}
	if !strings.Contains(s.logs.String(), "console sign-in throttled") {
		t.Error("the throttled sign-in is not logged")
	}
}
