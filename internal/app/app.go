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

	"github.com/tokenvault/tokenvault/crypto/kek"
	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/internal/grpcserver"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
)

// Config is the server configuration.
type Config struct {
	// Listen is the gRPC address (default 127.0.0.1:7300).
	Listen string
	// DataDir holds the badger store (default ./tokenvault-data).
	DataDir string
	// Keyring is the local KEK keyring (defaults: ./tokenvault-keys/keyring.age
	// opened by ./tokenvault-keys/identity.txt).
	Keyring agekeyring.Config
	// AllowPlaintextNonLoopback permits serving plaintext gRPC on a
	// non-loopback address. Off by default: values and tokens would cross
	// the network in the clear.
	AllowPlaintextNonLoopback bool
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
}

// Validate names the offending setting.
func (c *Config) Validate() error {
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("listen: %q is not host:port: %w", c.Listen, err)
	}
	if !c.AllowPlaintextNonLoopback && !isLoopback(host) {
		return fmt.Errorf("listen: refusing plaintext gRPC on non-loopback address %q; listen on 127.0.0.1 or set --insecure-plaintext-nonloopback", c.Listen)
	}
	if c.DataDir == "" {
		return errors.New("data_dir: must not be empty")
	}
	return c.Keyring.Validate()
}

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
	vault   *vault.Vault
	grpc    *grpc.Server
	lis     net.Listener
	served  chan error
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
	hasKeys, err := store.HasSubjectKeys(ctx)
	if err != nil {
		return nil, err
	}
	kr, created, err := agekeyring.OpenOrCreate(cfg.Keyring, !hasKeys)
	if err != nil {
		return nil, err
	}
	if created {
		log.Warn("created a new keyring: back up the identity file and keep it apart from the data directory",
			"keyring", cfg.Keyring.Path, "identity", cfg.Keyring.IdentityFile)
	} else {
		log.Info("opened keyring", "keyring", cfg.Keyring.Path)
	}
	return start(ctx, cfg, store, kr, created)
}

func start(ctx context.Context, cfg Config, store vault.Store, wrapper kek.Wrapper, created bool) (*App, error) {
	v, err := vault.New(ctx, store, wrapper, vault.Options{Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		v.Close()
		return nil, fmt.Errorf("listen: %w", err)
	}
	gs, _ := grpcserver.NewGRPCServer(grpcserver.New(v, cfg.Logger))
	a := &App{cfg: cfg, store: store, vault: v, grpc: gs, lis: lis, served: make(chan error, 1), Created: created}
	go func() { a.served <- gs.Serve(lis) }()
	cfg.Logger.Info("tokenvault serving", "addr", lis.Addr().String(), "data_dir", cfg.DataDir)
	return a, nil
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
	a.vault.Close()
	return a.store.Close()
}
