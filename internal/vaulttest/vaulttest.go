// Package vaulttest gives integration tests a real HashiCorp Vault server.
//
// [Start] picks, in order:
//
//  1. an already running server named by VAULT_ADDR and VAULT_TOKEN (the
//     standard Vault variables). Tests share it, so [Server.Stop],
//     [Server.Restart] and [Server.RequireOwned] skip;
//  2. a Vault binary named by TOKENVAULT_VAULT_BIN, or the one cached by
//     deploy/vault-dev/build.sh, started on a free loopback port for this
//     test only and killed when the test ends.
//
// Without either, tests are skipped with a message saying how to get a
// server, except when CI=true: CI must run them, so there they fail. A
// package whose TestMain runs through [Main] also says, after its tests,
// how many were skipped that way: "go test ./..." shows no skip messages
// of passing packages, so without it they would be skipped silently.
//
// A started server is not `vault server -dev`: dev mode keeps everything in
// memory, and outage tests need transit keys to survive a restart. It uses
// file storage in the test's temporary directory, and the helper does what an
// operator would (init with one key share, unseal). Restart unseals again.
package vaulttest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
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

	"github.com/hashicorp/vault/api"
)

// modulePath identifies the tokenvault module root, where deploy/vault-dev
// lives, when walking up from a test's working directory.
const modulePath = "github.com/tokenvault/tokenvault"

// startTimeout bounds how long a server may take to listen, unseal and
// become active. Vault needs about a second; slow CI machines get slack.
const startTimeout = 60 * time.Second

// Server is a Vault server for one test.
type Server struct {
	// Addr is the server's address, e.g. "http://127.0.0.1:8200".
	Addr string
	// Token is a root token.
	Token string
	// Client talks to Addr with Token.
	Client *api.Client

	t        testing.TB
	external bool

	// Only for servers this package started.
	bin       string
	dir       string
	listen    string
	unsealKey string

	mu   sync.Mutex
	proc *exec.Cmd
	exit chan struct{} // closed when proc has exited
}

// Start returns a Vault server for t, or skips (fails under CI=true) t when
// none is available. A server it starts is stopped when t ends.
func Start(t testing.TB) *Server {
	t.Helper()

	if addr, token := os.Getenv("VAULT_ADDR"), os.Getenv("VAULT_TOKEN"); addr != "" && token != "" {
		s := &Server{Addr: addr, Token: token, t: t, external: true}
		s.Client = newClient(t, addr, token)
		return s
	}

	bin, why := findBinary()
	if bin == "" {
		msg := "no HashiCorp Vault server for integration tests (" + why + "): " +
			"run `bash deploy/vault-dev/build.sh` once (builds and caches a Vault binary, several minutes) " +
			"and rerun, or set VAULT_ADDR and VAULT_TOKEN to a running server"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		noteSkip(why)
		t.Skip(msg)
	}

	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	s.listen = freeLoopbackAddr(t)
	s.Addr = "http://" + s.listen
	if err := os.WriteFile(filepath.Join(s.dir, "vault.hcl"), []byte(s.config()), 0o600); err != nil {
		t.Fatalf("vaulttest: write config: %v", err)
	}
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Log("vaulttest: " + s.logTail())
		}
	})
	s.launch()

	s.Client = newClient(t, s.Addr, "")
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	resp, err := s.Client.Sys().InitWithContext(ctx, &api.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		s.fatalf("init: %v", err)
	}
	s.unsealKey = resp.KeysB64[0]
	s.Token = resp.RootToken
	s.Client.SetToken(s.Token)
	s.unseal()
	return s
}

// Stop kills the server, simulating an outage. Its storage is kept for
// Restart. On a shared external server it skips the test instead.
func (s *Server) Stop() {
	s.t.Helper()
	s.RequireOwned(s.t)
	s.kill()
}

// Restart starts a stopped server again on the same address with the same
// storage and unseals it, so transit keys written before Stop are back.
func (s *Server) Restart() {
	s.t.Helper()
	s.RequireOwned(s.t)
	s.mu.Lock()
	running := s.proc != nil
	s.mu.Unlock()
	if running {
		s.t.Fatal("vaulttest: Restart of a running server; call Stop first")
	}
	s.launch()
	s.unseal()
}

// RequireOwned skips t when the server is a shared external one (VAULT_ADDR),
// for tests that stop it or change server-wide state such as the "transit"
// mount or auth methods.
func (s *Server) RequireOwned(t testing.TB) {
	t.Helper()
	if s.external {
		t.Skip("vaulttest: needs a Vault server of its own, not the shared VAULT_ADDR one")
	}
}

// EnableTransit mounts the transit secrets engine at mount and returns the
// mount path. An empty mount picks a random one, so that tests sharing an
// external server do not collide; such mounts are removed when t ends.
func (s *Server) EnableTransit(t testing.TB, mount string) string {
	t.Helper()
	random := mount == ""
	if random {
		mount = "transit-" + randomHex(t, 6)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Client.Sys().MountWithContext(ctx, mount, &api.MountInput{Type: "transit"}); err != nil {
		t.Fatalf("vaulttest: enable transit at %q: %v", mount, err)
	}
	if random && s.external {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := s.Client.Sys().UnmountWithContext(ctx, mount); err != nil {
				t.Logf("vaulttest: disable transit at %q: %v", mount, err)
			}
		})
	}
	return mount
}

// CreateTransitKey creates an aes256-gcm96 transit key (the type tokenvault
// uses, see deploy/vault/README.md) named name under mount.
func (s *Server) CreateTransitKey(t testing.TB, mount, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := s.Client.Logical().WriteWithContext(ctx, mount+"/keys/"+name, map[string]any{"type": "aes256-gcm96"})
	if err != nil {
		t.Fatalf("vaulttest: create transit key %s/%s: %v", mount, name, err)
	}
}

