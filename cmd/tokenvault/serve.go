package main

// serve and config: the server's settings from the config file, the
// environment and flags (internal/config), then internal/app runs it.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/internal/app"
	"github.com/tokenvault/tokenvault/internal/audit"
	"github.com/tokenvault/tokenvault/internal/config"
	"github.com/tokenvault/tokenvault/internal/logline"
)

// flagKind is how a serve flag parses; config.Set reads the result.
type flagKind int

const (
	stringFlag   flagKind = iota
	durationFlag          // 30s, 10m, 720h
	boolFlag              // given alone: true
	listFlag              // repeatable; the values joined with ","
)

// serveFlags are the settings common enough to have flags. Each one is its
// config key: given on the command line it wins over the file and the
// environment; not given, it leaves them as they are.
var serveFlags = []struct {
	name, key string
	kind      flagKind
	usage     string
}{
	{"listen", "listen", stringFlag, "gRPC listen address (default 127.0.0.1:7300)"},
	{"data-dir", "data_dir", stringFlag, "data directory (default ./tokenvault-data)"},
	{"insecure-plaintext-nonloopback", "insecure_plaintext_nonloopback", boolFlag, "allow plaintext gRPC on a non-loopback address: values cross the network unencrypted"},
	{"kek", "kek.provider", stringFlag, "key-encryption key provider: local or vault"},
	{"keyring", "kek.keyring.path", stringFlag, "age-encrypted KEK keyring file"},
	{"keyring-identity", "kek.keyring.identity_file", stringFlag, "age identity file that opens the keyring"},
	{"backup-retention", "kek.backup_retention", durationFlag, "how long backups are kept; bounds KEK retirement"},
	{"metrics-listen", "metrics.listen", stringFlag, `address of /metrics, /healthz, /readyz, or "off"`},
	{"log-format", "log.format", stringFlag, "log format: text or json"},
	{"log-level", "log.level", stringFlag, "log level: debug, info, warn, error"},
	{"log-access", "log.access", boolFlag, "log one line per call at info level (default true; --log-access=false logs only failures)"},
	{"rotation-interval", "rights.rotation_interval", durationFlag, "how often you rotate and retire the KEK; erasure receipts promise backups dead by erasure + this + backup retention"},
	{"purge-interval", "rights.purge_interval", durationFlag, "how often expired tokens are purged"},
	{"retention", "rights.retention", listFlag, "default token expiry per kind, `KIND=DURATION` (e.g. pan=2160h); repeatable, replaces the configured map"},
	{"pprof-listen", "profiling.listen", stringFlag, "serve Go pprof profiles on this loopback address, e.g. 127.0.0.1:6060 (off by default; see BENCHMARKS.md)"},
	{"console-listen", "console.listen", stringFlag, "serve the privacy console on this address; a port alone (:7380) is loopback only (off by default; see README \"Privacy console\")"},
	{"tls-cert", "auth.tls.cert_file", stringFlag, "PEM server certificate: serve TLS"},
	{"tls-key", "auth.tls.key_file", stringFlag, "PEM server private key"},
	{"tls-client-ca", "auth.tls.client_ca_file", stringFlag, "PEM CA bundle that verifies client certificates: mutual TLS"},
	{"tls-require-client-cert", "auth.tls.require_client_cert", boolFlag, "refuse connections without a client certificate, so no API keys"},
	{"policy", "auth.policy_file", stringFlag, "YAML policy file (see deploy/policy); without one: dev mode, every caller may do everything, plaintext loopback only"},
	{"policy-poll", "auth.policy_poll_interval", durationFlag, "how often to re-read the policy file when it changes (default 10s; negative: only on SIGHUP)"},
	{"api-key", "auth.api_keys", listFlag, "an API key as `NAME=sha256:HEX`, added to those of the file and env " + config.APIKeysEnv + " (repeatable or comma-separated); make one with \"tokenvault apikey new\""},
	{"audit-log", "auth.audit.path", stringFlag, "audit log file (default: tokenvault-audit/audit.jsonl beside the data directory)"},
	{"audit-signing-key", "auth.audit.signing_key", stringFlag, "Ed25519 key that signs audit checkpoints, created if missing (default: audit-signing.key beside the keyring)"},
	{"audit-ship", "auth.audit.ship", stringFlag, "also write every audit line to stdout or syslog (for a log shipper; the copy verifies with the public key) or none"},
	{"audit-sink", "auth.audit.sink", stringFlag, "where audit entries must be durable before a call answers: file (default) or postgres (a table for every replica's trail, then the file; DSN auth.audit.postgres.dsn or store.postgres.dsn)"},
	{"audit-allow-unverified", "auth.audit.allow_unverified_history", boolFlag, "start even if the end of the audit log does not verify against its last signed checkpoint (check it with \"tokenvault audit verify\" first; the acceptance is audited)"},
}

// repeated collects a repeatable flag.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

