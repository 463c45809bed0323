// Package app assembles a running tokenvault server from its
// configuration: store, keyring, domain, gRPC server. cmd/tokenvault and
// the end-to-end tests both start servers through it, so tests exercise the
// same wiring users run.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tokenvault/tokenvault/crypto/kek"
	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/crypto/kek/hcvault"
	"github.com/tokenvault/tokenvault/internal/grpcserver"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
)

// Config is the server configuration.
type Config struct {
	// Listen is the gRPC address (default 127.0.0.1:7300).
	Listen string
	// DataDir holds the badger store (default ./tokenvault-data).
	DataDir string
	// KEK selects the key-encryption key provider: "local" (default, the
	// age keyring) or "vault" (HashiCorp Vault transit).
	KEK string
	// Keyring is the local KEK keyring (defaults: ./tokenvault-keys/keyring.age
	// opened by ./tokenvault-keys/identity.txt).
	Keyring agekeyring.Config
	// Vault configures the HashiCorp Vault transit KEK.
	Vault hcvault.Config
	// BackupRetention is how long backups are kept: a KEK version is
	// retired only once its successor is older than this (default 30 days).
	BackupRetention time.Duration
	// HealthInterval is how often the KEK provider's health is checked
	// (default 5s).
	HealthInterval time.Duration
	// AllowPlaintextNonLoopback permits serving plaintext gRPC on a
	// non-loopback address. Off by default: values and tokens would cross
	// the network in the clear.
	AllowPlaintextNonLoopback bool
	// Auth: TLS, API keys, policy, audit log (internal/app/auth.go).
	Auth AuthConfig `yaml:"auth"`
	// ShutdownTimeout bounds the graceful drain (default 10s).
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:7300"
	}
	if c.DataDir == "" {
		c.DataDir = "tokenvault-data"
	}
	if c.KEK == "" {
		c.KEK = KEKLocal
	}
	if c.KEK == KEKVault {
		c.Vault.SetDefaults()
	}
	if c.BackupRetention == 0 {
		c.BackupRetention = 30 * 24 * time.Hour
	}
	if c.HealthInterval == 0 {
		c.HealthInterval = 5 * time.Second
	}
	if c.Keyring.Path == "" {
		c.Keyring.Path = filepath.Join("tokenvault-keys", "keyring.age")
	}
	if c.Keyring.IdentityFile == "" && c.Keyring.Passphrase == "" {
		c.Keyring.IdentityFile = filepath.Join(filepath.Dir(c.Keyring.Path), "identity.txt")
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Auth.SetDefaults()
	c.Auth.setPathDefaults(c.DataDir, c.Keyring.Path)
}

// Validate names the offending setting.
func (c *Config) Validate() error {
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("listen: %q is not host:port: %w", c.Listen, err)
	}
	if err := c.validateListen(host); err != nil {
		return err
	}
	if err := c.Auth.Validate(); err != nil {
		return err
	}
	if c.DataDir == "" {
		return errors.New("data_dir: must not be empty")
	}
	if c.BackupRetention < 0 {
		return errors.New("backup_retention: must not be negative")
	}
	switch c.KEK {
	case KEKLocal:
		return c.Keyring.Validate()
	case KEKVault:
		return c.Vault.Validate()
	default:
		return fmt.Errorf("kek: %q is not %q or %q", c.KEK, KEKLocal, KEKVault)
	}
}

// KEK provider names.
const (
	KEKLocal = "local"
	KEKVault = "vault"
)

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// App is a running server.
type App struct {
	cfg     Config
	store   vault.Store
	kek     kek.Wrapper
	vault   *vault.Vault
	grpc    *grpc.Server
	health  *health.Server
	stopBg  context.CancelFunc
	bgDone  chan struct{}
	lis     net.Listener
	served  chan error
	sec     *security
	Created bool // a new keyring was created at start

	stopOnce sync.Once
	stopErr  error
}

// Start opens the store and keyring and starts serving.
func Start(ctx context.Context, cfg Config) (a *App, err error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	store, err := badgerstore.Open(cfg.DataDir, badgerstore.Options{}, log)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			store.Close()
		}
	}()
	wrapper, created, err := openKEK(ctx, cfg, store)
	if err != nil {
		return nil, err
	}
	a, err = start(ctx, cfg, store, wrapper, created)
	if err != nil {
		closeKEK(wrapper)
	}
	return a, err
}

