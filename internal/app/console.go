package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/tokenvault/tokenvault/internal/console"
	"github.com/tokenvault/tokenvault/internal/grpcserver"
	"github.com/tokenvault/tokenvault/vault"
)

// The privacy console (internal/console) on its own listener: the same
// guard, handlers and domain as the gRPC server, so a console user is a
// policy identity like any caller.

// consoleServer is the running console (nil fields: off).
type consoleServer struct {
	http *http.Server
	addr string
}

// startConsole serves the console if console.listen is set, over TLS when
// the gRPC listener has TLS (same certificate and client CA).
func (a *App) startConsole(srv *grpcserver.Server, admin *grpcserver.Admin, v *vault.Vault) error {
	cfg := a.cfg
	if !cfg.Console.Enabled() {
		return nil
	}
	o := console.Options{Guard: a.sec.guard, Service: srv, Admin: admin, Vault: v,
		TokenHash: a.sec.audit.TokenHash, Trail: a.consoleTrail(),
		KEKProvider: cfg.KEK.Provider, BackupHorizon: cfg.Rights.RotationInterval + cfg.KEK.BackupRetention,
		KEKHealthy: func() error {
			if !a.kekHealthy.Load() {
				return errors.New("the KEK provider does not answer its health check")
			}
			return nil
		},
		IdleTimeout: cfg.Console.IdleTimeout, RevealFor: cfg.Console.RevealFor, TLS: a.sec.tls != nil, Logger: cfg.Logger.With("component", "console")}
	if a.sec.policy != nil {
		o.Policy = a.sec.policy // a nil *PolicyFileSource must not become a non-nil interface
	}
	c, err := console.New(o)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", cfg.Console.Listen)
	if err != nil {
		return fmt.Errorf("console.listen: %w", err)
	}
	if a.sec.tls != nil {
		base := a.sec.tls.Config()
		lis = tls.NewListener(lis, &tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{"h2", "http/1.1"},
			GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
				cur, err := base.GetConfigForClient(hello)
				if err != nil {
					return nil, err
				}
				cur = cur.Clone()
				cur.NextProtos = []string{"h2", "http/1.1"} // browsers and curl
				return cur, nil
			}})
	}
	log := cfg.Logger.With("component", "console")
	a.console = &consoleServer{addr: lis.Addr().String(), http: &http.Server{Handler: c,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelInfo)}}
	go a.console.http.Serve(lis)
	cfg.Logger.Info("privacy console serving", "addr", a.console.addr, "tls", a.sec.tls != nil)
	return nil
}

// ConsoleAddr is the privacy console's address ("" if off).
func (a *App) ConsoleAddr() string {
	if a.console == nil {
		return ""
	}
	return a.console.addr
}

// stopConsole lets console requests in flight finish (up to the shutdown
// timeout), so that their audit entries are written before the audit log
// closes.
func (a *App) stopConsole() {
	if a.console == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	if a.console.http.Shutdown(ctx) != nil {
		a.console.http.Close()
	}
}

// consoleTrail is where the subject page reads the trail: the audit table
// (every replica's entries) with auth.audit.sink postgres, else this
// server's files.
func (a *App) consoleTrail() console.Trail {
	if a.sec.auditDB != nil {
		return console.AuditDBTrail{DB: a.sec.auditDB, SubjectHash: a.AuditSubjectHash}
	}
	return console.AuditFileTrail{Dir: filepath.Dir(a.cfg.Auth.Audit.Path), SubjectHash: a.AuditSubjectHash}
}
