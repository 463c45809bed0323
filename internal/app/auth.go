package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/internal/audit"
	"github.com/tokenvault/tokenvault/internal/auth"
	"github.com/tokenvault/tokenvault/internal/config"
	"github.com/tokenvault/tokenvault/internal/grpcserver"
)

// security is the running authn/authz/audit state.
type security struct {
	tls    *auth.ServerTLS        // nil: plaintext
	policy *auth.PolicyFileSource // nil: dev mode
	audit  *audit.Log
	// auditDB: the audit table (auth.audit.sink postgres), else nil.
	auditDB *audit.DB
	// subjects hashes subject ids for the audit log (zeroed at close).
	subjects *audit.SubjectHasher
	guard    *grpcserver.Guard
	log      *slog.Logger
}

// close flushes the guard's counted refusals into the audit log, then
// closes it (after the gRPC server has stopped: the last calls are
// audited).
func (s *security) close() error {
	if s.guard != nil {
		s.guard.Close()
	}
	err := s.audit.Close()
	if s.auditDB != nil {
		s.auditDB.Close() // after the log: its last group goes to the table too
	}
	s.subjects.Zero()
	return err
}

// openSecurity loads TLS material, the policy and the audit log, and
// returns the gRPC server options that enforce them.
// openSecurity sets up TLS, API keys, the policy and the audit log.
// onAuditFailure is called for every audit entry that cannot be written.
// ledger keys the audit log's subject hashes (audit.NewSubjectHasher).
func openSecurity(cfg config.Config, onAuditFailure func(), ledger *aead.Key) (*security, []grpc.ServerOption, error) {
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
	// log holds nothing (current file missing, empty, or not a regular
	// file, and no rotated files).
	hasHistory, err := audit.HasHistory(cfg.Auth.Audit.Path)
	if err != nil {
		return nil, nil, fmt.Errorf("auth.audit.path: %w", err)
	}
	key, created, err := audit.LoadOrCreateSigningKey(cfg.Auth.Audit.SigningKey, !hasHistory)
	if err != nil {
		return nil, nil, err
	}
	if created {
		log.Warn("created the audit signing key: back it up with the keyring; give verifiers the public key",
			"signing_key", cfg.Auth.Audit.SigningKey, "public_key", audit.PublicKeyPath(cfg.Auth.Audit.SigningKey))
	}
	if s.subjects, err = audit.NewSubjectHasher(ledger); err != nil {
		return nil, nil, err
	}
	sink, err := auditSink(cfg.Auth.Audit)
	if err != nil {
		s.subjects.Zero()
		return nil, nil, err
	}
	if cfg.Auth.Audit.DBSink() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s.auditDB, err = audit.OpenDB(ctx, cfg.Auth.Audit.PostgresDSN(cfg.Store))
		cancel()
		if err != nil {
			if sink != nil {
				sink.Close()
			}
			s.subjects.Zero()
			return nil, nil, fmt.Errorf("auth.audit.sink postgres: %w", err)
		}
	}
	s.audit, err = audit.Open(audit.Options{SubjectHash: s.subjects.Hash, Sink: sink, Replica: cfg.Replica.ID, Path: cfg.Auth.Audit.Path, SigningKey: key, DB: s.auditDB,
		CheckpointEvery: cfg.Auth.Audit.CheckpointEvery, CheckpointInterval: cfg.Auth.Audit.CheckpointInterval,
		Logger: log.With("component", "audit"), OnFailure: onAuditFailure, AllowUnverified: cfg.Auth.Audit.AllowUnverifiedHistory,
		Rotation: auditRotation(cfg.Auth.Audit)})
	if err != nil {
		if s.auditDB != nil {
			s.auditDB.Close()
		}
		s.subjects.Zero()
		return nil, nil, err
	}
	log.Info("audit log", "path", cfg.Auth.Audit.Path, "key_id", s.audit.KeyID(), "sink", cfg.Auth.Audit.Sink, "replica", cfg.Replica.ID)
	gcfg := grpcserver.GuardConfig{APIKeys: keys, Audit: s.audit, Logger: log}
	if s.policy != nil {
		gcfg.Policy = s.policy
		if gcfg.Limiter, err = grpcserver.NewLimiter(grpcLimits(cfg.Limits)); err != nil {
			s.close()
			return nil, nil, fmt.Errorf("limits: %w", err)
		}
	}
	guard, err := grpcserver.NewGuard(gcfg)
	if err != nil {
		s.close()
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

// RotateAuditLog rotates the audit log now (cmd/tokenvault calls it on
// SIGHUP, the usual signal for a log writer to start a new file) and
// returns the rotated file's name. A log that is not a regular file is
// not rotated (audit.ErrNotRotatable).
func (a *App) RotateAuditLog(ctx context.Context) (string, error) { return a.sec.audit.Rotate(ctx) }

// AuditStats are the audit log's counters.
func (a *App) AuditStats() audit.Stats { return a.sec.audit.Stats() }

// AuditSubjectHash is the keyed hash that stands for subjectID in this
// server's audit log (audit.Trail finds its entries).
func (a *App) AuditSubjectHash(subjectID string) (string, error) {
	return a.sec.subjects.Hash(subjectID)
}

// AuditLogPath is where this server audits.
func (a *App) AuditLogPath() string { return a.cfg.Auth.Audit.Path }

// grpcLimits converts the limits section for the guard.
func grpcLimits(c config.LimitsConfig) grpcserver.Limits {
	conv := func(r config.RateConfig) grpcserver.Rate {
		return grpcserver.Rate{PerSecond: r.FieldsPerSecond, Burst: r.Burst}
	}
	return grpcserver.Limits{Tokenize: conv(c.Tokenize), Deterministic: conv(c.DeterministicTokenize)}
}

// auditSink is where auth.audit.ship sends a copy of the log (nil: none).
func auditSink(c config.AuditConfig) (audit.Sink, error) {
	switch c.Ship {
	case config.AuditShipStdout:
		return audit.NewWriterSink(os.Stdout), nil
	case config.AuditShipSyslog:
		tag := c.Syslog.Tag
		if tag == "" {
			tag = "tokenvault-audit"
		}
		s, err := audit.DialSyslog(c.Syslog.Network, c.Syslog.Address, tag)
		if err != nil {
			return nil, fmt.Errorf("auth.audit.syslog: %w", err)
		}
		return s, nil
	}
	return nil, nil
}

// auditRotation converts the audit log's rotation and retention settings.
func auditRotation(c config.AuditConfig) audit.Rotation {
	return audit.Rotation{MaxSize: c.Rotate.MaxSize, MaxAge: c.Rotate.MaxAge, Compress: c.Rotate.Compress,
		KeepFiles: c.Retention.MaxFiles, KeepAge: c.Retention.MaxAge}
}
