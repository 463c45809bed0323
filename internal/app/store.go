package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	"github.com/tokenvault/tokenvault/crypto/kek"
	"github.com/tokenvault/tokenvault/internal/config"
	"github.com/tokenvault/tokenvault/internal/metrics"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
	"github.com/tokenvault/tokenvault/vault/pgstore"
)

// appStore is what the server needs of every store: the vault's store
// with its key scan (KEK checks at start), and Close. What only the
// badger store has (GC, disk-space admission, size metrics, backups) is
// reached through App.badger.
type appStore interface {
	vault.Store
	vault.KeyScanStore
	Close() error
}

// openStore opens the configured store, loading (or, for a store that
// holds nothing made with one, creating) the ledger key with it: the
// store hashes and seals subject ids with it.
func openStore(ctx context.Context, cfg config.Config, ledger *ledgerKey) (appStore, *badgerstore.Store, error) {
	switch cfg.Store.Provider {
	case config.StorePostgres:
		s, err := pgstore.Open(ctx, cfg.Store.Postgres.DSN, pgstore.Options{
			MaxConns: int32(cfg.Store.Postgres.MaxConns), Logger: cfg.Logger,
			LoadIDKey: ledger.loader(cfg.Rights.LedgerKeyFile)})
		if err != nil {
			return nil, nil, fmt.Errorf("store.postgres: %w", err)
		}
		return s, nil, nil
	default:
		s, err := badgerstore.Open(cfg.DataDir, badgerstore.Options{
			LoadIDKey:   ledger.loader(cfg.Rights.LedgerKeyFile),
			MappedLimit: cfg.Store.Badger.MappedLimit()}, cfg.Logger)
		if err != nil {
			return nil, nil, err
		}
		return s, s, nil
	}
}

// leaser is the optional store capability of leases (pgstore's): a job
// that must run on one replica at a time runs only while this replica
// holds its lease. A store without it is this process's alone.
type leaser interface {
	TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
}

// defaultLeaseTTL is how long a lease outlives its holder (App.leaseTTL);
// it is renewed every third of it while the job runs.
const defaultLeaseTTL = 30 * time.Second

// Lease names, one per background job.
var leaseNames = []string{"expiry-purge", "pending-purges", "hold-shred", "erasure-event-trim"}

// leaseHolder names this process in lease rows: the host and a random
// part (two replicas may share a host name).
func leaseHolder() string {
	host, _ := os.Hostname()
	b := make([]byte, 6)
	rand.Read(b)
	return host + "/" + hex.EncodeToString(b)
}

// once runs fn, when the store is shared, only if this replica holds the
// lease name, renewing it while fn runs and cancelling fn's context if
// the lease is lost. The lease is kept afterwards, so the holder stays
// the one that runs the job; it lapses a.leaseTTL after the holder stops
// (dies), and then another replica takes it at its next tick.
func (a *App) once(ctx context.Context, name string, fn func(context.Context)) {
	l, ok := a.store.(leaser)
	if !ok {
		fn(ctx)
		return
	}
	got, err := l.TryLease(ctx, name, a.holder, a.leaseTTL)
	if err != nil {
		if ctx.Err() == nil {
			a.cfg.Logger.Warn("background job: taking its lease failed", "job", name, "err", err)
		}
		return
	}
	if !got {
		return // another replica runs it
	}
	jctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := vault.KeepLease(jctx, l, name, a.holder, a.leaseTTL, func(err error) {
		a.cfg.Logger.Warn("background job: lost its lease, stopping", "job", name, "err", err)
		cancel()
	})
	defer stop()
	fn(jctx)
}

// releaseLeases hands this replica's leases over at shutdown.
func (a *App) releaseLeases() {
	l, ok := a.store.(leaser)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, name := range leaseNames {
		l.ReleaseLease(ctx, name, a.holder)
	}
}

