package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the tokenvault binary, so the CLI is tested as
// users run it: a real "serve" process, signals and all.
func TestMain(m *testing.M) {
	if os.Getenv("TOKENVAULT_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type server struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	addr   string
}

// lockedBuffer collects the server's stderr, which os/exec writes from its
// own goroutine while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startServe(t *testing.T, dir, addr string, extra ...string) *server {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--listen", addr, "--data-dir", filepath.Join(dir, "data"),
		"--keyring", filepath.Join(dir, "keys", "keyring.age"), "--metrics-listen", "127.0.0.1:0"}, extra...)...)
	cmd.Env = append(os.Environ(), "TOKENVAULT_TEST_MAIN=1")
	s := &server{cmd: cmd, stderr: &lockedBuffer{}, addr: addr}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not start: %s", s.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *server) stop(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("serve exited with %v after SIGTERM: %s", err, s.stderr)
	}
}

// cli runs one client command in-process.
func cli(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

func TestCLI(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	srv := startServe(t, dir, addr)
	if !strings.Contains(srv.stderr.String(), "keyring.age") {
		t.Errorf("first start does not print the keyring path: %s", srv.stderr)
	}
	t.Setenv("TOKENVAULT_ADDR", addr)

	out, errOut, code := cli(t, "", "tokenize", "--subject", "cust-1", "--kind", "pan", "4111 1111 1111 1111")
	if code != 0 {
		t.Fatalf("tokenize: %d %s", code, errOut)
	}
	tok := strings.TrimSpace(out)
	if len(tok) != 16 || !strings.HasPrefix(tok, "411111") || !strings.HasSuffix(tok, "1111") {
		t.Fatalf("token %q", tok)
	}
	if out, _, code := cli(t, "", "detokenize", "--purpose", "payment", tok); code != 0 || out != "4111111111111111\n" {
		t.Fatalf("detokenize: %d %q", code, out)
	}
	if out, _, code := cli(t, "", "mask", tok); code != 0 || out != "411111******1111\n" {
		t.Fatalf("mask: %d %q", code, out)
	}
	// Values from stdin stay out of argv.
	out, _, code = cli(t, "jane@example.com\n", "tokenize", "--subject", "cust-1", "--kind", "email", "--deterministic", "-")
	det := strings.TrimSpace(out)
	if code != 0 || !strings.HasSuffix(det, "@example.com") {
		t.Fatalf("tokenize from stdin: %d %q", code, out)
	}
	if out, _, _ := cli(t, "", "tokenize", "--subject", "cust-1", "--kind", "email", "--deterministic", "jane@example.com"); strings.TrimSpace(out) != det {
		t.Fatal("--deterministic gave a different token")
	}
	out, _, code = cli(t, "", "encrypt", "--subject", "cust-1", "--context", "orders.note", "leave at door")
	if code != 0 {
		t.Fatal("encrypt failed")
	}
	blob := strings.TrimSpace(out)
	if out, errOut, code := cli(t, "", "decrypt", "--purpose", "delivery", "--context", "orders.note", blob); code != 0 || out != "leave at door\n" {
		t.Fatalf("decrypt: %d %q %s", code, out, errOut)
	}

	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no subject":       {[]string{"tokenize", "--kind", "pan", "4111111111111111"}, "--subject is required"},
		"bad kind":         {[]string{"tokenize", "--subject", "s", "--kind", "visa", "4111111111111111"}, "fields[0].kind"},
		"bad value":        {[]string{"tokenize", "--subject", "s", "--kind", "pan", "4111"}, "InvalidArgument: fields[0].value"},
		"no purpose":       {[]string{"detokenize", tok}, "--purpose is required"},
		"unknown token":    {[]string{"detokenize", "--purpose", "p", "4111119999991111"}, "NotFound"},
		"decrypt no blob":  {[]string{"decrypt", "--purpose", "p"}, "missing BLOB"},
		"decrypt garbage":  {[]string{"decrypt", "--purpose", "p", "!!!"}, "not base64url"},
		"unknown command":  {[]string{"frobnicate"}, "unknown command"},
		"erase no subject": {[]string{"erase"}, "--subject is required"},
		"unreachable":      {[]string{"mask", "--addr", freeAddr(t), "--timeout", "2s", tok}, "Unavailable"},
	} {
		t.Run(name, func(t *testing.T) {
			out, errOut, code := cli(t, "", tc.args...)
			if code == 0 || out != "" || !strings.Contains(errOut, tc.want) {
				t.Fatalf("code %d, stdout %q, stderr %q; want failure mentioning %q", code, out, errOut, tc.want)
			}
			if strings.Contains(errOut, "4111111111111111") {
				t.Fatal("error output contains the card number")
			}
		})
	}

	out, errOut, code = cli(t, "", "erase", "--subject", "cust-1")
	if code != 0 {
		t.Fatalf("erase: %s", errOut)
	}
	var receipt map[string]any
	if err := json.Unmarshal([]byte(out), &receipt); err != nil || receipt["records_erased"] != float64(2) || receipt["subject_id"] != "cust-1" {
		t.Fatalf("receipt %q: %v", out, err)
	}
	if _, errOut, code := cli(t, "", "detokenize", "--purpose", "p", tok); code == 0 || !strings.Contains(errOut, "NotFound") {
		t.Fatalf("detokenize after erase: %d %s", code, errOut)
	}

	// SIGTERM drains and exits cleanly; a restart reopens the same keyring.
	_, _, _ = cli(t, "", "tokenize", "--subject", "cust-2", "--kind", "name", "Grace Hopper")
	srv.stop(t)
	srv = startServe(t, dir, addr)
	if out, _, code := cli(t, "", "tokenize", "--subject", "cust-2", "--kind", "ssn", "078-05-1120"); code != 0 || out == "" {
		t.Fatal("tokenize after restart failed")
	}
	srv.stop(t)

	// Losing the keyring is reported; nothing is created over the data.
	if err := os.Rename(filepath.Join(dir, "keys", "keyring.age"), filepath.Join(dir, "keyring.bak")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "serve", "--listen", addr, "--data-dir", filepath.Join(dir, "data"),
		"--keyring", filepath.Join(dir, "keys", "keyring.age"))
	cmd.Env = append(os.Environ(), "TOKENVAULT_TEST_MAIN=1")
	b, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(b), "refusing to create a new keyring") {
		t.Fatalf("serve without its keyring: %v: %s", err, b)
	}
	if _, err := os.Stat(filepath.Join(dir, "keys", "keyring.age")); err == nil {
		t.Fatal("a new keyring was created over existing data")
	}
}

