package hcvault_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/crypto/kek"
	"github.com/tokenvault/tokenvault/crypto/kek/hcvault"
)

// Tests against a scripted stand-in for Vault's HTTP API: error mapping,
// deadlines and request details that a real server cannot easily be made to
// produce. They need no Vault binary.

const fakeBlob = "vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

type fakeVault struct {
	*httptest.Server
	mu sync.Mutex
	// transit answers every request outside auth/: status and body,
	// unless fixed holds an answer for the request's path.
	status int
	body   string
	fixed  map[string]fakeAnswer
	// seen records the last transit request.
	seenToken, seenNamespace, seenPath string
	logins                             []map[string]any
	// deny answers 403 to transit requests whose token it holds (a
	// token that expired, or one without the policy).
	deny map[string]bool
}

type fakeAnswer struct {
	status int
	body   string
}

func newFakeVault(t *testing.T) *fakeVault {
	f := &fakeVault{status: 200}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeVault) respond(status int, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.body = status, body
}

// respondAt fixes the answer to requests for path, whatever respond says,
// until the returned function is called.
func (f *fakeVault) respondAt(path string, status int, body string) (undo func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fixed == nil {
		f.fixed = map[string]fakeAnswer{}
	}
	f.fixed[path] = fakeAnswer{status, body}
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.fixed, path)
	}
}

