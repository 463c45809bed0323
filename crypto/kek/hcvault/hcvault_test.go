package hcvault_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/tokenvault/tokenvault/crypto/kek"
	"github.com/tokenvault/tokenvault/crypto/kek/hcvault"
	"github.com/tokenvault/tokenvault/crypto/kek/kektest"
	"github.com/tokenvault/tokenvault/internal/vaulttest"
)

// Integration tests against a real Vault (internal/vaulttest). Each test
// gets transit at a random mount, so they also run against a shared server
// named by VAULT_ADDR; only the outage test needs a server of its own.

// testTimeout is a generous bound for whole operations: the tests assert
// outcomes, never durations.
const testTimeout = 2 * time.Minute

func TestConformance(t *testing.T) {
	srv := vaulttest.Start(t)
	mount := srv.EnableTransit(t, "")
	var mu sync.Mutex
	keys := map[kek.Wrapper]string{}
	kektest.Run(t, func(t *testing.T) kek.Wrapper {
		// A fresh key per wrapper: the suite rotates and retires.
		key := "k" + randomName(t)
		srv.CreateTransitKey(t, mount, key)
		p := newProvider(t, hcvault.Config{Address: srv.Addr, Token: srv.Token, Mount: mount, Key: key})
		mu.Lock()
		defer mu.Unlock()
		keys[p] = key
		return p
	}, func(t *testing.T, w kek.Wrapper, dek []byte) []byte {
		mu.Lock()
		key := keys[w]
		mu.Unlock()
		return encryptUnbound(t, srv, mount, key, dek)
	})
}

// encryptUnbound is what the provider stored before wraps were bound: the
// bare transit ciphertext of dek, encrypted without associated data.
func encryptUnbound(t *testing.T, srv *vaulttest.Server, mount, key string, dek []byte) []byte {
	t.Helper()
	sec, err := srv.Client.Logical().WriteWithContext(testContext(t), mount+"/encrypt/"+key,
		map[string]any{"plaintext": base64.StdEncoding.EncodeToString(dek)})
	if err != nil {
		t.Fatalf("transit encrypt: %v", err)
	}
	ct, _ := sec.Data["ciphertext"].(string)
	if !strings.HasPrefix(ct, "vault:v") {
		t.Fatalf("transit encrypt returned %q", ct)
	}
	return []byte(ct)
}

// TestBoundCannotPassAsUnbound: without its "ad1:" prefix a bound blob is
// sent to Vault without associated data, and Vault refuses it, so binding
// cannot be stripped; nor can the prefix bind an unbound blob to anything.
func TestBoundCannotPassAsUnbound(t *testing.T) {
	srv := vaulttest.Start(t)
	mount, key := srv.Transit(t)
	p := newProvider(t, hcvault.Config{Address: srv.Addr, Token: srv.Token, Mount: mount, Key: key})
	ctx := testContext(t)
	dek := randomDEK(t)
	w := mustWrap(ctx, t, p, dek)
	stripped, ok := bytes.CutPrefix(w, []byte("ad1:"))
	if !ok {
		t.Fatalf("bound blob %q lacks the ad1: prefix", w)
	}
	if info, err := p.Describe(stripped); err != nil || info.Bound {
		t.Fatalf("Describe(stripped) = %+v, %v", info, err)
	}
	for _, a := range [][]byte{ad, []byte("another subject")} {
		if _, err := p.Unwrap(ctx, stripped, a); !errors.Is(err, kek.ErrInvalidWrapped) {
			t.Fatalf("a bound blob without its prefix unwraps: %v", err)
		}
	}
	// The other way round: an unbound blob given the prefix is decrypted
	// with associated data it was not made with.
	old := encryptUnbound(t, srv, mount, key, dek)
	if _, err := p.Unwrap(ctx, append([]byte("ad1:"), old...), ad); !errors.Is(err, kek.ErrInvalidWrapped) {
		t.Fatalf("an unbound blob with the prefix added unwraps: %v", err)
	}
	if got := mustUnwrap(ctx, t, p, old); !bytes.Equal(got, dek) {
		t.Fatal("unbound blob unwraps to a different key")
	}
}

