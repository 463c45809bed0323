package console_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/internal/app"
	"github.com/tokenvault/tokenvault/internal/audit"
	"github.com/tokenvault/tokenvault/internal/auth"
	"github.com/tokenvault/tokenvault/internal/config"
)

// The console's tests run a real server (badger store, age keyring, the
// policy below) through internal/app, as users run it, with the console
// on a loopback port.

// API keys of the test identities (fixed: they are test fixtures).
const (
	officerKey = "tvk_officer_0123456789abcdef0123456789abcdef"
	supportKey = "tvk_support_0123456789abcdef0123456789abcdef"
	setupKey   = "tvk_setup_0123456789abcdef0123456789abcdef0"
)

const testPolicy = `version: 1
identities:
  - api_key: officer
    roles: [privacy-officer]
  - api_key: support
    roles: [support]
  - api_key: setup
    roles: [setup]
  - uri: spiffe://test.example/officer
    roles: [privacy-officer]
roles:
  privacy-officer:
    - operations: [detokenize]
      purposes: [support-call, dsar]
    - operations: [export]
      purposes: [dsar]
    - operations: [mask, erase, restrict, rectify, admin]
  support:
    - operations: [mask]
  setup:
    - operations: [tokenize, tokenize-deterministic]
`

type server struct {
	app   *app.App
	base  string // http://127.0.0.1:port
	logs  *syncBuffer
	setup *client.Client // tokenizes test data
	audit string
}

// startServer starts a server; opts change its configuration first.
func startServer(t *testing.T, opts ...func(*config.Config)) *server {
	t.Helper()
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(testPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cfg := config.Config{
		Listen:  "127.0.0.1:0",
		DataDir: filepath.Join(dir, "data"),
		KEK: config.KEKConfig{Keyring: agekeyring.Config{Path: filepath.Join(dir, "keys", "keyring.age"),
			IdentityFile: filepath.Join(dir, "keys", "identity.txt")}, HealthInterval: 100 * time.Millisecond},
		Metrics: config.MetricsConfig{Listen: "off"},
		Auth: config.AuthConfig{PolicyFile: policy, APIKeys: []auth.APIKey{
			{Name: "officer", Hash: auth.HashAPIKey(officerKey)},
			{Name: "support", Hash: auth.HashAPIKey(supportKey)},
			{Name: "setup", Hash: auth.HashAPIKey(setupKey)}}},
		// Values hide quickly, so the browser test can watch them go.
		Console: config.ConsoleConfig{Listen: "127.0.0.1:0", RevealFor: 1500 * time.Millisecond},
		// Debug: the no-data-in-logs test wants every line.
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, o := range opts {
		o(&cfg)
	}
	a, err := app.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	copts := []client.Option{client.WithAPIKey(setupKey)}
	if cfg.Auth.TLSEnabled() {
		copts = append(copts, client.WithTLS(setupTLS))
	}
	c, err := client.Dial(a.Addr(), copts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); a.Stop() })
	return &server{app: a, base: "http://" + a.ConsoleAddr(), logs: logs, setup: c, audit: a.AuditLogPath()}
}

// setupTLS is the setup client's TLS configuration when the server has
// TLS (set by the test that turns TLS on).
var setupTLS *tls.Config

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// seed tokenizes a few values of subject; it returns the tokens.
func (s *server) seed(t *testing.T, subject string, fields ...client.Field) []string {
	t.Helper()
	toks, err := s.setup.Tokenize(testCtx(t), subject, fields...)
	if err != nil {
		t.Fatalf("tokenize: %v", err)
	}
	return toks
}

// entries reads the audit log.
func (s *server) entries(t *testing.T) []audit.Entry {
	t.Helper()
	b, err := os.ReadFile(s.audit)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Entry
	for _, ln := range bytes.Split(b, []byte("\n")) {
		if len(ln) == 0 {
			continue
		}
		e, err := audit.ParseLine(ln)
		if err != nil {
			t.Fatalf("audit line: %v", err)
		}
		out = append(out, e.Expanded()) // the fields a compact entry leaves out, back
	}
	return out
}

// subjectHash is the keyed hash by which the audit log names subject.
func (s *server) subjectHash(t *testing.T, subject string) string {
	t.Helper()
	h, err := s.app.AuditSubjectHash(subject)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// waitEntry waits for an audit entry matching fn (refusals are written
// asynchronously).
func (s *server) waitEntry(t *testing.T, what string, fn func(audit.Entry) bool) audit.Entry {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, e := range s.entries(t) {
			if fn(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit entry: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// webClient is a plain HTTP client with a cookie jar, as a browser keeps
// cookies; it does not follow redirects, so tests see them.
type webClient struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newBrowser(t *testing.T, base string) *webClient { return newTLSBrowser(t, base, nil) }

// newTLSBrowser connects with tc (nil: plaintext).
func newTLSBrowser(t *testing.T, base string, tc *tls.Config) *webClient {
	jar, _ := cookiejar.New(nil)
	return &webClient{t: t, base: base, hc: &http.Client{Jar: jar, Timeout: time.Minute,
		Transport:     &http.Transport{TLSClientConfig: tc},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type page struct {
	code   int
	header http.Header
	body   string
}

func (b *webClient) do(method, path string, form url.Values) page {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return page{code: resp.StatusCode, header: resp.Header, body: string(data)}
}

func (b *webClient) get(path string) page { return b.do("GET", path, nil) }

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, p page) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no CSRF token on the page (%d): %.300s", p.code, p.body)
	}
	return m[1]
}

// signIn signs in with key and returns the session's CSRF token.
func (b *webClient) signIn(key string) string {
	b.t.Helper()
	p := b.get("/signin")
	p = b.do("POST", "/signin", url.Values{"csrf": {csrfOf(b.t, p)}, "api_key": {key}})
	if p.code != http.StatusSeeOther {
		b.t.Fatalf("sign-in: %d %s", p.code, p.body)
	}
	return csrfOf(b.t, b.get("/lookup"))
}

// open looks subject up and returns its page.
func (b *webClient) open(csrf, subject string) page {
	b.t.Helper()
	p := b.do("POST", "/lookup", url.Values{"csrf": {csrf}, "subject_id": {subject}})
	if p.code != http.StatusSeeOther || p.header.Get("Location") != "/subject" {
		b.t.Fatalf("lookup: %d %s", p.code, p.body)
	}
	return b.get("/subject")
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