func (f *fakeVault) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/v1/auth/token/lookup-self":
		io.WriteString(w, `{"data":{"ttl":0,"renewable":false}}`)
		return
	case "/v1/auth/approle/login", "/v1/auth/kubernetes/login":
		var creds map[string]any
		_ = json.NewDecoder(r.Body).Decode(&creds)
		f.logins = append(f.logins, creds)
		token := "logged-in-token"
		if n := len(f.logins); n > 1 {
			token = fmt.Sprintf("logged-in-token-%d", n)
		}
		fmt.Fprintf(w, `{"auth":{"client_token":%q,"lease_duration":3600,"renewable":true}}`, token)
		return
	case "/v1/auth/token/renew-self":
		io.WriteString(w, `{"auth":{"client_token":"logged-in-token","lease_duration":3600,"renewable":true}}`)
		return
	}
	f.seenToken = r.Header.Get("X-Vault-Token")
	f.seenNamespace = r.Header.Get("X-Vault-Namespace")
	f.seenPath = r.URL.Path
	if f.deny[f.seenToken] {
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"errors":["permission denied"]}`)
		return
	}
	if a, ok := f.fixed[r.URL.Path]; ok {
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
		return
	}
	w.WriteHeader(f.status)
	io.WriteString(w, f.body)
}

// seen returns what the last transit request carried.
func (f *fakeVault) seen() (token, namespace, path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seenToken, f.seenNamespace, f.seenPath
}

func (f *fakeVault) loginRequests() []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.logins)
}

func fakeProvider(t *testing.T, f *fakeVault, mutate ...func(*hcvault.Config)) hcvault.Provider {
	t.Helper()
	cfg := hcvault.Config{Address: f.URL, Token: "configured-token", Timeout: 2 * time.Second}
	for _, m := range mutate {
		m(&cfg)
	}
	return newProvider(t, cfg)
}

func TestErrorMapping(t *testing.T) {
	f := newFakeVault(t)
	p := fakeProvider(t, f)
	ctx := testContext(t)
	wrap := func() error { _, err := p.Wrap(ctx, randomDEK(t), ad); return err }
	unwrap := func() error { _, err := p.Unwrap(ctx, []byte(fakeBlob), ad); return err }
	// rewrapEncrypt reaches the encrypt half of a rewrap (a batch of DEKs,
	// not of blobs): the decrypt half is answered, and the table's answer
	// goes to the encrypt.
	rewrapEncrypt := func() error {
		defer f.respondAt("/v1/transit/decrypt/tokenvault", 200, `{"data":{"batch_results":[{"plaintext":"AAECAw=="},{"plaintext":"BAUGBw=="}]}}`)()
		_, err := p.Rewrap(ctx, []kek.RewrapItem{{Wrapped: []byte(fakeBlob), AD: ad}, {Wrapped: []byte("ad1:" + fakeBlob), AD: ad}})
		return err
	}
	rewrap := func() error {
		_, err := p.Rewrap(ctx, []kek.RewrapItem{{Wrapped: []byte(fakeBlob), AD: ad}, {Wrapped: []byte("ad1:" + fakeBlob), AD: ad}})
		return err
	}
	healthy := func() error { return p.Healthy(ctx) }

	tests := []struct {
		name    string
		status  int
		body    string
		call    func() error
		want    error  // sentinel the error must wrap, nil for none of them
		message string // substring of the error text
	}{
		{"sealed", 503, `{"errors":["Vault is sealed"]}`, wrap, kek.ErrUnavailable, "sealed"},
		{"internal error", 500, `{"errors":["internal error"]}`, unwrap, kek.ErrUnavailable, "HTTP 500"},
		{"rate limited", 429, `{"errors":["request path is rate limited"]}`, wrap, kek.ErrUnavailable, "HTTP 429"},
		{"proxy error page", 502, `<html>Bad Gateway</html>`, unwrap, kek.ErrUnavailable, "Bad Gateway"},
		{"permission denied", 403, `{"errors":["1 error occurred:\n\t* permission denied\n\n"]}`, wrap, hcvault.ErrPermissionDenied, "permission denied"},
		{"permission denied on health", 403, `{"errors":["permission denied"]}`, healthy, hcvault.ErrPermissionDenied, "HTTP 403"},
		{"bad ciphertext", 400, `{"errors":["cipher: message authentication failed"]}`, unwrap, kek.ErrInvalidWrapped, "authentication failed"},
		{"retired version", 400, `{"errors":["ciphertext or signature version is disallowed by policy (too old)"]}`, unwrap, kek.ErrInvalidWrapped, "too old"},
		{"missing key on unwrap", 400, `{"errors":["encryption key not found"]}`, unwrap, nil, "does not exist"},
		{"bad request on wrap", 400, `{"errors":["failed to base64-decode plaintext"]}`, wrap, nil, "HTTP 400"},
		{"missing key on health", 404, `{"errors":[]}`, healthy, nil, "no transit key"},
		{"batch with item error", 400, `{"data":{"batch_results":[{"ciphertext":"` + fakeBlob + `"},{"error":"bad input"}]}}`, rewrapEncrypt, nil, "item 1: bad input"},
		{"rewrap item error", 200, `{"data":{"batch_results":[{"ciphertext":"` + fakeBlob + `"},{"error":"invalid ciphertext: could not decode base64"}]}}`, rewrap, kek.ErrInvalidWrapped, "item 1"},
		{"short batch", 200, `{"data":{"batch_results":[{"ciphertext":"` + fakeBlob + `"}]}}`, rewrapEncrypt, nil, "1 results for 2"},
		{"garbage ciphertext", 200, `{"data":{"ciphertext":"oops"}}`, wrap, nil, "unexpected ciphertext"},
		{"malformed json", 200, `{"data":`, unwrap, nil, "malformed response"},
		{"empty plaintext", 200, `{"data":{"plaintext":""}}`, unwrap, nil, "empty plaintext"},
		{"not an encryption key", 200, `{"data":{"type":"ed25519","latest_version":1}}`, healthy, nil, "cannot encrypt"},
	}
	sentinels := []error{kek.ErrUnavailable, kek.ErrInvalidWrapped, hcvault.ErrPermissionDenied}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.respond(tt.status, tt.body)
			err := tt.call()
			if err == nil {
				t.Fatal("call succeeded")
			}
			for _, s := range sentinels {
				if got, want := errors.Is(err, s), s == tt.want; got != want {
					t.Errorf("errors.Is(err, %q) = %v, want %v; err = %v", s, got, want, err)
				}
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("error %q does not mention %q", err, tt.message)
			}
			if strings.Contains(err.Error(), "configured-token") {
				t.Errorf("error %q reveals the token", err)
			}
		})
	}
}

func TestSuccessDecoding(t *testing.T) {
	f := newFakeVault(t)
	p := fakeProvider(t, f)
	ctx := testContext(t)

	f.respond(200, `{"data":{"plaintext":"AAECAw=="}}`)
	dek, err := p.Unwrap(ctx, []byte(fakeBlob), ad)
	if err != nil || !bytes.Equal(dek, []byte{0, 1, 2, 3}) {
		t.Fatalf("Unwrap = %v, %v", dek, err)
	}
	if _, _, path := f.seen(); path != "/v1/transit/decrypt/tokenvault" {
		t.Errorf("Unwrap used path %q", path)
	}

	f.respond(200, `{"data":{"latest_version":3,"min_decryption_version":2,"keys":{"2":1700000000,"3":1700000100}}}`)
	vs, err := p.Versions(ctx)
	if err != nil {
		t.Fatalf("Versions: %v", err)
	}
	if len(vs) != 2 || vs[0].Version != 2 || vs[1].Version != 3 || vs[0].Created.Unix() != 1700000000 {
		t.Fatalf("Versions = %+v", vs)
	}

	f.respond(204, ``)
	if _, err := p.Rotate(ctx); err == nil {
		// 204 from rotate, then the key read gets an empty body too.
		t.Fatal("Rotate with an empty key read succeeded")
	}
}

// A Vault that accepts connections but never answers must not hang callers.
func TestHungVaultTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/auth/token/lookup-self" {
			io.WriteString(w, `{"data":{"ttl":0}}`)
			return
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	p := newProvider(t, hcvault.Config{Address: srv.URL, Token: "t", Timeout: 200 * time.Millisecond})

	_, err := p.Wrap(testContext(t), randomDEK(t), ad)
	if !errors.Is(err, kek.ErrUnavailable) {
		t.Fatalf("Wrap against a hung Vault: error = %v, want kek.ErrUnavailable", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v, want it to wrap context.DeadlineExceeded", err)
	}

	// The caller's own cancellation is not an outage.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	_, err = p.Unwrap(ctx, []byte(fakeBlob), ad)
	if !errors.Is(err, context.Canceled) || errors.Is(err, kek.ErrUnavailable) {
		t.Fatalf("Unwrap canceled by the caller: error = %v, want context.Canceled only", err)
	}
}

func TestNewUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + l.Addr().String()
	l.Close()
	_, err = hcvault.New(testContext(t), hcvault.Config{Address: addr, Token: "t", Timeout: time.Second}, nil)
	if !errors.Is(err, kek.ErrUnavailable) {
		t.Fatalf("New with Vault down: error = %v, want kek.ErrUnavailable", err)
	}
}

func TestAppRoleLoginFake(t *testing.T) {
	f := newFakeVault(t)
	secretFile := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(secretFile, []byte("the-secret-id\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := fakeProvider(t, f, func(c *hcvault.Config) {
		c.Token = ""
		c.Auth = hcvault.AuthConfig{Method: hcvault.AuthAppRole, RoleID: "the-role-id", SecretIDFile: secretFile}
	})
	if l := f.loginRequests(); len(l) != 1 || l[0]["role_id"] != "the-role-id" || l[0]["secret_id"] != "the-secret-id" {
		t.Fatalf("logins = %v", l)
	}
	f.respond(200, `{"data":{"plaintext":"AAECAw=="}}`)
	if _, err := p.Unwrap(testContext(t), []byte(fakeBlob), ad); err != nil {
		t.Fatal(err)
	}
	if token, _, _ := f.seen(); token != "logged-in-token" {
		t.Fatalf("transit request used token %q, want the one from login", token)
	}
}

func TestKubernetesLoginFake(t *testing.T) {
	f := newFakeVault(t)
	jwtFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(jwtFile, []byte("header.payload.sig"), 0o600); err != nil {
		t.Fatal(err)
	}
	fakeProvider(t, f, func(c *hcvault.Config) {
		c.Token = ""
		c.Auth = hcvault.AuthConfig{Method: hcvault.AuthKubernetes, Role: "tokenvault", ServiceAccountTokenFile: jwtFile}
	})
	if l := f.loginRequests(); len(l) != 1 || l[0]["role"] != "tokenvault" || l[0]["jwt"] != "header.payload.sig" {
		t.Fatalf("logins = %v", l)
	}

	_, err := hcvault.New(testContext(t), hcvault.Config{
		Address: f.URL,
		Auth:    hcvault.AuthConfig{Method: hcvault.AuthKubernetes, Role: "r", ServiceAccountTokenFile: filepath.Join(t.TempDir(), "missing")},
	}, nil)
	if err == nil || errors.Is(err, kek.ErrUnavailable) || !strings.Contains(err.Error(), "kek.vault.auth.service_account_token_file") {
		t.Fatalf("New with a missing token file: error = %v, want one naming the config key", err)
	}
}

// The api client reads VAULT_* variables; the provider must not.
func TestIgnoresVaultEnvironment(t *testing.T) {
	t.Setenv("VAULT_TOKEN", "env-token")
	t.Setenv("VAULT_NAMESPACE", "env-namespace")
	t.Setenv("VAULT_ADDR", "http://192.0.2.1:1")
	f := newFakeVault(t)
	p := fakeProvider(t, f)
	f.respond(200, `{"data":{"plaintext":"AAECAw=="}}`)
	if _, err := p.Unwrap(testContext(t), []byte(fakeBlob), ad); err != nil {
		t.Fatal(err)
	}
	if token, ns, _ := f.seen(); token != "configured-token" || ns != "" {
		t.Fatalf("request had token %q and namespace %q; want the configured token and no namespace", token, ns)
	}

	p = fakeProvider(t, f, func(c *hcvault.Config) { c.Namespace = "team/a" })
	if _, err := p.Unwrap(testContext(t), []byte(fakeBlob), ad); err != nil {
		t.Fatal(err)
	}
	if _, ns, _ := f.seen(); ns != "team/a" {
		t.Fatalf("namespace header %q, want team/a", ns)
	}
}

func TestInvalidBlobsNeverSent(t *testing.T) {
	f := newFakeVault(t)
	p := fakeProvider(t, f)
	for _, blob := range []string{"", "ad1:", "ad1:vault:v0:AAAA", "ad1:ad1:vault:v1:AAAA", "vault:v0:AAAA", "vault:v01:AAAA", "vault:v1:", "vault:v1:AA=A", "vault:v1:AAA", "vault:vx:AAAA", "vault:v1:AA\nA", strings.Repeat("A", 5000)} {
		if _, err := p.Unwrap(testContext(t), []byte(blob), ad); !errors.Is(err, kek.ErrInvalidWrapped) {
			t.Errorf("Unwrap(%q): error = %v, want kek.ErrInvalidWrapped", blob, err)
		}
	}
	if _, _, path := f.seen(); path != "" {
		t.Fatalf("an invalid blob reached Vault (%s)", path)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  hcvault.Config
		want []string // config keys the error must name; none for valid
	}{
		{"token", hcvault.Config{Address: "https://vault:8200", Token: "t"}, nil},
		{"empty", hcvault.Config{}, []string{"kek.vault.address: must not be empty", "kek.vault.token"}},
		{"bad address", hcvault.Config{Address: "vault:8200", Token: "t"}, []string{"kek.vault.address"}},
		{"bad key", hcvault.Config{Address: "https://v", Token: "t", Key: "../sys"}, []string{"kek.vault.key"}},
		{"bad mount", hcvault.Config{Address: "https://v", Token: "t", Mount: "a/../sys"}, []string{"kek.vault.mount"}},
		{"negative timeout", hcvault.Config{Address: "https://v", Token: "t", Timeout: -time.Second}, []string{"kek.vault.timeout"}},
		{"half client cert", hcvault.Config{Address: "https://v", Token: "t", TLS: hcvault.TLSConfig{ClientCert: "c.pem"}}, []string{"kek.vault.tls"}},
		{"unknown method", hcvault.Config{Address: "https://v", Auth: hcvault.AuthConfig{Method: "ldap"}}, []string{"kek.vault.auth.method"}},
		{"approle", hcvault.Config{Address: "https://v", Auth: hcvault.AuthConfig{Method: "approle", RoleID: "r", SecretIDFile: "/f"}}, nil},
		{"approle incomplete", hcvault.Config{Address: "https://v", Auth: hcvault.AuthConfig{Method: "approle"}}, []string{"kek.vault.auth.role_id", "kek.vault.auth.secret_id"}},
		{"approle both secrets", hcvault.Config{Address: "https://v", Auth: hcvault.AuthConfig{Method: "approle", RoleID: "r", SecretID: "s", SecretIDFile: "/f"}}, []string{"kek.vault.auth.secret_id"}},
		{"kubernetes", hcvault.Config{Address: "https://v", Auth: hcvault.AuthConfig{Method: "kubernetes", Role: "r"}}, nil},
		{"http, loopback IPv4", hcvault.Config{Address: "http://127.0.0.1:8200", Token: "t"}, nil},
		{"http, loopback IPv6", hcvault.Config{Address: "http://[::1]:8200", Token: "t"}, nil},
		{"http, localhost", hcvault.Config{Address: "http://LocalHost:8200", Token: "t"}, nil},
		{"http, non-loopback", hcvault.Config{Address: "http://vault.example:8200", Token: "t"},
			[]string{"kek.vault.address: refusing plain http://", `"vault.example"`, "kek.vault.insecure_http_nonloopback"}},
		{"http, non-loopback IP", hcvault.Config{Address: "http://10.0.0.5:8200", Token: "t"}, []string{"kek.vault.address: refusing plain http://"}},
		{"http, all interfaces", hcvault.Config{Address: "http://0.0.0.0:8200", Token: "t"}, []string{"kek.vault.address: refusing plain http://"}},
		{"http, localhost as a subdomain", hcvault.Config{Address: "http://localhost.evil.example:8200", Token: "t"}, []string{"kek.vault.address: refusing plain http://"}},
		{"http, non-loopback, allowed", hcvault.Config{Address: "http://vault.example:8200", Token: "t", AllowHTTPNonLoopback: true}, nil},
		{"kubernetes without role", hcvault.Config{Address: "https://v", Auth: hcvault.AuthConfig{Method: "kubernetes"}}, []string{"kek.vault.auth.role"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.SetDefaults()
			err := cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted an invalid config")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}

	var cfg hcvault.Config
	cfg.SetDefaults()
	if cfg.Mount != "transit" || cfg.Key != "tokenvault" || cfg.Timeout != 5*time.Second || cfg.Auth.Method != "token" {
		t.Errorf("defaults: %+v", cfg)
	}
}

func TestConfigHidesCredentials(t *testing.T) {
	cfg := hcvault.Config{Address: "http://v", Token: "secret-token", Auth: hcvault.AuthConfig{SecretID: "secret-id"}}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "vault", cfg)
	for _, out := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%v", &cfg), logged.String()} {
		if strings.Contains(out, "secret-token") || strings.Contains(out, "secret-id") {
			t.Errorf("credentials printed: %s", out)
		}
	}
}

// TestReloginAfterDenial: a token that expired between renewals (a busy
// host) makes Vault answer 403; with AppRole or Kubernetes auth the
// provider logs in again and retries the request once, so the call
// succeeds. A denial that a fresh token does not cure stays a denial.
func TestReloginAfterDenial(t *testing.T) {
	f := newFakeVault(t)
	secretFile := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(secretFile, []byte("the-secret-id\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := fakeProvider(t, f, func(c *hcvault.Config) {
		c.Token = ""
		c.Auth = hcvault.AuthConfig{Method: hcvault.AuthAppRole, RoleID: "the-role-id", SecretIDFile: secretFile}
	})
	f.respond(200, `{"data":{"plaintext":"AAECAw=="}}`)
	f.mu.Lock()
	f.deny = map[string]bool{"logged-in-token": true} // the first token "expired"
	f.mu.Unlock()
	if _, err := p.Unwrap(testContext(t), []byte(fakeBlob), ad); err != nil {
		t.Fatalf("unwrap with an expired token: %v", err)
	}
	if token, _, _ := f.seen(); token != "logged-in-token-2" || len(f.loginRequests()) != 2 {
		t.Fatalf("transit request used token %q after %d logins, want a fresh one after 2", token, len(f.loginRequests()))
	}
	// Every token denied (a policy without the grant): ErrPermissionDenied
	// after at most one more login.
	f.mu.Lock()
	f.deny = map[string]bool{"logged-in-token-2": true, "logged-in-token-3": true}
	f.mu.Unlock()
	time.Sleep(1100 * time.Millisecond) // past the one-login-a-second bound
	if _, err := p.Unwrap(testContext(t), []byte(fakeBlob), ad); !errors.Is(err, hcvault.ErrPermissionDenied) {
		t.Fatalf("unwrap with every token denied: %v", err)
	}
	if n := len(f.loginRequests()); n != 3 {
		t.Fatalf("%d logins, want 3 (one per denial, bounded)", n)
	}
}