// Healthy refuses a transit key that cannot take associated_data.
func TestHealthyNeedsAEADKey(t *testing.T) {
	srv := vaulttest.Start(t)
	mount := srv.EnableTransit(t, "")
	ctx := testContext(t)
	for name, params := range map[string]map[string]any{
		"rsa":     {"type": "rsa-2048"},
		"derived": {"type": "aes256-gcm96", "derived": true},
	} {
		t.Run(name, func(t *testing.T) {
			key := "k" + randomName(t)
			if _, err := srv.Client.Logical().WriteWithContext(ctx, mount+"/keys/"+key, params); err != nil {
				t.Fatalf("create key: %v", err)
			}
			p := newProvider(t, hcvault.Config{Address: srv.Addr, Token: srv.Token, Mount: mount, Key: key})
			err := p.Healthy(ctx)
			if err == nil || !strings.Contains(err.Error(), "cannot bind associated data") {
				t.Fatalf("Healthy with a %s key: %v, want a refusal", name, err)
			}
		})
	}
}

// TestRewrapLarge: a rewrap of 500 keys spans several batch_input
// requests of each half (decrypt, encrypt) and keeps the order.
func TestRewrapLarge(t *testing.T) {
	srv := vaulttest.Start(t)
	mount, key := srv.Transit(t)
	p := newProvider(t, hcvault.Config{Address: srv.Addr, Token: srv.Token, Mount: mount, Key: key})
	ctx := testContext(t)

	deks := make([][]byte, 500)
	wrapped := make([][]byte, len(deks))
	for i := range deks {
		deks[i] = randomDEK(t)
		var err error
		if wrapped[i], err = p.Wrap(ctx, deks[i], itemAD(i)); err != nil {
			t.Fatalf("Wrap(%d): %v", i, err)
		}
	}
	for i, w := range wrapped {
		got, err := p.Unwrap(ctx, w, itemAD(i))
		if err != nil {
			t.Fatalf("Unwrap(blob %d): %v", i, err)
		}
		if !bytes.Equal(got, deks[i]) {
			t.Fatalf("blob %d does not unwrap to DEK %d", i, i)
		}
	}
	re := make([]kek.RewrapItem, len(wrapped))
	for i, w := range wrapped {
		re[i] = kek.RewrapItem{Wrapped: w, AD: itemAD(i)}
	}
	// An unbound blob in a later chunk is bound on the way.
	re[300].Wrapped = encryptUnbound(t, srv, mount, key, deks[300])
	rewrapped, err := p.Rewrap(ctx, re)
	if err != nil {
		t.Fatalf("Rewrap(500): %v", err)
	}
	if len(rewrapped) != len(wrapped) {
		t.Fatalf("Rewrap returned %d blobs for %d", len(rewrapped), len(wrapped))
	}
	for _, i := range []int{0, 255, 256, 300, 499} {
		got, err := p.Unwrap(ctx, rewrapped[i], itemAD(i))
		if err != nil || !bytes.Equal(got, deks[i]) {
			t.Fatalf("rewrapped blob %d does not unwrap to DEK %d: %v", i, i, err)
		}
		if info, err := p.Describe(rewrapped[i]); err != nil || !info.Bound {
			t.Fatalf("rewrapped blob %d: %+v, %v; want bound", i, info, err)
		}
	}
	// One item bound to other associated data, in the second chunk, fails
	// the whole rewrap and names the item.
	re[400].AD = itemAD(401)
	_, err = p.Rewrap(ctx, re)
	if !errors.Is(err, kek.ErrInvalidWrapped) || !strings.Contains(err.Error(), "item 144") || !strings.Contains(err.Error(), "items 256 to 499") {
		t.Fatalf("Rewrap with item 400 bound elsewhere: %v, want kek.ErrInvalidWrapped naming item 144 of the request of items 256 to 499", err)
	}
}

