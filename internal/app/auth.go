package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tokenvault/tokenvault/internal/audit"
	"github.com/tokenvault/tokenvault/internal/auth"
	"github.com/tokenvault/tokenvault/internal/grpcserver"
)

// AuthConfig says who may call and where calls are audited (config key
// "auth"). See README "Who may see what".
type AuthConfig struct {
	// TLS serves gRPC over TLS; with client_ca_file, client certificates
	// identify callers (mutual TLS).
	TLS auth.TLSFiles `yaml:"tls"`
	// APIKeys identify callers without certificates ("tokenvault apikey
	// new" makes a key and its hash; only the hash is configured).
	APIKeys []auth.APIKey `yaml:"api_keys"`
	// PolicyFile maps identities to roles and roles to permissions. Empty
	// is dev mode (every caller may do everything), allowed only on a
	// plaintext loopback listener.
	PolicyFile string `yaml:"policy_file"`
	// PolicyPollInterval: how often the policy file is checked for changes
	// (default 10s; negative: only on SIGHUP).
	PolicyPollInterval time.Duration `yaml:"policy_poll_interval"`
	Audit              AuditConfig   `yaml:"audit"`
}

// AuditConfig configures the audit log.
type AuditConfig struct {
	// Path of the JSON-lines log (default: tokenvault-audit/audit.jsonl
	// beside the data directory).
	Path string `yaml:"path"`
	// SigningKey signs checkpoints (Ed25519; default: audit-signing.key
	// beside the keyring). It is created, with its public key in
	// SigningKey + ".pub", only while the log at Path holds no entries: a
	// missing key beside a log with entries stops the server.
	SigningKey string `yaml:"signing_key"`
	// A checkpoint every CheckpointEvery entries (default 1000) and at
	// least every CheckpointInterval while entries come in (default 1m).
	CheckpointEvery    int           `yaml:"checkpoint_every"`
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// AllowUnverifiedHistory lets the server start on a log whose end it
	// cannot verify (no valid checkpoint of its key, or more unsigned
	// entries after the last one than it ever leaves), instead of refusing.
	// The acceptance is written into the log. Only after checking the log
	// with `tokenvault audit verify`, and for one start.
	AllowUnverifiedHistory bool `yaml:"allow_unverified_history"`
}

// SetDefaults fills unset fields that do not depend on other sections.
func (c *AuthConfig) SetDefaults() {
	if c.PolicyPollInterval == 0 {
		c.PolicyPollInterval = 10 * time.Second
	}
	if c.Audit.CheckpointEvery == 0 {
		c.Audit.CheckpointEvery = 1000
	}
	if c.Audit.CheckpointInterval == 0 {
		c.Audit.CheckpointInterval = time.Minute
	}
}

// setPathDefaults places the audit log beside the data directory (not in
// it: badger owns that directory) and the signing key beside the keyring.
func (c *AuthConfig) setPathDefaults(dataDir, keyring string) {
	if c.Audit.Path == "" {
		c.Audit.Path = filepath.Join(filepath.Dir(filepath.Clean(dataDir)), "tokenvault-audit", "audit.jsonl")
	}
	if c.Audit.SigningKey == "" {
		c.Audit.SigningKey = filepath.Join(filepath.Dir(keyring), "audit-signing.key")
	}
}

// TLSEnabled reports whether the listener serves TLS.
func (c *AuthConfig) TLSEnabled() bool { return c.TLS.Cert != "" || c.TLS.Key != "" }

// Validate names the offending key. Rules that involve the listen address
// are in Config.Validate.
func (c *AuthConfig) Validate() error {
	t := c.TLS
	switch {
	case t.Cert != "" && t.Key == "":
		return errors.New("auth.tls.key_file: required with auth.tls.cert_file")
	case t.Key != "" && t.Cert == "":
		return errors.New("auth.tls.cert_file: required with auth.tls.key_file")
	case t.ClientCA != "" && t.Cert == "":
		return errors.New("auth.tls.cert_file: client certificates (client_ca_file) need TLS: set cert_file and key_file")
	case t.RequireClientCert && t.ClientCA == "":
		return errors.New("auth.tls.client_ca_file: required with require_client_cert")
	}
	if _, err := auth.NewAPIKeys(c.APIKeys); err != nil {
		return fmt.Errorf("auth.api_keys%w", err)
	}
	if c.Audit.Path == "" {
		return errors.New("auth.audit.path: must not be empty")
	}
	if c.Audit.SigningKey == "" {
		return errors.New("auth.audit.signing_key: must not be empty")
	}
	if c.Audit.CheckpointEvery < 0 {
		return errors.New("auth.audit.checkpoint_every: must not be negative")
	}
	if c.Audit.CheckpointInterval < 0 {
		return errors.New("auth.audit.checkpoint_interval: must not be negative")
	}
	return nil
}

// validateListen checks the rules that tie security to the listen
// address: plaintext only on loopback (unless explicitly allowed), and
// dev mode (no policy) only on plaintext loopback.
func (c *Config) validateListen(host string) error {
	tlsOn := c.Auth.TLSEnabled()
	if !tlsOn && !c.AllowPlaintextNonLoopback && !isLoopback(host) {
		return fmt.Errorf("listen: refusing plaintext gRPC on non-loopback address %q; configure TLS (--tls-cert/--tls-key) or set --insecure-plaintext-nonloopback", c.Listen)
	}
	if c.Auth.PolicyFile == "" && (tlsOn || !isLoopback(host)) {
		return errors.New("auth.policy_file: required with TLS or on a non-loopback address (without a policy every caller may reveal everything); see deploy/policy/")
	}
	return nil
}

