// Package app assembles a running tokenvault server from its
// configuration: store, keyring, domain, gRPC server. cmd/tokenvault and
// the end-to-end tests both start servers through it, so tests exercise the
// same wiring users run.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tokenvault/tokenvault/crypto/kek"
	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/crypto/kek/hcvault"
	"github.com/tokenvault/tokenvault/internal/backup"
	"github.com/tokenvault/tokenvault/internal/config"
	"github.com/tokenvault/tokenvault/internal/grpcserver"
	"github.com/tokenvault/tokenvault/internal/metrics"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
)

// App is a running server.
type App struct {
	cfg   config.Config
	store appStore
	// badger is store when it is the badger store (GC, disk space, size
	// metrics, backups), else nil.
	badger *badgerstore.Store
	// holder names this replica in leases, held for leaseTTL (store.go).
	holder   string
	leaseTTL time.Duration
	kek      kek.Wrapper
	vault    *vault.Vault
	peers    *peerConns // volatile.peers; nil: none (peers.go)
	grpc     *grpc.Server
	health   *health.Server
	metrics  *metrics.Metrics
	http     *http.Server
	stopBg   context.CancelFunc
	bg       sync.WaitGroup

	httpAddr   string
	kekHealthy atomic.Bool
	// diskFull: the store refuses writes for lack of free space
	// (watchSpace); reads still work.
	diskFull atomic.Bool
	healthMu sync.Mutex // orders updates of the gRPC health status
	lis      net.Listener
	served   chan error
	pprof    func() // stops the profiling listener
	sec      *security
	Created  bool // a new keyring was created at start

	stopOnce sync.Once
	stopErr  error

	console *consoleServer // the privacy console; nil: off (console.go)
}

// Start opens the store and keyring and starts serving.
func Start(ctx context.Context, cfg config.Config) (a *App, err error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var ledger ledgerKey
	store, bs, err := openStore(ctx, cfg, &ledger)
	if err != nil {
		ledger.key.Zero()
		return nil, err
	}
	defer func() {
		if err != nil {
			store.Close()
		}
	}()
	wrapper, created, err := openKEK(ctx, cfg, store)
	if err != nil {
		ledger.key.Zero()
		return nil, err
	}
	a, err = start(ctx, cfg, store, bs, ledger, wrapper, created)
	if err != nil {
		closeKEK(wrapper)
	}
	return a, err
}

