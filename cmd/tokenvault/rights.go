package main

// Subcommands for data-subject rights, erasure receipts, the erasure
// ledger, backups and restore. Wiring only: the work is in client/,
// internal/backup and vault/receipt.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/crypto/keyfile"
	"github.com/tokenvault/tokenvault/internal/backup"
	"github.com/tokenvault/tokenvault/internal/config"
	"github.com/tokenvault/tokenvault/vault/receipt"
)

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func noArgs(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

func exportCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	c := newClientFlagsTimeout("export", stderr, 10*time.Minute)
	subject := c.fs.String("subject", "", "data subject id (required)")
	purpose := c.fs.String("purpose", "dsar", "why the export is made (default: a data-subject access request)")
	if err := parseFlags(c.fs, args); err != nil {
		return err
	}
	if err := errors.Join(noArgs(c.fs), required("subject", *subject), required("purpose", *purpose)); err != nil {
		return err
	}
	return c.call(func(ctx context.Context, cl *client.Client) error {
		ex, err := cl.ExportSubject(ctx, *subject, *purpose)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(ex)
	})
}

func rectifyCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := newClientFlags("rectify", stderr)
	token := c.fs.String("token", "", "the token whose value is corrected (required); it stays the same")
	values, err := c.parse(args, "VALUE (the corrected value, or - for stdin)", stdin)
	if err != nil {
		return err
	}
	if len(values) != 1 {
		return errors.New("give exactly one VALUE")
	}
	if err := required("token", *token); err != nil {
		return err
	}
	return c.call(func(ctx context.Context, cl *client.Client) error {
		det, err := cl.Rectify(ctx, *token, values[0])
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, "rectified; the token is unchanged")
		if !det {
			fmt.Fprintln(stderr, "note: deterministic tokenization of the new value does not yield this token (random token, or another token of the subject already holds the value)")
		}
		return nil
	})
}

func restrictCmd(lift bool) func([]string, io.Reader, io.Writer, io.Writer) error {
	name := "restrict"
	if lift {
		name = "unrestrict"
	}
	return func(args []string, _ io.Reader, stdout, stderr io.Writer) error {
		c := newClientFlags(name, stderr)
		subject := c.fs.String("subject", "", "data subject id (required)")
		if err := parseFlags(c.fs, args); err != nil {
			return err
		}
		if err := errors.Join(noArgs(c.fs), required("subject", *subject)); err != nil {
			return err
		}
		return c.call(func(ctx context.Context, cl *client.Client) error {
			if lift {
				if err := cl.Unrestrict(ctx, *subject); err != nil {
					return err
				}
				fmt.Fprintln(stdout, "restriction lifted")
				return nil
			}
			since, err := cl.Restrict(ctx, *subject)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "restricted since %s: values are not revealed until \"tokenvault unrestrict\"\n", since.Format(time.RFC3339))
			return nil
		})
	}
}

func receiptCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("missing subcommand: pubkey or verify")
	}
	switch args[0] {
	case "pubkey":
		c := newClientFlags("receipt pubkey", stderr)
		to := c.fs.String("to", "", "write the PEM public key to this file instead of stdout")
		if err := parseFlags(c.fs, args[1:]); err != nil {
			return err
		}
		if err := noArgs(c.fs); err != nil {
			return err
		}
		return c.call(func(ctx context.Context, cl *client.Client) error {
			pub, err := cl.ReceiptPublicKey(ctx)
			if err != nil {
				return err
			}
			pem := receipt.MarshalPublicKey(pub)
			if *to == "" {
				_, err = stdout.Write(pem)
				return err
			}
			if err := os.WriteFile(*to, pem, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "wrote receipt public key %s to %s\n", receipt.KeyID(pub), *to)
			return nil
		})
	case "verify":
		fs := flag.NewFlagSet("receipt verify", flag.ContinueOnError)
		fs.SetOutput(stderr)
		pubFile := fs.String("pubkey", "", "PEM public key file from \"tokenvault receipt pubkey\" (required)")
		// Accept the file before or after the flags.
		rest := args[1:]
		var file string
		if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
			file, rest = rest[0], rest[1:]
		}
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		if file == "" && fs.NArg() == 1 {
			file = fs.Arg(0)
		} else if fs.NArg() > 0 {
			return fmt.Errorf("unexpected argument %q", fs.Arg(0))
		}
		if file == "" {
			return errors.New("missing RECEIPT_FILE")
		}
		if err := required("pubkey", *pubFile); err != nil {
			return err
		}
		pb, err := os.ReadFile(*pubFile)
		if err != nil {
			return err
		}
		pub, err := receipt.ParsePublicKey(pb)
		if err != nil {
			return err
		}
		rb, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		r, err := receipt.Parse(rb)
		if err != nil {
			return err
		}
		if err := r.Verify(pub); err != nil {
			return fmt.Errorf("INVALID receipt: %w", err)
		}
		what := "erased"
		if r.HoldClass != "" {
			what = fmt.Sprintf("held data (hold class %q, subject erased at %s) shredded", r.HoldClass, r.SubjectErasedAt.Format(time.RFC3339))
		}
		fmt.Fprintf(stdout, "valid receipt: subject %q %s at %s (%d records, %d lookups); every backup copy undecryptable by %s; signed by key %s\n",
			r.Subject, what, r.ErasedAt.Format(time.RFC3339), r.Records, r.Lookups, r.BackupsUndecryptableBy.Format(time.RFC3339), r.KeyID)
		for _, h := range r.Held {
			fmt.Fprintf(stdout, "held: hold class %q until %s\n", h.Class, h.Until.Format(time.RFC3339))
		}
		return nil
	default:
		return fmt.Errorf("unknown receipt subcommand %q (pubkey, verify)", args[0])
	}
}

func ledgerCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "export" {
		return errors.New("missing or unknown subcommand: use \"ledger export --to FILE\"")
	}
	c := newClientFlagsTimeout("ledger export", stderr, 10*time.Minute)
	to := c.fs.String("to", "", "file to write the erasure ledger to (required; not overwritten)")
	if err := parseFlags(c.fs, args[1:]); err != nil {
		return err
	}
	if err := errors.Join(noArgs(c.fs), required("to", *to)); err != nil {
		return err
	}
	return c.call(func(ctx context.Context, cl *client.Client) error {
		l, err := backup.FetchLedger(ctx, cl)
		if err != nil {
			return err
		}
		if err := backup.WriteLedger(*to, l); err != nil {
			return err
		}
		if l.MAC == nil {
			fmt.Fprintln(stderr, "warning: the server sent the ledger without a MAC (an older server); restore refuses such a file unless given --allow-unauthenticated-legacy")
		}
		fmt.Fprintf(stdout, "wrote %d erasure ledger entries (ledger key %s) to %s\n", len(l.Entries), l.KeyID, *to)
		return nil
	})
}

func backupCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "keygen" {
		return backupKeygen(args[1:], stdout, stderr)
	}
	c := newClientFlagsTimeout("backup", stderr, 24*time.Hour)
	to := c.fs.String("to", "", "backup file to write (required; never overwritten)")
	var recips stringList
	c.fs.Var(&recips, "recipient", "age public key (age1...) to encrypt to; repeat for several (at least one)")
	prev := c.fs.String("incremental-from", "", "take an incremental backup of what changed since this earlier backup file")
	quiet := c.fs.Bool("quiet", false, "no progress output")
	if err := parseFlags(c.fs, args); err != nil {
		return err
	}
	if err := errors.Join(noArgs(c.fs), required("to", *to)); err != nil {
		return err
	}
	if len(recips) == 0 {
		return errors.New("--recipient is required (an age public key; the backup is encrypted to it)")
	}
	var since uint64
	if *prev != "" {
		h, err := backup.HeaderOf(*prev)
		if err != nil {
			return fmt.Errorf("--incremental-from: %w", err)
		}
		since = h.Next
	}
	return c.call(func(ctx context.Context, cl *client.Client) error {
		var progress backup.Progress
		p := newProgress(stderr, "backing up")
		if !*quiet {
			progress = p.update
		}
		res, err := backup.Fetch(ctx, cl, *to, recips, since, progress)
		p.end()
		if err != nil {
			return err
		}
		kind := "full"
		if since > 0 {
			kind = "incremental"
		}
		fmt.Fprintf(stdout, "wrote %s backup %s (%d bytes, versions %d..%d, signed by key %s); next incremental: --incremental-from %s\n",
			kind, *to, res.Bytes, res.Header.Since, res.Header.Next, res.Header.KeyID, *to)
		return nil
	})
}