// A token with a 3s TTL is still usable after 8s only if the provider renews it.
func TestTokenRenewal(t *testing.T) {
	t.Parallel()
	srv := vaulttest.Start(t)
	mount, key := srv.Transit(t)
	policy := writePolicy(t, srv, mount)
	renewable := true
	tok, err := srv.Client.Auth().Token().CreateWithContext(testContext(t), &api.TokenCreateRequest{
		Policies:        []string{policy},
		NoDefaultPolicy: true,  // the policy file alone must allow renewal
		TTL:             "10s", // renewal at about 2/3 of it; leaves room for a slow, loaded machine
		ExplicitMaxTTL:  "5m",
		Renewable:       &renewable,
	})
	if err != nil {
		t.Fatalf("create token: %v", err)
	}
	p := newProvider(t, hcvault.Config{Address: srv.Addr, Token: tok.Auth.ClientToken, Mount: mount, Key: key})
	ctx := testContext(t)
	dek := randomDEK(t)
	wrapped := mustWrap(ctx, t, p, dek)

	time.Sleep(22 * time.Second) // well past the TTL: only renewal keeps the token alive

	if got := mustUnwrap(ctx, t, p, wrapped); !bytes.Equal(got, dek) {
		t.Fatal("Unwrap after renewal returned a different key")
	}
	mustWrap(ctx, t, p, randomDEK(t))
}