// resumePurges finishes, on a shared store, erasures whose purge a
// replica did not finish (it crashed between shred and purge): at start
// the vault does it (vault.New), this does it while running, for the
// replicas that crashed while this one runs.
func (a *App) resumePurges(ctx context.Context) {
	if _, ok := a.store.(leaser); !ok {
		return // the store is this process's: vault.New resumed them
	}
	every(ctx, a.cfg.Rights.PurgeInterval, false, func() {
		a.once(ctx, "pending-purges", func(ctx context.Context) {
			n, err := a.vault.ResumePurges(ctx)
			switch {
			case ctx.Err() != nil:
			case err != nil:
				a.cfg.Logger.Error("resuming interrupted erasures", "err", err)
			case n > 0:
				a.cfg.Logger.Info("resumed interrupted erasures", "keys", n)
			}
		})
	})
}

// listenChanges runs, on the PostgreSQL store, the listener that makes
// this replica's vault drop the cached keys of subjects other replicas
// erased, restricted or rectified (pgstore's notify.go: an accelerator;
// every reveal reads the key from the database anyway).
func (a *App) listenChanges(ctx context.Context) {
	if s, ok := a.store.(*pgstore.Store); ok {
		s.Listen(ctx, a.vault)
	}
}

// watchStore exports what the store has to show beyond the vault's
// counters: for PostgreSQL, its pool and its change listener.
func watchStore(m *metrics.Metrics, store appStore) {
	s, ok := store.(*pgstore.Store)
	if !ok {
		return
	}
	m.WatchPostgres(func() metrics.PoolStats {
		p := s.PoolStats()
		return metrics.PoolStats{Total: p.Total, Idle: p.Idle, Acquired: p.Acquired, Constructing: p.Constructing, Max: p.Max,
			Acquires: p.Acquires, Waits: p.Waits, WaitTime: p.WaitTime}
	}, func() metrics.ListenerStats {
		l := s.ListenerStats()
		return metrics.ListenerStats{Enabled: l.Enabled, Connected: l.Connected, LastNotification: l.LastNotification,
			Notifications: l.Notifications, Resyncs: l.Resyncs, Lag: l.Lag}
	})
}

// errLocalKEKOnReplicas refuses to rotate or retire the local keyring on
// the shared store. Each replica holds its own copy of keyring.age, read
// at start: a version added on one replica is unknown to the others
// (they could not unwrap the keys wrapped under it), and a version
// retired on one lives on in the others' copies (backups under it would
// stay decryptable, which breaks the erasure promise).
var errLocalKEKOnReplicas = &vault.FieldError{Field: "kek",
	Reason: "the local keyring is not rotated or retired on the PostgreSQL store: every replica holds its own copy of keyring.age, which the others would not follow; use kek.provider vault (HashiCorp Vault transit, whose versions every replica sees) for replicas (README \"Running several replicas\")",
	Err:    vault.ErrFailedPrecondition}

// replicaKEK is the KEK the vault gets: on the PostgreSQL store with the
// local keyring, one that refuses Rotate and Retire (rewrap still works:
// it adds no version and removes none).
func replicaKEK(cfg config.Config, w kek.Wrapper) kek.Wrapper {
	r, ok := w.(kek.Rotator)
	if !ok || cfg.Store.Provider != config.StorePostgres || cfg.KEK.Provider != config.KEKLocal {
		return w
	}
	return localOnReplicas{w, r}
}

type localOnReplicas struct {
	kek.Wrapper
	r kek.Rotator
}

func (l localOnReplicas) Rotate(context.Context) (int, error) { return 0, errLocalKEKOnReplicas }
func (l localOnReplicas) Retire(context.Context, int) error   { return errLocalKEKOnReplicas }
func (l localOnReplicas) Rewrap(ctx context.Context, items []kek.RewrapItem) ([][]byte, error) {
	return l.r.Rewrap(ctx, items)
}
func (l localOnReplicas) Versions(ctx context.Context) ([]kek.Version, error) {
	return l.r.Versions(ctx)
}
func (l localOnReplicas) Describe(wrapped []byte) (kek.WrappedInfo, error) {
	return l.r.Describe(wrapped)
}