// backupKeygen makes the age key pair backups are encrypted to: the
// identity (secret) goes to a new file that only its owner may read, the
// recipient (public) to stdout for "backup --recipient". Keep the
// identity away from the vault's machine: with it and a backup, anyone
// can read every value not yet erased.
func backupKeygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("backup keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	to := fs.String("to", "", "identity file to create (required; never overwritten; mode 0600)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := errors.Join(noArgs(fs), required("to", *to)); err != nil {
		return err
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return err
	}
	recipient := id.Recipient().String()
	// The same layout as age-keygen writes, so age and tokenvault both read it.
	content := []byte(fmt.Sprintf("# created: %s\n# public key: %s\n%s\n",
		time.Now().UTC().Format(time.RFC3339), recipient, id.String()))
	err = keyfile.WriteExclusive(*to, content)
	clear(content) // the identity's string form cannot be cleared; this copy can
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("--to: %s already exists; refusing to overwrite an identity (backups encrypted to it would become unreadable)", *to)
	}
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	fmt.Fprintln(stdout, recipient)
	fmt.Fprintf(stderr, "wrote the backup identity to %s (keep it offline: it decrypts every backup); back up with\n  tokenvault backup --to FILE --recipient %s\nrestore with --identity %s\n", *to, recipient, *to)
	return nil
}

func restoreCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var from stringList
	fs.Var(&from, "from", "backup file; repeat: the full backup first, then its incrementals in order (required)")
	identity := fs.String("identity", "", "age identity file that decrypts the backups (required)")
	dataDir := fs.String("data-dir", "", "new or empty data directory to restore into (required for the badger store; no server may use it)")
	storeKind := fs.String("store", "", "store to restore into: badger (--data-dir) or postgres (the migrated, empty database of TOKENVAULT_STORE_POSTGRES_DSN or --config's store.postgres.dsn); default: --config's store.provider, else badger")
	ledgerFile := fs.String("ledger", "", "erasure ledger file from \"tokenvault ledger export\"")
	ledgerFrom := fs.String("ledger-from", "", "fetch the erasure ledger from this live vault's address instead")
	ledgerKey := fs.String("ledger-key", "", "the vault's erasure-ledger key file (env TOKENVAULT_LEDGER_KEY; default: from --keys-dir or --config)")
	verifyKey := fs.String("verify-key", "",
		"verifies the backups' signatures: the vault's public key (\"tokenvault receipt pubkey --to FILE\") or its receipt-signing.pem (env TOKENVAULT_VERIFY_KEY; default: from --keys-dir or --config)")
	keysDir := fs.String("keys-dir", "", "the vault's key directory (where its keyring.age, ledger.key and receipt-signing.pem are): the default for --ledger-key and --verify-key")
	configFile := fs.String("config", os.Getenv("TOKENVAULT_CONFIG"), "the vault's config file (env TOKENVAULT_CONFIG): its rights.ledger_key_file and rights.signing_key_file are the defaults for --ledger-key and --verify-key")
	allowLegacy := fs.Bool("allow-unauthenticated-legacy", false,
		"also accept backup and ledger files written before tokenvault signed them (tokenvault-backup/v1, tokenvault-erasure-ledger/v1); each is logged as a warning")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	target, err := restoreTarget(*storeKind, *dataDir, *configFile)
	if err := errors.Join(noArgs(fs), required("identity", *identity), err); err != nil {
		return err
	}
	if len(from) == 0 {
		return errors.New("--from is required")
	}
	if (*ledgerFile == "") == (*ledgerFrom == "") {
		return errors.New("give exactly one of --ledger FILE or --ledger-from ADDR: a restore re-applies the current erasure ledger")
	}
	idb, err := keyfile.ReadSecret(*identity)
	if err != nil {
		return fmt.Errorf("--identity: %w", err)
	}
	ids, err := backup.ParseIdentityFile(bytes.NewReader(idb))
	clear(idb)
	if err != nil {
		return fmt.Errorf("--identity: %w", err)
	}
	keys, err := restoreKeyPaths(*ledgerKey, *verifyKey, *keysDir, *configFile, os.LookupEnv)
	if err != nil {
		return err
	}
	pub, err := backup.LoadVerifyKey(keys.verify)
	if err != nil {
		return fmt.Errorf("--verify-key: %w%s", err, keys.hint("verify", "--verify-key PUBKEY_FILE"))
	}
	key, err := keyfile.LoadLedgerKey(keys.ledger)
	if err != nil {
		return fmt.Errorf("--ledger-key: %w%s", err, keys.hint("ledger", "--ledger-key FILE"))
	}
	defer key.Zero()
	var ledger backup.Ledger
	ctx := context.Background()
	source := *ledgerFile
	if *ledgerFile != "" {
		if ledger, err = backup.ReadLedger(*ledgerFile); err != nil {
			return err
		}
	} else {
		source = "the erasure ledger from " + *ledgerFrom
		cl, err := client.Dial(*ledgerFrom)
		if err != nil {
			return err
		}
		lctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		ledger, err = backup.FetchLedger(lctx, cl)
		cancel()
		cl.Close()
		if err != nil {
			return fmt.Errorf("--ledger-from: %w", err)
		}
	}
	// The server's legal hold classes, to schedule holds a backup from
	// before an erasure lacks (backup.RestoreOptions.Holds).
	var holds config.HoldsConfig
	if *configFile != "" {
		cfg, err := config.Load(*configFile, os.LookupEnv)
		if err != nil {
			return fmt.Errorf("--config: %w", err)
		}
		holds = cfg.Holds
	}
	res, err := backup.Restore(ctx, backup.RestoreOptions{DataDir: target.dir, Open: target.open, Files: from, Identities: ids,
		LedgerKey: key, Ledger: ledger, LedgerSource: source, VerifyKey: pub, Holds: holds.Vault(),
		AllowUnauthenticated: *allowLegacy, Logger: slog.New(slog.NewTextHandler(stderr, nil))})
	if errors.Is(err, backup.ErrUnauthenticated) {
		return fmt.Errorf("%w\n(only if you know this file was written by your vault before tokenvault signed backups and ledgers, and was not changed since, pass --allow-unauthenticated-legacy)", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restored %d backup file(s) into %s: %d entries written; re-erased %d subject(s) named in the erasure ledger (%d entries left out); ledger of %d entries kept\n",
		len(from), target.name, res.Entries, res.ReErased, res.Dropped, res.Ledger)
	return nil
}