// serveConfig parses serve's flags, loads the config file and the
// environment, and applies the flags that were given. It does not
// validate.
func serveConfig(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) (config.Config, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	envConfig, _ := lookupEnv("TOKENVAULT_CONFIG")
	configFile := fs.String("config", envConfig, "YAML config file (env TOKENVAULT_CONFIG); see deploy/tokenvault.example.yaml")
	keys := map[string]string{}
	for _, f := range serveFlags {
		usage := f.usage + " (" + f.key + ")"
		switch f.kind {
		case stringFlag:
			fs.String(f.name, "", usage)
		case durationFlag:
			fs.Duration(f.name, 0, usage)
		case boolFlag:
			fs.Bool(f.name, false, usage)
		case listFlag:
			fs.Var(new(repeated), f.name, usage)
		}
		keys[f.name] = f.key
	}
	if err := parseFlags(fs, args); err != nil {
		return config.Config{}, err
	}
	if fs.NArg() > 0 {
		return config.Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfg, err := config.Load(*configFile, lookupEnv)
	if err != nil && !errors.Is(err, config.ErrInvalid) {
		return cfg, err
	}
	// Only the flags given: an unset flag must not reset the file's value.
	errs := []error{err}
	fs.Visit(func(f *flag.Flag) {
		if key, ok := keys[f.Name]; ok {
			if err := cfg.Set(key, f.Value.String()); err != nil {
				errs = append(errs, fmt.Errorf("--%s: %w", f.Name, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return cfg, invalidConfig{err}
	}
	return cfg, nil
}

// invalidConfig: problems with the settings (file, environment, flags)
// rather than a failure to read them; Validate's findings are reported
// with them, so the user sees every problem at once.
type invalidConfig struct{ error }

func (e invalidConfig) Unwrap() error { return e.error }

func serve(args []string, _ io.Reader, _, stderr io.Writer) error {
	cfg, err := serveConfig(args, os.LookupEnv, stderr)
	if inv := (invalidConfig{}); err != nil && !errors.As(err, &inv) {
		return err // flags that do not parse, a file that cannot be read
	}
	if err := errors.Join(err, config.Validate(&cfg)); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	cfg.Logger = newLogger(cfg.Log, stderr)
	applyHeapLimit(cfg.Memory, os.LookupEnv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := app.Start(ctx, cfg)
	if errors.Is(err, agekeyring.ErrNotExist) {
		return fmt.Errorf("%w\n(refusing to create a new keyring over existing data)", err)
	}
	if err != nil {
		return err
	}
	// SIGHUP reloads the policy and TLS files (errors are logged; the old
	// ones stay in force) and rotates the audit log.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			cfg.Logger.Info("SIGHUP: reloading policy and TLS files, rotating the audit log")
			a.Reload()
			if name, err := a.RotateAuditLog(ctx); errors.Is(err, audit.ErrNotRotatable) {
				cfg.Logger.Info("SIGHUP: the audit log is not a regular file; not rotated")
			} else if err != nil {
				cfg.Logger.Error("SIGHUP: audit log rotation failed", "err", err)
			} else {
				cfg.Logger.Info("SIGHUP: audit log rotated", "rotated", name)
			}
			continue
		case <-ctx.Done():
			cfg.Logger.Info("shutting down: draining in-flight calls", "timeout", cfg.ShutdownTimeout)
		case err := <-a.Done():
			a.Stop()
			return fmt.Errorf("server stopped: %w", err)
		}
		return a.Stop()
	}
}

// applyHeapLimit sets the Go heap's soft limit from memory.heap_limit_mib,
// unless GOMEMLIMIT is set (the runtime has applied it already, and an
// operator who sets it means it).
func applyHeapLimit(c config.MemoryConfig, lookupEnv func(string) (string, bool)) {
	if _, ok := lookupEnv("GOMEMLIMIT"); ok {
		return
	}
	if n := c.HeapLimit(); n > 0 {
		debug.SetMemoryLimit(n)
	}
}

func newLogger(c config.LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Level)) // validated by config.Validate
	// slog's text or JSON handler, with a fast path for the access line
	// (internal/logline: the same bytes, fewer instructions per call).
	return slog.New(logline.New(w, c.Format == "json", &slog.HandlerOptions{Level: level}))
}

// configCmd: "config check FILE" validates a config file (with the
// environment applied, as serve would) without starting anything.
func configCmd(args []string, _ io.Reader, stdout, _ io.Writer) error {
	if len(args) != 2 || args[0] != "check" {
		return errors.New("usage: tokenvault config check FILE")
	}
	cfg, err := config.Load(args[1], os.LookupEnv)
	if err != nil && !errors.Is(err, config.ErrInvalid) {
		return err
	}
	if err := errors.Join(err, config.Validate(&cfg)); err != nil {
		return fmt.Errorf("%s is invalid:\n%w", args[1], err)
	}
	fmt.Fprintf(stdout, "%s: ok (kek provider %s, listen %s, data_dir %s)\n", args[1], cfg.KEK.Provider, cfg.Listen, cfg.DataDir)
	return nil
}