// openKEK opens the configured KEK provider. It refuses a provider that
// cannot unwrap the keys the store already holds: a wrong keyring or
// transit key would otherwise make every subject unreadable, silently.
func openKEK(ctx context.Context, cfg Config, store vault.Store) (kek.Wrapper, bool, error) {
	log := cfg.Logger
	hasKeys, err := store.HasSubjectKeys(ctx)
	if err != nil {
		return nil, false, err
	}
	var w kek.Wrapper
	created := false
	switch cfg.KEK {
	case KEKVault:
		if w, err = hcvault.New(ctx, cfg.Vault, log.With("component", "hcvault")); err != nil {
			return nil, false, err
		}
		log.Info("using HashiCorp Vault transit as the KEK", "vault", cfg.Vault)
	default:
		var kr agekeyring.Provider
		if kr, created, err = agekeyring.OpenOrCreate(cfg.Keyring, !hasKeys); err != nil {
			return nil, false, err
		}
		w = kr
		if created {
			log.Warn("created a new keyring: back up the identity file and keep it apart from the data directory",
				"keyring", cfg.Keyring.Path, "identity", cfg.Keyring.IdentityFile)
		} else {
			log.Info("opened keyring", "keyring", cfg.Keyring.Path)
		}
	}
	if err := probeKEK(ctx, store, w); err != nil {
		closeKEK(w)
		return nil, false, err
	}
	return w, created, nil
}

// probeKEK unwraps one stored subject key, if there is one. An unreachable
// provider is not fatal (the server starts, reports NOT_SERVING and
// recovers when the provider is back); a provider that answers but cannot
// unwrap is.
func probeKEK(ctx context.Context, store vault.Store, w kek.Wrapper) error {
	page, err := store.SubjectKeys(ctx, "", 1)
	if err != nil || len(page) == 0 {
		return err
	}
	dek, err := w.Unwrap(ctx, page[0].Key.Wrapped)
	clear(dek)
	switch {
	case err == nil, errors.Is(err, kek.ErrUnavailable):
		return nil
	default:
		return fmt.Errorf("the configured key-encryption key cannot unwrap the keys in the data directory (wrong keyring or transit key?): %w", err)
	}
}

func closeKEK(w kek.Wrapper) {
	if c, ok := w.(interface{ Close() error }); ok {
		c.Close()
	}
}

func start(ctx context.Context, cfg Config, store vault.Store, wrapper kek.Wrapper, created bool) (*App, error) {
	v, err := vault.New(ctx, store, wrapper, vault.Options{Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	sec, secOpts, err := openSecurity(cfg)
	if err != nil {
		v.Close()
		return nil, err
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		v.Close()
		sec.audit.Close()
		return nil, fmt.Errorf("listen: %w", err)
	}
	gs, hs := grpcserver.NewGRPCServer(grpcserver.New(v, cfg.Logger), grpcserver.NewAdmin(v, cfg.BackupRetention, cfg.Logger), secOpts...)
	bg, stopBg := context.WithCancel(context.Background())
	a := &App{cfg: cfg, store: store, kek: wrapper, vault: v, grpc: gs, health: hs, lis: lis, sec: sec,
		served: make(chan error, 1), Created: created, stopBg: stopBg, bgDone: make(chan struct{})}
	go a.watchKEK(bg)
	go sec.pollPolicy(bg, cfg.Auth.PolicyPollInterval)
	go func() { a.served <- gs.Serve(lis) }()
	cfg.Logger.Info("tokenvault serving", "addr", lis.Addr().String(), "data_dir", cfg.DataDir, "kek", cfg.KEK)
	return a, nil
}

// watchKEK reports the KEK provider's health through the gRPC health
// service: the TokenVault service is NOT_SERVING while the provider is
// unreachable (requests for subjects whose keys are cached still work).
func (a *App) watchKEK(ctx context.Context) {
	defer close(a.bgDone)
	hc, ok := a.kek.(kek.HealthChecker)
	if !ok {
		return
	}
	healthy := true
	t := time.NewTicker(a.cfg.HealthInterval)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, a.cfg.HealthInterval)
		err := hc.Healthy(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if (err == nil) != healthy {
			healthy = err == nil
			st := healthpb.HealthCheckResponse_SERVING
			if healthy {
				a.cfg.Logger.Info("KEK provider is healthy again")
			} else {
				st = healthpb.HealthCheckResponse_NOT_SERVING
				a.cfg.Logger.Warn("KEK provider unhealthy", "err", err)
			}
			a.health.SetServingStatus(pb.TokenVault_ServiceDesc.ServiceName, st)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Addr is the address the server listens on.
func (a *App) Addr() string { return a.lis.Addr().String() }

// Done is closed (receives Serve's error) if the server stops by itself.
func (a *App) Done() <-chan error { return a.served }

// Stop drains in-flight calls (up to the shutdown timeout, then cuts them),
// zeroes cached keys and closes the store. Calling it again is a no-op.
func (a *App) Stop() error {
	a.stopOnce.Do(func() { a.stopErr = a.stop() })
	return a.stopErr
}

func (a *App) stop() error {
	done := make(chan struct{})
	go func() { a.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(a.cfg.ShutdownTimeout):
		a.grpc.Stop()
		<-done
	}
	a.stopBg()
	<-a.bgDone
	auditErr := a.sec.audit.Close() // after the drain: the last calls are audited
	a.vault.Close()
	closeKEK(a.kek)
	return errors.Join(a.store.Close(), auditErr)
}