// restoreKeys are the key files restore reads and where each path came
// from, for the error when one cannot be read.
type restoreKeys struct {
	ledger, verify         string
	ledgerFrom, verifyFrom string
}

// restoreKeyPaths picks the ledger key and verify key files: each one's
// flag, else the file in --keys-dir, else its environment variable, else
// what the server's config file names (rights.ledger_key_file,
// rights.signing_key_file, with the server's defaults beside the
// keyring), else the server's default ./tokenvault-keys. The server's
// relative paths are relative to where it runs; so are these.
func restoreKeyPaths(ledgerFlag, verifyFlag, keysDir, configFile string, lookupEnv func(string) (string, bool)) (restoreKeys, error) {
	var cfg config.Config
	cfgFrom := "the server's default key directory ./tokenvault-keys"
	switch {
	case keysDir != "":
		cfg.KEK.Keyring.Path = filepath.Join(keysDir, "keyring.age")
		cfgFrom = "--keys-dir " + keysDir
	case configFile != "":
		var err error
		if cfg, err = config.Load(configFile, lookupEnv); err != nil {
			return restoreKeys{}, fmt.Errorf("--config: %w", err)
		}
		cfgFrom = "the config file " + configFile
	}
	cfg.SetDefaults()
	k := restoreKeys{ledger: cfg.Rights.LedgerKeyFile, verify: cfg.Rights.SigningKeyFile, ledgerFrom: cfgFrom, verifyFrom: cfgFrom}
	pick := func(path, from *string, flagValue, flagName, env string) {
		if flagValue != "" {
			*path, *from = flagValue, flagName
		} else if v, _ := lookupEnv(env); v != "" && keysDir == "" {
			*path, *from = v, env
		}
	}
	pick(&k.ledger, &k.ledgerFrom, ledgerFlag, "--ledger-key", "TOKENVAULT_LEDGER_KEY")
	pick(&k.verify, &k.verifyFrom, verifyFlag, "--verify-key", "TOKENVAULT_VERIFY_KEY")
	return k, nil
}

// hint says which path restore tried, why, and how to give another.
func (k restoreKeys) hint(which, flagForm string) string {
	path, from := k.ledger, k.ledgerFrom
	if which == "verify" {
		path, from = k.verify, k.verifyFrom
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	return fmt.Sprintf("\n(tried %s, from %s; give %s, --keys-dir DIR (the server's key directory) or --config FILE (the server's config))", abs, from, flagForm)
}
