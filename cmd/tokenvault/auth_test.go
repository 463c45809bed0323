package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/internal/testpki"
)

const cliPolicy = `version: 1
identities:
  - uri: spiffe://cli.test/orders
    roles: [orders]
  - uri: spiffe://cli.test/payments
    roles: [payments]
  - api_key: dashboard
    roles: [support-ui]
roles:
  orders:
    - operations: [tokenize, mask]
  payments:
    - operations: [detokenize]
      kinds: [pan]
      purposes: [payment]
  support-ui:
    - operations: [mask]
`

// TestCLIAuth: serve with mutual TLS, a policy and an API key; client
// commands with --ca/--cert/--key and TOKENVAULT_API_KEY; SIGHUP reload;
// audit verify on the log the server wrote.
func TestCLIAuth(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.New(t, filepath.Join(dir, "pki"))
	srvCert, srvKey := ca.Issue(t, "server", testpki.Leaf{Server: true, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	ordersCert, ordersKey := ca.Issue(t, "orders", testpki.Leaf{URIs: []string{"spiffe://cli.test/orders"}})
	payCert, payKey := ca.Issue(t, "payments", testpki.Leaf{URIs: []string{"spiffe://cli.test/payments"}})
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(cliPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := cli(t, "", "apikey", "new", "--name", "dashboard")
	if code != 0 || !strings.Contains(errOut, "--api-key dashboard=sha256:") {
		t.Fatalf("apikey new: %d %q %q", code, out, errOut)
	}
	var key, hash string
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "key: "); ok {
			key = v
		}
		if v, ok := strings.CutPrefix(line, "hash: "); ok {
			hash = v
		}
	}
	if !strings.HasPrefix(key, "tvk_") || !strings.HasPrefix(hash, "sha256:") {
		t.Fatalf("apikey new printed %q", out)
	}
	auditLog := filepath.Join(dir, "audit.jsonl")
	addr := freeAddr(t)
	srv := startServe(t, dir, addr, "--tls-cert", srvCert, "--tls-key", srvKey, "--tls-client-ca", ca.CAFile,
		"--policy", policy, "--api-key", "dashboard="+hash, "--audit-log", auditLog, "--policy-poll", "-1s")
	t.Setenv("TOKENVAULT_ADDR", addr)
	t.Setenv("TOKENVAULT_CA", ca.CAFile)
	// Flags go before the positional arguments (Go flag parsing).
	as := func(cmd, cert, key string) []string { return []string{cmd, "--cert", cert, "--key", key} }

	out, errOut, code = cli(t, "", append(as("tokenize", ordersCert, ordersKey), "--subject", "c1", "--kind", "pan", "4111 1111 1111 1111")...)
	if code != 0 {
		t.Fatalf("tokenize as orders: %s", errOut)
	}
	tok := strings.TrimSpace(out)
	if _, errOut, code := cli(t, "", append(as("detokenize", ordersCert, ordersKey), "--purpose", "payment", tok)...); code == 0 || !strings.Contains(errOut, "PermissionDenied") {
		t.Fatalf("detokenize as orders: %d %s", code, errOut)
	}
	if out, errOut, code := cli(t, "", append(as("detokenize", payCert, payKey), "--purpose", "payment", tok)...); code != 0 || out != "4111111111111111\n" {
		t.Fatalf("detokenize as payments: %d %q %s", code, out, errOut)
	}
	if _, errOut, code := cli(t, "", "mask", tok); code == 0 || !strings.Contains(errOut, "Unauthenticated") {
		t.Fatalf("mask without credentials: %d %s", code, errOut)
	}
	t.Setenv("TOKENVAULT_API_KEY", key)
	if out, errOut, code := cli(t, "", "mask", tok); code != 0 || out != "411111******1111\n" {
		t.Fatalf("mask with the API key: %d %q %s", code, out, errOut)
	}
	os.Unsetenv("TOKENVAULT_API_KEY")

	// SIGHUP reloads the policy.
	if err := os.WriteFile(policy, []byte(strings.Replace(cliPolicy, "[payment]", "[payment, refund]", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	srv.cmd.Process.Signal(syscall.SIGHUP)
	refund := append(as("detokenize", payCert, payKey), "--purpose", "refund", tok)
	for deadline := time.Now().Add(20 * time.Second); ; {
		_, errOut, code := cli(t, "", refund...)
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("policy not reloaded after SIGHUP: %s", errOut)
		}
		time.Sleep(50 * time.Millisecond)
	}
	srv.stop(t)
	logs := srv.stderr.String()
	if strings.Contains(logs, "4111111111111111") || strings.Contains(logs, tok) || strings.Contains(logs, key) {
		t.Fatal("the server log contains a value, a token or the API key")
	}

	pub := filepath.Join(dir, "keys", "audit-signing.key.pub")
	out, errOut, code = cli(t, "", "audit", "verify", "--pubkey", pub, auditLog)
	if code != 0 || !strings.HasPrefix(out, "OK: ") || !strings.Contains(out, "signatures verified") {
		t.Fatalf("audit verify: %d %q %q", code, out, errOut)
	}
	out, _, code = cli(t, "", "audit", "pubkey", "--signing-key", filepath.Join(dir, "keys", "audit-signing.key"))
	if want, _ := os.ReadFile(pub); code != 0 || out != string(want) {
		t.Fatalf("audit pubkey printed %q", out)
	}
	out, _, _ = cli(t, "", "audit", "token-hash", "--signing-key", filepath.Join(dir, "keys", "audit-signing.key"), tok)
	data, _ := os.ReadFile(auditLog)
	if h := strings.TrimSpace(out); len(h) != 32 || !bytes.Contains(data, []byte(h)) || bytes.Contains(data, []byte(tok)) {
		t.Fatalf("token-hash %q not found in the audit log, or the token is", h)
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	tampered := filepath.Join(dir, "tampered.jsonl")
	os.WriteFile(tampered, bytes.Join(append(lines[:1:1], lines[2:]...), nil), 0o600)
	if _, errOut, code := cli(t, "", "audit", "verify", "--pubkey", pub, tampered); code == 0 || !strings.Contains(errOut, "line 2") {
		t.Fatalf("verify of a log with a line removed: %d %s", code, errOut)
	}
}

// TestServeRefusesInsecureSetups: plaintext on a non-loopback address, and
// TLS without a policy, are refused at start.
func TestServeRefusesInsecureSetups(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.New(t, filepath.Join(dir, "pki"))
	c, k := ca.Issue(t, "server", testpki.Leaf{Server: true, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"plaintext non-loopback":  {[]string{"--listen", "0.0.0.0:0"}, "refusing plaintext gRPC"},
		"TLS without a policy":    {[]string{"--listen", "127.0.0.1:0", "--tls-cert", c, "--tls-key", k}, "auth.policy_file: required"},
		"non-loopback, no policy": {[]string{"--listen", "0.0.0.0:0", "--insecure-plaintext-nonloopback"}, "auth.policy_file: required"},
		"bad API key hash":        {[]string{"--listen", "127.0.0.1:0", "--api-key", "a=sha256:00"}, "auth.api_keys[0].hash"},
	} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], append([]string{"serve", "--data-dir", filepath.Join(dir, "data"),
				"--keyring", filepath.Join(dir, "keys", "keyring.age")}, tc.args...)...)
			cmd.Env = append(os.Environ(), "TOKENVAULT_TEST_MAIN=1")
			b, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(b), tc.want) {
				t.Fatalf("serve %v: %v: %s", tc.args, err, b)
			}
		})
	}
}
