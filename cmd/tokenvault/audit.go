package main

// audit verify|rotate|pubkey|token-hash: the audit log (README "The audit
// log"). Wiring only: the work is in internal/audit and the server.

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/crypto/keyfile"
	"github.com/tokenvault/tokenvault/internal/audit"
	"github.com/tokenvault/tokenvault/internal/config"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

func auditCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("missing subcommand: verify, rotate, grep, pubkey or token-hash")
	}
	fs := flag.NewFlagSet("audit "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	switch args[0] {
	case "verify":
		pubFile := fs.String("pubkey", "", "PEM public key of the signing key (audit-signing.key.pub); without it only the hash chain is checked")
		pg := fs.Bool("postgres", false, "verify the audit table in PostgreSQL (auth.audit.sink postgres): every replica's chain")
		dbf := addDBFlags(fs)
		replica := fs.String("replica", "", "with --postgres: only this replica's chain (replicas with different signing keys are verified one by one)")
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		if *pg {
			if fs.NArg() != 0 {
				return errors.New("usage: tokenvault audit verify --postgres [--config FILE | --dsn DSN] [--replica ID] [--pubkey FILE]  (no FILE|DIR)")
			}
			pub, err := readPubKey(*pubFile)
			if err != nil {
				return err
			}
			return verifyDB(dbf, *replica, pub, stdout, stderr)
		}
		if *replica != "" || dbf.dsn != "" {
			return errors.New("--replica and --dsn go with --postgres")
		}
		if fs.NArg() != 1 {
			return errors.New("usage: tokenvault audit verify FILE|DIR [--pubkey FILE]  or  tokenvault audit verify --postgres …")
		}
		pub, err := readPubKey(*pubFile)
		if err != nil {
			return err
		}
		if st, err := os.Stat(fs.Arg(0)); err == nil && st.IsDir() {
			return verifyDir(fs.Arg(0), pub, stdout, stderr)
		}
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			return err
		}
		defer f.Close()
		r := io.Reader(f)
		if strings.HasSuffix(fs.Arg(0), ".gz") {
			if r, err = audit.Gunzip(f); err != nil {
				return fmt.Errorf("%s: %w", fs.Arg(0), err)
			}
		}
		rep, err := audit.Verify(r, pub)
		if err != nil {
			return fmt.Errorf("%s: %w (%d entries verified before it)", fs.Arg(0), err, rep.Entries)
		}
		fmt.Fprintf(stdout, "OK: %d entries, %d checkpoints", rep.Entries, rep.Checkpoints)
		if rep.SignaturesChecked {
			fmt.Fprintf(stdout, " (signatures verified)")
		}
		fmt.Fprintf(stdout, ", last checkpoint at entry %d, head %s\n", rep.LastCheckpoint, rep.LastHash)
		if rep.Continues != "" {
			fmt.Fprintf(stderr, "note: the file continues %s, which was not checked (verify the directory to check the whole chain)\n", rep.Continues)
		}
		warnUnverified(rep, stderr)
		return nil
	case "rotate":
		c := newClientFlags("audit rotate", stderr)
		if err := parseFlags(c.fs, args[1:]); err != nil {
			return err
		}
		if c.fs.NArg() > 0 {
			return fmt.Errorf("unexpected argument %q", c.fs.Arg(0))
		}
		return c.call(func(ctx context.Context, cl *client.Client) error {
			resp, err := cl.KeyAdmin().RotateAuditLog(ctx, &pb.RotateAuditLogRequest{})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "audit log rotated to %s\n", resp.GetRotatedFile())
			return nil
		})
	case "grep":
		return auditGrep(fs, args[1:], stdin, stdout, stderr)
	case "pubkey", "token-hash":
		key := fs.String("signing-key", "tokenvault-keys/audit-signing.key", "the audit signing key")
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		sk, err := keyfile.LoadSigningKey(*key)
		if err != nil {
			return err
		}
		if args[0] == "pubkey" {
			_, err = stdout.Write(keyfile.MarshalPublicKey(sk.Public().(ed25519.PublicKey)))
			return err
		}
		// token-hash: find a token's entries without writing the token
		// into the log (grep for the printed hash).
		if fs.NArg() != 1 {
			return errors.New("usage: tokenvault audit token-hash [--signing-key FILE] TOKEN  (TOKEN - reads stdin)")
		}
		tok := fs.Arg(0)
		if tok == "-" {
			b, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
			if err != nil {
				return err
			}
			tok = strings.TrimRight(string(b), "\r\n")
		}
		h, err := audit.NewTokenHasher(sk)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, h.Hash(tok))
		return nil
	default:
		return fmt.Errorf("unknown audit subcommand %q (verify, rotate, grep, pubkey, token-hash)", args[0])
	}
}

func readPubKey(path string) (ed25519.PublicKey, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--pubkey: %w", err)
	}
	pub, err := audit.ParsePublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("--pubkey: %w", err)
	}
	return pub, nil
}