// TestCLIKEK: rotation epochs by hand: status, rotate (with progress),
// retire once the retention has passed.
func TestCLIKEK(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	startServe(t, dir, addr, "--backup-retention", "1ms")
	t.Setenv("TOKENVAULT_ADDR", addr)
	var tokens []string
	for i := range 5 {
		out, errOut, code := cli(t, "", "tokenize", "--subject", fmt.Sprint("s", i), "--kind", "phone", "+14155550100")
		if code != 0 {
			t.Fatal(errOut)
		}
		tokens = append(tokens, strings.TrimSpace(out))
	}
	out, _, code := cli(t, "", "kek", "status")
	if code != 0 || !strings.Contains(out, "current version: 1") || !strings.Contains(out, "subject keys 5") {
		t.Fatalf("kek status: %q", out)
	}
	out, errOut, code := cli(t, "", "kek", "rotate")
	if code != 0 || !strings.Contains(out, "KEK version 2 is current; 5 subject keys rewrapped") || !strings.Contains(errOut, "5/5 (100%)") {
		t.Fatalf("kek rotate: %d %q %q", code, out, errOut)
	}
	time.Sleep(5 * time.Millisecond) // past the 1ms retention
	out, errOut, code = cli(t, "", "kek", "retire")
	if code != 0 || !strings.Contains(out, "retired KEK versions [1]") {
		t.Fatalf("kek retire: %d %q %q", code, out, errOut)
	}
	out, _, _ = cli(t, "", "kek", "status")
	if strings.Contains(out, "version 1 ") || !strings.Contains(out, "version 2  created") {
		t.Fatalf("status after retire: %q", out)
	}
	out, errOut, code = cli(t, "", append([]string{"detokenize", "--purpose", "p"}, tokens...)...)
	if code != 0 || strings.Count(out, "+14155550100") != 5 {
		t.Fatalf("detokenize after retire: %q %q", out, errOut)
	}
	if _, errOut, code := cli(t, "", "kek", "frob"); code == 0 || !strings.Contains(errOut, "unknown kek subcommand") {
		t.Fatalf("kek frob: %q", errOut)
	}
}

func TestConfigCheck(t *testing.T) {
	out, errOut, code := cli(t, "", "config", "check", filepath.Join("..", "..", "deploy", "tokenvault.example.yaml"))
	if code != 0 || !strings.Contains(out, ": ok") {
		t.Fatalf("config check of the example: %d %q %q", code, out, errOut)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("kek:\n  provider: hsm\nlog:\n  level: loud\n"), 0o600)
	out, errOut, code = cli(t, "", "config", "check", bad)
	if code == 0 || out != "" || !strings.Contains(errOut, "kek.provider") || !strings.Contains(errOut, "log.level") {
		t.Fatalf("config check of a bad file: %d %q %q", code, out, errOut)
	}
	// serve refuses the same file before opening anything.
	_, errOut, code = cli(t, "", "serve", "--config", bad, "--data-dir", filepath.Join(t.TempDir(), "d"))
	if code == 0 || !strings.Contains(errOut, "invalid configuration") || !strings.Contains(errOut, "kek.provider") {
		t.Fatalf("serve with a bad config: %d %q", code, errOut)
	}
}
