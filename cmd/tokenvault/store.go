package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/tokenvault/tokenvault/internal/backup"
	"github.com/tokenvault/tokenvault/internal/config"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
	"github.com/tokenvault/tokenvault/vault/pgstore"
)

// storeCmd: tokenvault store migrate --config FILE.
func storeCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "migrate" {
		return errors.New("usage: tokenvault store migrate --config FILE")
	}
	fs := flag.NewFlagSet("store migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "the server's config `FILE` (store.postgres.dsn, or TOKENVAULT_STORE_POSTGRES_DSN)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *configFile == "" {
		return errors.New("--config is required")
	}
	cfg, err := config.Load(*configFile, os.LookupEnv)
	if err != nil && !errors.Is(err, config.ErrInvalid) {
		return err
	}
	if err := errors.Join(err, config.Validate(&cfg)); err != nil {
		return fmt.Errorf("%s is invalid:\n%w", *configFile, err)
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