// openKEK opens the configured KEK provider. It refuses a provider that
// cannot unwrap the keys the store already holds: a wrong keyring or
// transit key would otherwise make every subject unreadable, silently.
func openKEK(ctx context.Context, cfg config.Config, store vault.KeyScanStore) (kek.Wrapper, bool, error) {
	log := cfg.Logger
	hasKeys, err := store.HasSubjectKeys(ctx)
	if err != nil {
		return nil, false, err
	}
	var w kek.Wrapper
	created := false
	switch cfg.KEK.Provider {
	case config.KEKVault:
		if w, err = hcvault.New(ctx, cfg.KEK.Vault, log.With("component", "hcvault")); err != nil {
			return nil, false, err
		}
		log.Info("using HashiCorp Vault transit as the KEK", "vault", cfg.KEK.Vault)
	default:
		var kr agekeyring.Provider
		if kr, created, err = agekeyring.OpenOrCreate(cfg.KEK.Keyring, !hasKeys); err != nil {
			return nil, false, err
		}
		w = kr
		if created {
			log.Warn("created a new keyring: back up the identity file and keep it apart from the data directory",
				"keyring", cfg.KEK.Keyring.Path, "identity", cfg.KEK.Keyring.IdentityFile)
		} else {
			log.Info("opened keyring", "keyring", cfg.KEK.Keyring.Path)
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
func probeKEK(ctx context.Context, store vault.KeyScanStore, w kek.Wrapper) error {
	page, err := store.SubjectKeys(ctx, "", 1)
	if err != nil || len(page) == 0 {
		return err
	}
	dek, err := w.Unwrap(ctx, page[0].Key.Wrapped, vault.KeyBinding(page[0].Key.ID, page[0].Subject))
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

// start serves over store; bs is the same store when it is the badger
// one (nil otherwise), for what only badger has.
func start(ctx context.Context, cfg config.Config, store appStore, bs *badgerstore.Store, ledger ledgerKey, wrapper kek.Wrapper, created bool) (_ *App, err error) {
	// undo releases, in reverse order, what was opened before a failure.
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	rk, err := openRightsKeys(cfg.Rights, ledger, cfg.Logger)
	if err != nil {
		return nil, err
	}
	volOpts, peers, err := volatileOptions(cfg) // peers.go
	if err != nil {
		return nil, err
	}
	undo = append(undo, peers.close)
	m := metrics.New()
	consent := newConsentSource(cfg) // erasures.go
	v, err := vault.New(ctx, store, replicaKEK(cfg, wrapper), vault.Options{Logger: cfg.Logger, CacheSize: cfg.Cache.Size,
		CacheTTL: cfg.Cache.TTL, OnKEK: m.ObserveKEK, Rights: rightsOptions(cfg.Rights, rk, cfg.KEK.BackupRetention),
		ConsentRequired: consent.required, Erasures: vault.ErasureOptions{Retention: cfg.Erasures.EventRetention},
		Holds: cfg.Holds.Vault(), Now: cfg.Now,
		Volatile: volOpts})
	if err != nil {
		rk.ledger.Zero()
		return nil, err
	}
	undo = append(undo, v.Close)
	sec, secOpts, err := openSecurity(cfg, m.AuditWriteFailed, rk.ledger)
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { sec.close() })
	consent.set(sec)
	if err := registerConsumers(ctx, v, sec); err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	undo = append(undo, func() { lis.Close() })
	var httpLis net.Listener
	if cfg.Metrics.Listen != "off" {
		if httpLis, err = net.Listen("tcp", cfg.Metrics.Listen); err != nil {
			return nil, fmt.Errorf("metrics.listen: %w", err)
		}
		undo = append(undo, func() { httpLis.Close() })
	}
	stopPprof, err := startProfiling(cfg.Profiling, cfg.Logger)
	if err != nil {
		return nil, err
	}
	srv := grpcserver.New(v, cfg.Logger)
	srv.OnBatch = m.ObserveBatch
	srv.AccessLog = cfg.Log.AccessOn()
	// Metrics first, so that calls the guard refuses are counted too.
	admin := grpcserver.NewAdmin(v, cfg.KEK.BackupRetention, cfg.Logger).WithAuditLog(sec.audit)
	gs, hs := grpcserver.NewGRPCServer(srv, admin, append(m.ServerOptions(), secOpts...)...)
	// Backups are signed with the receipt key and ledger exports MACed
	// with the ledger key, so that a restore can refuse forgeries.
	src, _ := store.(backup.Source) // nil: the store cannot be backed up
	pb.RegisterBackupAdminServer(gs, grpcserver.NewBackupAdmin(v,
		backup.NewService(src, v, backup.Keys{Signing: rk.signing, Ledger: rk.ledger}), cfg.Logger))
	pb.RegisterReplicaPeerServer(gs, grpcserver.NewPeerServer(v, cfg.Logger)) // forwarded reveals (peers.go)
	m.GRPC.InitializeMetrics(gs)
	m.WatchVault(v)
	if bs != nil {
		m.WatchStoreSize(bs)
		m.WatchGroupCommits(bs.GroupCommits)
		m.WatchRecordCache(bs.RecordCache)
	}
	m.WatchErasures(v.ErasureBacklog)
	m.WatchAudit(sec.audit.Stats)
	watchStore(m, store) // store.go
	bg, stopBg := context.WithCancel(context.Background())
	a := &App{cfg: cfg, store: store, badger: bs, holder: leaseHolder(), leaseTTL: defaultLeaseTTL, kek: wrapper, vault: v, grpc: gs, health: hs, lis: lis, metrics: m, sec: sec,
		served: make(chan error, 1), Created: created, stopBg: stopBg, pprof: stopPprof}
	a.kekHealthy.Store(true)
	a.peers = peers
	if err := a.startConsole(srv, admin, v); err != nil {
		stopBg()
		return nil, err
	}
	undo = append(undo, a.stopConsole)
	m.WatchDiskFull(a.diskFull.Load)
	for _, job := range []func(context.Context){a.watchKEK, a.watchSpace, a.maintain, a.purgeExpired, a.resumePurges, a.trimErasureEvents, a.shredHolds, a.listenChanges,
		func(ctx context.Context) { sec.pollPolicy(ctx, cfg.Auth.PolicyPollInterval) }} {
		a.bg.Add(1)
		go func() { defer a.bg.Done(); job(bg) }()
	}
	if httpLis != nil {
		a.http = &http.Server{Handler: m.Handler(a.ready), ReadHeaderTimeout: 10 * time.Second}
		a.httpAddr = httpLis.Addr().String()
		go a.http.Serve(httpLis)
	}
	go func() { a.served <- gs.Serve(lis) }()
	cfg.Logger.Info("tokenvault serving", "addr", lis.Addr().String(), "metrics", a.httpAddr, "store", cfg.Store.Provider, "data_dir", cfg.DataDir, "kek", cfg.KEK.Provider)
	return a, nil
}

// ready backs /readyz: the store answers and has room for writes, and the
// KEK provider is healthy.
//
// A full disk makes the server not ready although it still reveals: a
// balancer should send new writes (most traffic tokenizes) to a replica
// that can take them, while /healthz stays ok so that the process, which
// recovers by itself once space is freed, is not restarted for it.
func (a *App) ready() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := a.store.HasSubjectKeys(ctx); err != nil {
		return errors.New("store unavailable")
	}
	// Free space is badger's; a database server watches its own disk.
	if a.badger != nil {
		if err := a.badger.StorageFull(); err != nil {
			if errors.Is(err, vault.ErrStorageFull) {
				return fmt.Errorf("%w: writes are refused until space is freed (reads still work)", vault.ErrStorageFull)
			}
			return errors.New("store: cannot measure free space")
		}
	}
	if !a.kekHealthy.Load() {
		return errors.New("key-encryption key provider unavailable")
	}
	return nil
}

// spaceInterval is how often watchSpace measures the store's free space.
const spaceInterval = time.Second

// watchSpace reports a full disk through the gRPC health service: the
// TokenVault service is NOT_SERVING while the store refuses writes for
// lack of space (reveals still work; /readyz says why), and SERVING again
// once space is freed, without a restart.
func (a *App) watchSpace(ctx context.Context) {
	if a.badger == nil {
		return // a database server watches its own disk
	}
	every(ctx, spaceInterval, true, func() {
		full := errors.Is(a.badger.StorageFull(), vault.ErrStorageFull)
		if a.diskFull.Swap(full) != full {
			a.updateHealth()
		}
	})
}

// updateHealth sets the TokenVault service's gRPC health from the KEK
// provider's health and the store's free space.
func (a *App) updateHealth() {
	a.healthMu.Lock()
	defer a.healthMu.Unlock()
	st := healthpb.HealthCheckResponse_SERVING
	if !a.kekHealthy.Load() || a.diskFull.Load() {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	a.health.SetServingStatus(pb.TokenVault_ServiceDesc.ServiceName, st)
}

// maintain runs store GC on a schedule, with its effect in metrics.
func (a *App) maintain(ctx context.Context) {
	if a.cfg.Maintenance.GCInterval <= 0 || a.badger == nil {
		return // PostgreSQL vacuums on its own
	}
	every(ctx, a.cfg.Maintenance.GCInterval, false, func() {
		n, err := a.badger.RunGC(a.cfg.Maintenance.GCDiscardRatio)
		a.metrics.ObserveGC(n, err)
		if err != nil {
			a.cfg.Logger.Warn("store GC failed", "err", err)
		} else if n > 0 {
			a.cfg.Logger.Info("store GC rewrote value-log files", "files", n)
		}
	})
}

// every runs fn every d (and once at once if now) until ctx ends: the shape
// of every background job.
func every(ctx context.Context, d time.Duration, now bool, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	if now {
		fn()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// watchKEK reports the KEK provider's health through the gRPC health
// service: the TokenVault service is NOT_SERVING while the provider is
// unreachable (requests for subjects whose keys are cached still work) or
// the disk is full (watchSpace).
func (a *App) watchKEK(ctx context.Context) {
	hc, ok := a.kek.(kek.HealthChecker)
	if !ok {
		return
	}
	healthy := true
	t := time.NewTicker(a.cfg.KEK.HealthInterval)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, a.cfg.KEK.HealthInterval)
		err := hc.Healthy(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if (err == nil) != healthy {
			healthy = err == nil
			a.kekHealthy.Store(healthy)
			if healthy {
				a.cfg.Logger.Info("KEK provider is healthy again")
			} else {
				a.cfg.Logger.Warn("KEK provider unhealthy", "err", err)
			}
			a.updateHealth()
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

// MetricsAddr is the address of the HTTP observability listener ("" if off).
func (a *App) MetricsAddr() string { return a.httpAddr }

// Done is closed (receives Serve's error) if the server stops by itself.
func (a *App) Done() <-chan error { return a.served }

// Stop drains in-flight calls (up to the shutdown timeout, then cuts them),
// zeroes cached keys and closes the store. Calling it again is a no-op.
func (a *App) Stop() error {
	a.stopOnce.Do(func() { a.stopErr = a.stop() })
	return a.stopErr
}

func (a *App) stop() error {
	a.vault.EndWatches() // open erasure watches would hold the drain
	done := make(chan struct{})
	a.stopConsole() // no new console calls while the gRPC calls drain
	go func() { a.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(a.cfg.ShutdownTimeout):
		a.grpc.Stop()
		<-done
	}
	a.pprof()
	a.stopBg()
	a.bg.Wait()
	if a.http != nil {
		a.http.Close()
	}
	a.peers.close() // after the drain: the last reveals may still forward
	a.releaseLeases()
	auditErr := a.sec.close() // after the drain: the last calls are audited
	a.vault.Close()
	closeKEK(a.kek)
	return errors.Join(a.store.Close(), auditErr)
}