// AppRole login works, and when the token reaches its max TTL the provider
// logs in again by itself.
func TestAppRole(t *testing.T) {
	t.Parallel()
	srv := vaulttest.Start(t)
	mount, key := srv.Transit(t)
	policy := writePolicy(t, srv, mount)
	ctx := testContext(t)

	authPath := "approle-" + randomName(t)
	if err := srv.Client.Sys().EnableAuthWithOptionsWithContext(ctx, authPath, &api.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatalf("enable approle: %v", err)
	}
	t.Cleanup(func() { _ = srv.Client.Sys().DisableAuth(authPath) })
	role := "auth/" + authPath + "/role/tokenvault"
	if _, err := srv.Client.Logical().WriteWithContext(ctx, role, map[string]any{
		"token_policies":          []string{policy},
		"token_no_default_policy": true,
		"token_ttl":               "2s",
		"token_max_ttl":           "4s",
	}); err != nil {
		t.Fatalf("create role: %v", err)
	}
	rid, err := srv.Client.Logical().ReadWithContext(ctx, role+"/role-id")
	if err != nil {
		t.Fatalf("read role id: %v", err)
	}
	sid, err := srv.Client.Logical().WriteWithContext(ctx, role+"/secret-id", nil)
	if err != nil {
		t.Fatalf("create secret id: %v", err)
	}
	secretIDFile := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(secretIDFile, []byte(sid.Data["secret_id"].(string)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	p := newProvider(t, hcvault.Config{
		Address: srv.Addr, Mount: mount, Key: key,
		Auth: hcvault.AuthConfig{
			Method:       hcvault.AuthAppRole,
			MountPath:    authPath,
			RoleID:       rid.Data["role_id"].(string),
			SecretIDFile: secretIDFile,
		},
	})
	dek := randomDEK(t)
	wrapped := mustWrap(ctx, t, p, dek)
	if err := p.Healthy(ctx); err != nil {
		t.Fatalf("Healthy: %v", err)
	}

	// Well past token_max_ttl: the first token is dead by now.
	time.Sleep(9 * time.Second)

	if got := mustUnwrap(ctx, t, p, wrapped); !bytes.Equal(got, dek) {
		t.Fatal("Unwrap after re-login returned a different key")
	}

	t.Run("bad secret id", func(t *testing.T) {
		_, err := hcvault.New(ctx, hcvault.Config{
			Address: srv.Addr, Mount: mount, Key: key,
			Auth: hcvault.AuthConfig{Method: hcvault.AuthAppRole, MountPath: authPath, RoleID: rid.Data["role_id"].(string), SecretID: "not-the-secret-id"},
		}, nil)
		if err == nil {
			t.Fatal("New with a wrong secret ID succeeded")
		}
		if errors.Is(err, kek.ErrUnavailable) {
			t.Fatalf("wrong credentials reported as unavailable: %v", err)
		}
		if strings.Contains(err.Error(), "not-the-secret-id") {
			t.Fatalf("error reveals the secret ID: %v", err)
		}
	})
}

// The policy in deploy/vault allows every provider operation and nothing
// else that matters.
func TestPolicy(t *testing.T) {
	srv := vaulttest.Start(t)
	mount, key := srv.Transit(t)
	srv.CreateTransitKey(t, mount, "other")
	policy := writePolicy(t, srv, mount)
	ctx := testContext(t)
	tok, err := srv.Client.Auth().Token().CreateWithContext(ctx, &api.TokenCreateRequest{
		Policies:        []string{policy},
		NoDefaultPolicy: true,
		TTL:             "1h",
	})
	if err != nil {
		t.Fatalf("create token: %v", err)
	}
	token := tok.Auth.ClientToken

	t.Run("allows the provider", func(t *testing.T) {
		p := newProvider(t, hcvault.Config{Address: srv.Addr, Token: token, Mount: mount, Key: key})
		if err := p.Healthy(ctx); err != nil {
			t.Fatalf("Healthy: %v", err)
		}
		dek := randomDEK(t)
		old := mustWrap(ctx, t, p, dek)
		v, err := p.Rotate(ctx)
		if err != nil {
			t.Fatalf("Rotate: %v", err)
		}
		rewrapped, err := p.Rewrap(ctx, []kek.RewrapItem{{Wrapped: old, AD: ad}})
		if err != nil {
			t.Fatalf("Rewrap: %v", err)
		}
		if err := p.Retire(ctx, v); err != nil {
			t.Fatalf("Retire: %v", err)
		}
		if vs, err := p.Versions(ctx); err != nil || len(vs) != 1 || vs[0].Version != v {
			t.Fatalf("Versions = %v, %v; want only version %d", vs, err, v)
		}
		if got := mustUnwrap(ctx, t, p, rewrapped[0]); !bytes.Equal(got, dek) {
			t.Fatal("rewrapped blob unwraps to a different key")
		}
		if _, err := p.Unwrap(ctx, old, ad); !errors.Is(err, kek.ErrInvalidWrapped) {
			t.Fatalf("Unwrap(blob under retired version) error = %v, want kek.ErrInvalidWrapped", err)
		}
	})

	t.Run("denies another key", func(t *testing.T) {
		p := newProvider(t, hcvault.Config{Address: srv.Addr, Token: token, Mount: mount, Key: "other"})
		if _, err := p.Wrap(ctx, randomDEK(t), ad); !errors.Is(err, hcvault.ErrPermissionDenied) {
			t.Fatalf("Wrap with key %q: error = %v, want ErrPermissionDenied", "other", err)
		}
		if err := p.Healthy(ctx); !errors.Is(err, hcvault.ErrPermissionDenied) {
			t.Fatalf("Healthy with key %q: error = %v, want ErrPermissionDenied", "other", err)
		}
	})

	client, err := srv.Client.Clone()
	if err != nil {
		t.Fatal(err)
	}
	client.SetToken(token)
	read := func(path string) func() error {
		return func() error { _, err := client.Logical().ReadWithContext(ctx, path); return err }
	}
	write := func(path string, data map[string]any) func() error {
		return func() error { _, err := client.Logical().WriteWithContext(ctx, path, data); return err }
	}
	denied := map[string]func() error{
		"read another key":                    read(mount + "/keys/other"),
		"decrypt with another key":            write(mount+"/decrypt/other", map[string]any{"ciphertext": "vault:v1:AAAA"}),
		"rewrap (unused: no associated_data)": write(mount+"/rewrap/"+key, map[string]any{"ciphertext": "vault:v1:AAAA"}),
		"create a key":                        write(mount+"/keys/new", map[string]any{"type": "aes256-gcm96"}),
		"make the key exportable":             write(mount+"/keys/"+key+"/config", map[string]any{"exportable": true}),
		"allow deleting the key":              write(mount+"/keys/"+key+"/config", map[string]any{"deletion_allowed": true}),
		"export the key":                      read(mount + "/export/encryption-key/" + key),
		"back up the key":                     read(mount + "/backup/" + key),
		"generate a data key":                 write(mount+"/datakey/plaintext/"+key, nil),
		"list keys":                           func() error { _, err := client.Logical().ListWithContext(ctx, mount+"/keys"); return err },
		"read sys/mounts":                     read("sys/mounts"),
		"read its own policy":                 read("sys/policy/" + policy),
		"create a token":                      write("auth/token/create", map[string]any{}),
	}
	for name, call := range denied {
		t.Run("denies "+name, func(t *testing.T) {
			err := call()
			var re *api.ResponseError
			if !errors.As(err, &re) || re.StatusCode != 403 {
				t.Fatalf("error = %v, want HTTP 403", err)
			}
		})
	}
}

// While Vault is down every call fails with kek.ErrUnavailable; once it is
// back, the same provider works again and old blobs still unwrap.
func TestOutage(t *testing.T) {
	srv := vaulttest.Start(t)
	srv.RequireOwned(t)
	mount, key := srv.Transit(t)
	p := newProvider(t, hcvault.Config{Address: srv.Addr, Token: srv.Token, Mount: mount, Key: key, Timeout: 2 * time.Second})
	ctx := testContext(t)
	dek := randomDEK(t)
	wrapped := mustWrap(ctx, t, p, dek)

	srv.Stop()

	calls := map[string]func() error{
		"Wrap":    func() error { _, err := p.Wrap(ctx, randomDEK(t), ad); return err },
		"Unwrap":  func() error { _, err := p.Unwrap(ctx, wrapped, ad); return err },
		"Rewrap":  func() error { _, err := p.Rewrap(ctx, []kek.RewrapItem{{Wrapped: wrapped, AD: ad}}); return err },
		"Healthy": func() error { return p.Healthy(ctx) },
		"Rotate":  func() error { _, err := p.Rotate(ctx); return err },
	}
	for name, call := range calls {
		err := call()
		if !errors.Is(err, kek.ErrUnavailable) {
			t.Fatalf("%s while Vault is down: error = %v, want kek.ErrUnavailable", name, err)
		}
		if !strings.Contains(err.Error(), "unreachable") {
			t.Errorf("%s: error %q does not say Vault is unreachable", name, err)
		}
	}

	srv.Restart()

	if err := p.Healthy(ctx); err != nil {
		t.Fatalf("Healthy after restart: %v", err)
	}
	if got := mustUnwrap(ctx, t, p, wrapped); !bytes.Equal(got, dek) {
		t.Fatal("blob from before the outage unwraps to a different key")
	}
	if got := mustUnwrap(ctx, t, p, mustWrap(ctx, t, p, dek)); !bytes.Equal(got, dek) {
		t.Fatal("round trip after restart failed")
	}
}

// writePolicy installs deploy/vault/tokenvault-policy.hcl, with the mount
// renamed when the test uses another one, and returns the policy's name.
func writePolicy(t *testing.T, srv *vaulttest.Server, mount string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "vault", "tokenvault-policy.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	hcl := strings.ReplaceAll(string(data), `path "transit/`, `path "`+mount+`/`)
	name := "tokenvault-" + randomName(t)
	if err := srv.Client.Sys().PutPolicyWithContext(testContext(t), name, hcl); err != nil {
		t.Fatalf("write policy: %v", err)
	}
	t.Cleanup(func() { _ = srv.Client.Sys().DeletePolicy(name) })
	return name
}

func newProvider(t *testing.T, cfg hcvault.Config) hcvault.Provider {
	t.Helper()
	// Provider logs (renewals, re-logins) go to the test's output, shown for
	// failed tests and with -v. Close, in a cleanup, stops them in time.
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := hcvault.New(testContext(t), cfg, logger)
	if err != nil {
		t.Fatalf("hcvault.New: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func mustWrap(ctx context.Context, t *testing.T, w kek.Wrapper, dek []byte) []byte {
	t.Helper()
	b, err := w.Wrap(ctx, dek, ad)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	return b
}

func mustUnwrap(ctx context.Context, t *testing.T, w kek.Wrapper, wrapped []byte) []byte {
	t.Helper()
	b, err := w.Unwrap(ctx, wrapped, ad)
	if err != nil {
		t.Fatalf("Unwrap: %v", err)
	}
	return b
}

// ad is the associated data of the tests' wraps; itemAD(i) that of batch
// item i.
var ad = []byte("tokenvault/hcvault test: subject binding")

func itemAD(i int) []byte { return []byte("tokenvault/hcvault test: item " + strconv.Itoa(i)) }

func randomDEK(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func randomName(t *testing.T) string {
	t.Helper()
	return strings.ToLower(rand.Text()[:10])
}