// verifyDir verifies a directory of rotated files and the current one,
// one line per file.
func verifyDir(dir string, pub ed25519.PublicKey, stdout, stderr io.Writer) error {
	rep, err := audit.VerifyDir(dir, pub)
	for _, f := range rep.Files {
		if f.Err != nil {
			fmt.Fprintf(stdout, "FAIL %s: %v\n", f.Name, f.Err)
			continue
		}
		fmt.Fprintf(stdout, "ok   %s: %d entries, %d checkpoints\n", f.Name, f.Entries, f.Checkpoints)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	c := rep.Chain
	fmt.Fprintf(stdout, "OK: %d files, one chain to entry %d", len(rep.Files), c.Entries)
	if c.SignaturesChecked {
		fmt.Fprintf(stdout, " (signatures verified)")
	}
	fmt.Fprintf(stdout, ", last checkpoint at entry %d, head %s\n", c.LastCheckpoint, c.LastHash)
	if rep.Continues != "" {
		fmt.Fprintf(stderr, "note: the oldest file continues %s, deleted by retention (the deletion is recorded in the log)\n", rep.Continues)
	}
	if len(rep.Files) > 0 {
		warnUnverified(rep.Files[len(rep.Files)-1].Report, stderr)
	}
	return nil
}

func warnUnverified(rep audit.Report, stderr io.Writer) {
	if !rep.SignaturesChecked {
		fmt.Fprintln(stderr, "warning: checkpoint signatures NOT checked (no --pubkey): a rewritten chain would pass")
	}
	if rep.Unsigned > 0 {
		fmt.Fprintf(stderr, "warning: the last %d entries are not covered by a checkpoint yet (server running, or it crashed); truncation there cannot be detected\n", rep.Unsigned)
	}
}

// auditGrep lists a subject's entries across the rotated files: entries
// name subjects by a keyed hash (of the ledger key), computed here.
func auditGrep(fs *flag.FlagSet, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	subject := fs.String("subject", "", "the subject id (- reads it from stdin, which keeps it out of the process list)")
	configFile := fs.String("config", os.Getenv("TOKENVAULT_CONFIG"), "the server's config file: where its audit log and ledger key are (default: the server's defaults)")
	ledgerFile := fs.String("ledger-key", "", "the ledger key file (default: rights.ledger_key_file of --config)")
	dir := fs.String("dir", "", "the audit log's directory (default: that of auth.audit.path of --config)")
	limit := fs.Int("limit", 0, "list only the newest N entries (0: all)")
	pg := fs.Bool("postgres", false, "read the audit table in PostgreSQL, every replica's entries (default with --config's auth.audit.sink postgres)")
	dsn := fs.String("dsn", "", "with --postgres: the database (default: --config's auth.audit.postgres.dsn or store.postgres.dsn; best in TOKENVAULT_AUTH_AUDIT_POSTGRES_DSN)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := required("subject", *subject); err != nil {
		return err
	}
	if *limit < 0 {
		return errors.New("--limit: must not be negative")
	}
	id := *subject
	if id == "-" {
		b, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
		if err != nil {
			return err
		}
		id = strings.TrimRight(string(b), "\r\n")
	}
	var cfg config.Config
	if *configFile != "" {
		var err error
		if cfg, err = config.Load(*configFile, os.LookupEnv); err != nil {
			return fmt.Errorf("--config: %w", err)
		}
	}
	cfg.SetDefaults()
	if *ledgerFile == "" {
		*ledgerFile = cfg.Rights.LedgerKeyFile
	}
	lk, err := keyfile.LoadLedgerKey(*ledgerFile)
	if err != nil {
		return fmt.Errorf("--ledger-key: %w", err)
	}
	defer lk.Zero()
	h, err := audit.NewSubjectHasher(lk)
	if err != nil {
		return err
	}
	defer h.Zero()
	// The table by default when the server writes it (--dir still reads
	// files: a replica's own copy).
	if *pg || *dsn != "" || (cfg.Auth.Audit.DBSink() && *dir == "") {
		return grepDB(dbFlags{dsn: *dsn, cfg: cfg, loaded: true}, h, id, *limit, stdout, stderr)
	}
	if *dir == "" {
		*dir = filepath.Dir(cfg.Auth.Audit.Path)
	}
	trail, err := audit.TrailByID(*dir, h, id, *limit)
	if err != nil {
		return err
	}
	files, err := writeTrail(stdout, trail, func(te audit.TrailEntry) string { return te.File })
	if err != nil {
		return err
	}
	// The subject id is not repeated here: terminals have scrollback.
	fmt.Fprintf(stderr, "%d entries in %d files (not verified: run tokenvault audit verify %s)\n", len(trail), files, *dir)
	return nil
}

// writeTrail writes the entries as JSON lines and returns in how many
// places (files, replicas: where) they are.
func writeTrail(w io.Writer, trail []audit.TrailEntry, where func(audit.TrailEntry) string) (int, error) {
	places := map[string]bool{}
	for _, te := range trail {
		line, err := te.Entry.Line()
		if err != nil {
			return 0, err
		}
		if _, err := w.Write(line); err != nil {
			return 0, err
		}
		places[where(te)] = true
	}
	return len(places), nil
}

// dbFlags name the audit table's database: --dsn, else --config's
// auth.audit.postgres.dsn or store.postgres.dsn, else the environment.
type dbFlags struct {
	dsn        string
	configFile string
	cfg        config.Config
	loaded     bool // cfg is loaded (grep loads it itself)
}

func addDBFlags(fs *flag.FlagSet) *dbFlags {
	d := &dbFlags{}
	fs.StringVar(&d.dsn, "dsn", "", "with --postgres: the database (best in TOKENVAULT_AUTH_AUDIT_POSTGRES_DSN: a DSN may hold a password)")
	fs.StringVar(&d.configFile, "config", "", "with --postgres: the server's config `FILE` (auth.audit.postgres.dsn, else store.postgres.dsn)")
	return d
}

func (d *dbFlags) open(ctx context.Context) (*audit.DB, error) {
	dsn := d.dsn
	if dsn == "" && d.configFile != "" && !d.loaded {
		cfg, err := config.Load(d.configFile, os.LookupEnv)
		if err != nil && !errors.Is(err, config.ErrInvalid) {
			return nil, fmt.Errorf("--config: %w", err)
		}
		d.cfg = cfg
	}
	if dsn == "" {
		dsn = d.cfg.Auth.Audit.PostgresDSN(d.cfg.Store)
	}
	for _, env := range []string{"TOKENVAULT_AUTH_AUDIT_POSTGRES_DSN", "TOKENVAULT_STORE_POSTGRES_DSN"} {
		if v, ok := os.LookupEnv(env); ok && dsn == "" {
			dsn = v
		}
	}
	if dsn == "" {
		return nil, errors.New("--postgres: give --config FILE (auth.audit.postgres.dsn or store.postgres.dsn), --dsn, or TOKENVAULT_AUTH_AUDIT_POSTGRES_DSN")
	}
	return audit.OpenDB(ctx, dsn)
}

// verifyDB verifies every replica's chain in the audit table, one line per
// replica.
func verifyDB(d *dbFlags, replica string, pub ed25519.PublicKey, stdout, stderr io.Writer) error {
	ctx := context.Background()
	db, err := d.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	reps, err := db.Verify(ctx, pub, replica)
	for _, r := range reps {
		if r.Err != nil {
			fmt.Fprintf(stdout, "FAIL replica %s: %v\n", r.Replica, r.Err)
			continue
		}
		fmt.Fprintf(stdout, "ok   replica %s: %d entries, %d checkpoints, last checkpoint at entry %d, head %s\n", r.Replica, r.Entries, r.Checkpoints, r.LastCheckpoint, r.LastHash)
		if r.Starts != "" {
			fmt.Fprintf(stderr, "note: replica %s's chain in the database starts %s\n", r.Replica, r.Starts)
		}
		if r.Continues != "" {
			fmt.Fprintf(stderr, "note: replica %s's chain in the database starts with a rotated file's continue entry (after %s)\n", r.Replica, r.Continues)
		}
		if r.Unsigned > 0 {
			fmt.Fprintf(stderr, "warning: replica %s: the last %d entries are not covered by a checkpoint yet (server running, or it crashed)\n", r.Replica, r.Unsigned)
		}
	}
	if err != nil {
		return fmt.Errorf("the audit table: %w", err)
	}
	if len(reps) == 0 {
		return errors.New("the audit table holds no rows (of that replica)")
	}
	fmt.Fprintf(stdout, "OK: %d replicas, one chain each", len(reps))
	if pub != nil {
		fmt.Fprintf(stdout, " (signatures verified)")
	}
	fmt.Fprintln(stdout)
	if pub == nil {
		fmt.Fprintln(stderr, "warning: checkpoint signatures NOT checked (no --pubkey): a rewritten chain would pass")
	}
	return nil
}

// grepDB lists a subject's entries from the audit table: every replica's,
// oldest first (an indexed query by the subject's keyed hash).
func grepDB(d dbFlags, h *audit.SubjectHasher, id string, limit int, stdout, stderr io.Writer) error {
	hash, err := h.Hash(id)
	if err != nil {
		return err
	}
	ctx := context.Background()
	db, err := d.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	trail, err := db.Trail(ctx, hash, nil, limit)
	if err != nil {
		return err
	}
	replicas, err := writeTrail(stdout, trail, func(te audit.TrailEntry) string { return te.Entry.Replica })
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "%d entries from %d replicas in the audit table (not verified: run tokenvault audit verify --postgres)\n", len(trail), replicas)
	return nil
}

// migrateAuditTables applies the audit table's schema (its own version,
// internal/audit) when the config has auth.audit.sink postgres; store
// migrate calls it.
func migrateAuditTables(cfg config.Config, stdout io.Writer) error {
	if !cfg.Auth.Audit.DBSink() {
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	from, to, err := audit.MigratePostgres(ctx, cfg.Auth.Audit.PostgresDSN(cfg.Store))
	if err != nil {
		return err
	}
	if from == to {
		fmt.Fprintf(stdout, "the audit tables are at schema version %d already: nothing to do\n", to)
	} else {
		fmt.Fprintf(stdout, "migrated the audit tables from schema version %d to %d\n", from, to)
	}
	return nil
}