// Transit enables transit at a random mount with one key and returns both
// names: the setup most tests want.
func (s *Server) Transit(t testing.TB) (mount, key string) {
	t.Helper()
	mount = s.EnableTransit(t, "")
	key = "tokenvault"
	s.CreateTransitKey(t, mount, key)
	return mount, key
}

// findBinary returns the Vault binary to run, or "" and the reason why none
// was found.
func findBinary() (bin, why string) {
	if bin := os.Getenv("TOKENVAULT_VAULT_BIN"); bin != "" {
		// An explicit setting that does not work is a mistake to report, not a
		// reason to fall back silently; launch fails loudly on it.
		return bin, ""
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err.Error()
	}
	bin, err = cachedBinary(root)
	if err != nil {
		return "", err.Error()
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() {
		return "", "no cached binary at " + bin
	}
	return bin, ""
}

// cachedBinary computes the path deploy/vault-dev/build.sh caches the
// binary at; the two must agree.
func cachedBinary(root string) (string, error) {
	sum, err := os.ReadFile(filepath.Join(root, "deploy", "vault-dev", "go.sum"))
	if err != nil {
		return "", fmt.Errorf("read deploy/vault-dev/go.sum: %w", err)
	}
	cache := os.Getenv("TOKENVAULT_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("locate the binary cache: %w", err)
		}
		cache = filepath.Join(home, ".cache", "tokenvault")
	}
	h := sha256.Sum256(sum)
	return filepath.Join(cache, "vault-"+hex.EncodeToString(h[:])[:16], "vault"), nil
}

// moduleRoot walks up from the working directory (a test runs in its
// package directory) to the tokenvault module's go.mod. It checks the module
// line because deploy/vault-dev has a go.mod of its own.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && declaresModule(data, modulePath) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the " + modulePath + " module")
		}
		dir = parent
	}
}

func declaresModule(gomod []byte, path string) bool {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == path
		}
	}
	return false
}

func (s *Server) config() string {
	return fmt.Sprintf(`storage "file" {
  path = %q
}

listener "tcp" {
  address     = %q
  tls_disable = true
}

api_addr      = %q
disable_mlock = true
ui            = false
`, filepath.Join(s.dir, "data"), s.listen, s.Addr)
}

// launch starts the server process and waits until its listener answers.
func (s *Server) launch() {
	s.t.Helper()
	logf, err := os.OpenFile(filepath.Join(s.dir, "vault.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatalf("vaulttest: open server log: %v", err)
	}
	cmd := exec.Command(s.bin, "server", "-config", filepath.Join(s.dir, "vault.hcl"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = serverEnv()
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.t.Fatalf("vaulttest: start %s: %v", s.bin, err)
	}
	exit := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exit)
	}()
	s.mu.Lock()
	s.proc, s.exit = cmd, exit
	s.mu.Unlock()

	// Any HTTP answer from sys/health means the listener is up; the api
	// client maps uninitialised and sealed states to 2xx for this call.
	probe := newClient(s.t, s.Addr, "")
	probe.SetMaxRetries(0)
	s.waitFor("listener", func(ctx context.Context) bool {
		_, err := probe.Sys().HealthWithContext(ctx)
		return err == nil
	})
}

// unseal unseals the server and waits until it is active.
func (s *Server) unseal() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if _, err := s.Client.Sys().UnsealWithContext(ctx, s.unsealKey); err != nil {
		s.fatalf("unseal: %v", err)
	}
	s.waitFor("active after unseal", func(ctx context.Context) bool {
		h, err := s.Client.Sys().HealthWithContext(ctx)
		return err == nil && h.Initialized && !h.Sealed && !h.Standby
	})
}

func (s *Server) waitFor(what string, ready func(context.Context) bool) {
	s.t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ok := ready(ctx)
		cancel()
		if ok {
			return
		}
		s.mu.Lock()
		exit := s.exit
		s.mu.Unlock()
		select {
		case <-exit:
			s.fatalf("server exited while waiting for %s", what)
		default:
		}
		if time.Now().After(deadline) {
			s.fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill stops the process: SIGTERM for a clean shutdown of file storage,
// SIGKILL if it does not exit promptly.
func (s *Server) kill() {
	s.mu.Lock()
	cmd, exit := s.proc, s.exit
	s.proc = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exit:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exit
	}
}

// fatalf fails the test with the tail of the server log.
func (s *Server) fatalf(format string, args ...any) {
	s.t.Helper()
	s.t.Fatal("vaulttest: " + fmt.Sprintf(format, args...) + "\n" + s.logTail())
}

// logTail returns the end of the server log, which usually says why Vault
// misbehaved.
func (s *Server) logTail() string {
	log, err := os.ReadFile(filepath.Join(s.dir, "vault.log"))
	if err != nil {
		return "no vault server log: " + err.Error()
	}
	if len(log) > 4096 {
		log = log[len(log)-4096:]
	}
	return "--- vault server log (tail) ---\n" + string(log)
}

// serverEnv is the environment minus VAULT_* variables, which could point
// the server's own CLI plumbing at another server.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") {
			env = append(env, kv)
		}
	}
	return env
}

func newClient(t testing.TB, addr, token string) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	if cfg.Error != nil {
		t.Fatalf("vaulttest: api config: %v", cfg.Error)
	}
	cfg.Address = addr
	cfg.Timeout = 30 * time.Second
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatalf("vaulttest: api client: %v", err)
	}
	c.SetToken(token)
	return c
}

func freeLoopbackAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("vaulttest: find a free port: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("vaulttest: random: %v", err)
	}
	return hex.EncodeToString(b)
}
