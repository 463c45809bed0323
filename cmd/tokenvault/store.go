package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/tokenvault/tokenvault/crypto/keyfile"
	"github.com/tokenvault/tokenvault/internal/backup"
	"github.com/tokenvault/tokenvault/internal/config"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
	"github.com/tokenvault/tokenvault/vault/pgstore"
)

// storeCmd: tokenvault store migrate|reerase --config FILE.
func storeCmd(args []string, in io.Reader, stdout, stderr io.Writer) error {
	switch {
	case len(args) > 0 && args[0] == "migrate":
		return storeMigrate(args, stdout, stderr)
	case len(args) > 0 && args[0] == "reerase":
		return storeReErase(args, stdout, stderr)
	}
	return errors.New("usage: tokenvault store migrate --config FILE, or tokenvault store reerase --config FILE --ledger FILE|--ledger-from ADDR")
}

func storeMigrate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("store migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "the server's config `FILE` (store.postgres.dsn, or TOKENVAULT_STORE_POSTGRES_DSN)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfg, err := storeConfig(*configFile)
	if err != nil {
		return err
	}
	if cfg.Store.Provider != config.StorePostgres {
		if err := migrateAuditTables(cfg, stdout); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "store.provider is %s: nothing to migrate (the badger store migrates its data directory when it opens it)\n", cfg.Store.Provider)
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := migrateAuditTables(cfg, stdout); err != nil {
		return err
	}
	from, to, err := pgstore.Migrate(ctx, cfg.Store.Postgres.DSN)
	if err != nil {
		return err
	}
	if from == to {
		fmt.Fprintf(stdout, "the database is at schema version %d already: nothing to do\n", to)
		return nil
	}
	fmt.Fprintf(stdout, "migrated the database from schema version %d to %d\n", from, to)
	return nil
}

// storeConfig loads and validates the server's config file (required).
func storeConfig(file string) (config.Config, error) {
	if file == "" {
		return config.Config{}, errors.New("--config is required")
	}
	cfg, err := config.Load(file, os.LookupEnv)
	if err != nil && !errors.Is(err, config.ErrInvalid) {
		return cfg, err
	}
	if err := errors.Join(err, config.Validate(&cfg)); err != nil {
		return cfg, fmt.Errorf("%s is invalid:\n%w", file, err)
	}
	return cfg, nil
}

// storeReErase: tokenvault store reerase --config FILE --ledger FILE
// (or --ledger-from ADDR): the step after a database-level restore
// (pg_restore of a dump, a snapshot, PITR), before any replica serves the
// restored database: it shreds again every subject the live erasure
// ledger names (backup.ReErase).
func storeReErase(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("store reerase", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "the server's config `FILE` (store.postgres.dsn, or TOKENVAULT_STORE_POSTGRES_DSN; rights.ledger_key_file)")
	ledgerFile := fs.String("ledger", "", "erasure ledger file from \"tokenvault ledger export\" (newer than every erasure)")
	ledgerFrom := fs.String("ledger-from", "", "fetch the erasure ledger from this live vault's address instead")
	ledgerKey := fs.String("ledger-key", "", "the vault's erasure-ledger key file (env TOKENVAULT_LEDGER_KEY; default: --config's rights.ledger_key_file)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	cfg, err := storeConfig(*configFile)
	if err != nil {
		return err
	}
	if cfg.Store.Provider != config.StorePostgres {
		return fmt.Errorf("store.provider is %s: a badger data directory comes back with \"tokenvault restore\", which re-erases from the ledger itself", cfg.Store.Provider)
	}
	if (*ledgerFile == "") == (*ledgerFrom == "") {
		return errors.New("give exactly one of --ledger FILE or --ledger-from ADDR: the erasure ledger to re-apply")
	}
	keys, err := restoreKeyPaths(*ledgerKey, "", "", *configFile, os.LookupEnv)
	if err != nil {
		return err
	}
	key, err := keyfile.LoadLedgerKey(keys.ledger)
	if err != nil {
		return fmt.Errorf("--ledger-key: %w%s", err, keys.hint("ledger", "--ledger-key FILE"))
	}
	defer key.Zero()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ledger, source, err := loadLedger(ctx, *ledgerFile, *ledgerFrom)
	if err != nil {
		return err
	}
	s, err := pgstore.Open(ctx, cfg.Store.Postgres.DSN, pgstore.Options{IDKey: key, MaxConns: 2,
		Logger: slog.New(slog.NewTextHandler(stderr, nil))})
	if err != nil {
		return fmt.Errorf("store.postgres: %w", err)
	}
	defer s.Close()
	res, err := backup.ReErase(ctx, s, key, ledger, source)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "re-erased %d subject(s) named in the erasure ledger (%d records purged, %d interrupted erasures finished); ledger of %d entries applied\n",
		res.ReErased, res.Purged, res.Resumed, res.Ledger)
	return nil
}

// restoreTargetOf is where a restore writes: the store kind (--store, else
// --config's store.provider, else badger) and its target.
type restoreTargetOf struct {
	dir  string // RestoreOptions.DataDir: a directory, or the DSN
	open backup.Opener
	name string // for output: never the DSN (it may hold a password)
}

func restoreTarget(kind, dataDir, configFile string) (restoreTargetOf, error) {
	var cfg config.Config
	if configFile != "" {
		var err error
		if cfg, err = config.Load(configFile, os.LookupEnv); err != nil && !errors.Is(err, config.ErrInvalid) {
			return restoreTargetOf{}, fmt.Errorf("--config: %w", err)
		}
	} else if dsn, ok := os.LookupEnv("TOKENVAULT_STORE_POSTGRES_DSN"); ok {
		cfg.Store.Postgres.DSN = dsn
	}
	if kind == "" {
		kind = cfg.Store.Provider
	}
	switch kind {
	case "", config.StoreBadger:
		if dataDir == "" {
			return restoreTargetOf{}, errors.New("--data-dir is required")
		}
		return restoreTargetOf{dir: dataDir, open: backup.OpenerOf(badgerstore.NewLoader), name: dataDir}, nil
	case config.StorePostgres:
		if dataDir != "" {
			return restoreTargetOf{}, errors.New("--data-dir: not with --store postgres (the database is the target)")
		}
		if cfg.Store.Postgres.DSN == "" {
			return restoreTargetOf{}, errors.New("--store postgres: set TOKENVAULT_STORE_POSTGRES_DSN, or give --config with store.postgres.dsn")
		}
		return restoreTargetOf{dir: cfg.Store.Postgres.DSN, open: backup.OpenerOf(pgstore.NewLoader), name: "the PostgreSQL database"}, nil
	default:
		return restoreTargetOf{}, fmt.Errorf("--store: %q is not %q or %q", kind, config.StoreBadger, config.StorePostgres)
	}
}