// security is the running authn/authz/audit state.
type security struct {
	tls    *auth.ServerTLS        // nil: plaintext
	policy *auth.PolicyFileSource // nil: dev mode
	audit  *audit.Log
	guard  *grpcserver.Guard
	log    *slog.Logger
}

// close flushes the guard's counted refusals into the audit log, then
// closes it (after the gRPC server has stopped: the last calls are
// audited).
func (s *security) close() error {
	if s.guard != nil {
		s.guard.Close()
	}
	return s.audit.Close()
}

// openSecurity loads TLS material, the policy and the audit log, and
// returns the gRPC server options that enforce them.
// openSecurity sets up TLS, API keys, the policy and the audit log.
// onAuditFailure is called for every audit entry that cannot be written.
func openSecurity(cfg Config, onAuditFailure func()) (*security, []grpc.ServerOption, error) {
	log := cfg.Logger
	s := &security{log: log}
	var opts []grpc.ServerOption
	var err error
	if cfg.Auth.TLSEnabled() {
		if s.tls, err = auth.NewServerTLS(cfg.Auth.TLS); err != nil {
			return nil, nil, err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.tls.Config())))
		log.Info("serving TLS", "cert", cfg.Auth.TLS.Cert, "client_ca", cfg.Auth.TLS.ClientCA,
			"require_client_cert", cfg.Auth.TLS.RequireClientCert)
	}
	keys, err := auth.NewAPIKeys(cfg.Auth.APIKeys)
	if err != nil {
		return nil, nil, fmt.Errorf("auth.api_keys%w", err)
	}
	if cfg.Auth.PolicyFile != "" {
		if s.policy, err = auth.LoadPolicyFile(cfg.Auth.PolicyFile); err != nil {
			return nil, nil, err
		}
		log.Info("policy loaded", "policy_file", cfg.Auth.PolicyFile)
	} else {
		log.Warn("NO POLICY FILE: DEV MODE — every caller, even without credentials, may tokenize, reveal and erase everything. " +
			"Allowed only on a plaintext loopback listener; set --policy for anything else")
	}
	// A new key beside a log with entries would leave a log whose earlier
	// checkpoints no longer verify: the key may be created only while the
	// log holds nothing (missing, empty, or not a regular file).
	st, statErr := os.Stat(cfg.Auth.Audit.Path)
	if statErr != nil && !errors.Is(statErr, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("auth.audit.path: %w", statErr)
	}
	hasHistory := statErr == nil && st.Mode().IsRegular() && st.Size() > 0
	key, created, err := audit.LoadOrCreateSigningKey(cfg.Auth.Audit.SigningKey, !hasHistory)
	if err != nil {
		return nil, nil, err
	}
	if created {
		log.Warn("created the audit signing key: back it up with the keyring; give verifiers the public key",
			"signing_key", cfg.Auth.Audit.SigningKey, "public_key", audit.PublicKeyPath(cfg.Auth.Audit.SigningKey))
	}
	s.audit, err = audit.Open(audit.Options{Path: cfg.Auth.Audit.Path, SigningKey: key,
		CheckpointEvery: cfg.Auth.Audit.CheckpointEvery, CheckpointInterval: cfg.Auth.Audit.CheckpointInterval,
		Logger: log.With("component", "audit"), OnFailure: onAuditFailure, AllowUnverified: cfg.Auth.Audit.AllowUnverifiedHistory})
	if err != nil {
		return nil, nil, err
	}
	log.Info("audit log", "path", cfg.Auth.Audit.Path, "key_id", s.audit.KeyID())
	gcfg := grpcserver.GuardConfig{APIKeys: keys, Audit: s.audit, Logger: log}
	if s.policy != nil {
		gcfg.Policy = s.policy
		if gcfg.Limiter, err = grpcserver.NewLimiter(cfg.Limits.grpcLimits()); err != nil {
			s.audit.Close()
			return nil, nil, fmt.Errorf("limits: %w", err)
		}
	}
	guard, err := grpcserver.NewGuard(gcfg)
	if err != nil {
		s.audit.Close()
		return nil, nil, err
	}
	s.guard = guard
	return s, append(opts, guard.ServerOptions()...), nil
}

// reload re-reads the policy and the TLS files. A bad file is logged and
// the one in force stays.
func (s *security) reload() error {
	var errs []error
	if s.policy != nil {
		changed, err := s.policy.Reload()
		switch {
		case err != nil:
			s.log.Error("policy reload failed; keeping the policy in force", "err", err)
			errs = append(errs, err)
		case changed:
			s.log.Info("policy reloaded", "policy_file", s.policy.Path())
		}
	}
	if s.tls != nil {
		if err := s.tls.Reload(); err != nil {
			s.log.Error("TLS reload failed; keeping the certificates in force", "err", err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// pollPolicy reloads the policy when its file changes.
func (s *security) pollPolicy(ctx context.Context, interval time.Duration) {
	if s.policy == nil || interval <= 0 {
		return
	}
	every(ctx, interval, false, func() {
		changed, err := s.policy.Reload()
		if err != nil {
			// Logged on every poll until fixed: a broken policy file
			// should not go unnoticed.
			s.log.Error("policy file changed but does not load; keeping the policy in force", "err", err)
		} else if changed {
			s.log.Info("policy reloaded (file changed)", "policy_file", s.policy.Path())
		}
	})
}

// Reload re-reads the policy file and the TLS certificate, key and client
// CA (cmd/tokenvault calls it on SIGHUP). On error the old ones stay in
// force; the error says why.
func (a *App) Reload() error { return a.sec.reload() }

// AuditLogPath is where this server audits.
func (a *App) AuditLogPath() string { return a.cfg.Auth.Audit.Path }
