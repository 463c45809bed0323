// Command tokenvault runs the tokenvault gRPC service (serve) and talks to
// a running one (tokenize, detokenize, mask, encrypt, decrypt, erase).
//
// This file only wires flags and environment to the packages that do the
// work (internal/app for the server, client for the rest).
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/internal/app"
	"github.com/tokenvault/tokenvault/internal/config"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

const usage = `tokenvault: tokenization and field-encryption vault

Usage:
  tokenvault serve [--config FILE] [flags]         run the gRPC service
  tokenvault config check FILE                     validate a config file
  tokenvault tokenize --subject S --kind K VALUE…  print one token per value
  tokenvault detokenize --purpose P TOKEN…         print the values
  tokenvault mask TOKEN…                           print display masks
  tokenvault encrypt --subject S [--context C] VALUE   print a blob (base64url)
  tokenvault decrypt --purpose P [--context C] BLOB    print the value
  tokenvault erase --subject S                     crypto-shred a subject, print the receipt
  tokenvault kek status|rotate|rewrap|retire       KEK rotation epochs (see README)
  tokenvault apikey new --name NAME               make an API key and the hash to configure
  tokenvault audit verify FILE [--pubkey FILE]     check the audit log's chain and signatures
  tokenvault audit pubkey|token-hash               export the audit public key; hash a token

Data-subject rights, receipts, backups (see README):
  tokenvault export --subject S                    print every token and value of S (JSON)
  tokenvault rectify --token T VALUE               correct the value behind T (token unchanged)
  tokenvault restrict|unrestrict --subject S       restrict processing (no reveal/decrypt) or lift it
  tokenvault receipt pubkey [--to FILE]            print the vault's public key (PEM): verifies receipts and backups
  tokenvault receipt verify RECEIPT_FILE --pubkey FILE   check an erasure receipt (offline)
  tokenvault ledger export --to FILE               write the erasure ledger
  tokenvault backup --to FILE --recipient AGE_PUBLIC_KEY… [--incremental-from PREV]
  tokenvault restore --from FILE… --identity FILE --data-dir DIR --ledger FILE|--ledger-from ADDR
                     [--verify-key PUBKEY_FILE] [--ledger-key FILE] [--allow-unauthenticated-legacy]

A VALUE of "-" is read from standard input (keeps values out of shell
history and the process list). Client commands take --addr (default
127.0.0.1:7300, env TOKENVAULT_ADDR), TLS flags (--ca, --cert, --key,
--server-name) and --api-key (env TOKENVAULT_API_KEY). Run "tokenvault CMD -h"
for flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmds := map[string]func([]string, io.Reader, io.Writer, io.Writer) error{
		"serve": serve, "tokenize": tokenize, "detokenize": detokenize, "mask": mask,
		"encrypt": encrypt, "decrypt": decrypt, "erase": erase, "kek": kekCmd, "config": configCmd,
		"export": exportCmd, "rectify": rectifyCmd, "restrict": restrictCmd(false), "unrestrict": restrictCmd(true),
		"receipt": receiptCmd, "ledger": ledgerCmd, "backup": backupCmd, "restore": restoreCmd,
		"apikey": apikeyCmd, "audit": auditCmd,
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "tokenvault: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err := cmd(args[1:], stdin, stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if s, ok := status.FromError(err); ok {
			fmt.Fprintf(stderr, "tokenvault %s: %s: %s\n", args[0], s.Code(), s.Message())
		} else {
			fmt.Fprintf(stderr, "tokenvault %s: %v\n", args[0], err)
		}
		return 1
	}
	return 0
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func serve(args []string, _ io.Reader, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", os.Getenv("TOKENVAULT_CONFIG"), "YAML config file (env TOKENVAULT_CONFIG); see deploy/tokenvault.example.yaml")
	// The common few settings also have flags; they override the file and
	// the environment.
	listen := fs.String("listen", "", "gRPC listen address (listen; default 127.0.0.1:7300)")
	dataDir := fs.String("data-dir", "", "data directory (data_dir; default ./tokenvault-data)")
	kekProvider := fs.String("kek", "", "key-encryption key provider: local or vault (kek.provider)")
	keyring := fs.String("keyring", "", "age-encrypted KEK keyring file (kek.keyring.path)")
	keyringID := fs.String("keyring-identity", "", "age identity file that opens the keyring (kek.keyring.identity_file)")
	retention := fs.Duration("backup-retention", 0, "how long backups are kept; bounds KEK retirement (kek.backup_retention)")
	metrics := fs.String("metrics-listen", "", `address of /metrics, /healthz, /readyz, or "off" (metrics.listen)`)
	logFormat := fs.String("log-format", "", "log format: text or json (log.format)")
	logLevel := fs.String("log-level", "", "log level: debug, info, warn, error (log.level)")
	rotation := fs.Duration("rotation-interval", 0, "how often you rotate and retire the KEK; erasure receipts promise backups dead by erasure + this + backup retention (rights.rotation_interval)")
	purgeEvery := fs.Duration("purge-interval", 0, "how often expired tokens are purged (rights.purge_interval)")
	retentionByKind := map[string]time.Duration{}
	fs.Func("retention", "default token expiry per kind, KIND=DURATION (e.g. pan=2160h); repeatable (rights.retention)", func(v string) error {
		kind, d, ok := strings.Cut(v, "=")
		dur, err := time.ParseDuration(d)
		if !ok || err != nil {
			return fmt.Errorf("want KIND=DURATION, e.g. pan=2160h")
		}
		retentionByKind[kind] = dur
		return nil
	})
	pprofListen := fs.String("pprof-listen", "", "serve Go pprof profiles on this loopback address, e.g. 127.0.0.1:6060 (profiling.listen; off by default; see BENCHMARKS.md)")
	var authFlags app.AuthConfig
	addServeAuthFlags(fs, &authFlags)
	insecure := fs.Bool("insecure-plaintext-nonloopback", false, "allow plaintext gRPC on a non-loopback address: values cross the network unencrypted (insecure_plaintext_nonloopback)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfg, err := config.Load(*configFile, os.LookupEnv)
	if err != nil {
		return err
	}
	// API keys (NAME=sha256:HEX, comma-separated) from the environment add
	// to those in the config file.
	if v := os.Getenv("TOKENVAULT_API_KEYS"); v != "" {
		if err := (apiKeyFlags{&cfg.Auth.APIKeys}).Set(v); err != nil {
			return fmt.Errorf("TOKENVAULT_API_KEYS: %w", err)
		}
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "listen":
			cfg.Listen = *listen
		case "data-dir":
			cfg.DataDir = *dataDir
		case "kek":
			cfg.KEK.Provider = *kekProvider
		case "keyring":
			cfg.KEK.Keyring.Path = *keyring
		case "keyring-identity":
			cfg.KEK.Keyring.IdentityFile = *keyringID
		case "backup-retention":
			cfg.KEK.BackupRetention = *retention
		case "metrics-listen":
			cfg.Metrics.Listen = *metrics
		case "log-format":
			cfg.Log.Format = *logFormat
		case "log-level":
			cfg.Log.Level = *logLevel
		case "insecure-plaintext-nonloopback":
			cfg.AllowPlaintextNonLoopback = *insecure
		case "tls-cert":
			cfg.Auth.TLS.Cert = authFlags.TLS.Cert
		case "tls-key":
			cfg.Auth.TLS.Key = authFlags.TLS.Key
		case "tls-client-ca":
			cfg.Auth.TLS.ClientCA = authFlags.TLS.ClientCA
		case "tls-require-client-cert":
			cfg.Auth.TLS.RequireClientCert = authFlags.TLS.RequireClientCert
		case "policy":
			cfg.Auth.PolicyFile = authFlags.PolicyFile
		case "policy-poll":
			cfg.Auth.PolicyPollInterval = authFlags.PolicyPollInterval
		case "api-key":
			cfg.Auth.APIKeys = append(cfg.Auth.APIKeys, authFlags.APIKeys...)
		case "audit-log":
			cfg.Auth.Audit.Path = authFlags.Audit.Path
		case "audit-signing-key":
			cfg.Auth.Audit.SigningKey = authFlags.Audit.SigningKey
		case "audit-allow-unverified":
			cfg.Auth.Audit.AllowUnverifiedHistory = authFlags.Audit.AllowUnverifiedHistory
		case "pprof-listen":
			cfg.Profiling.Listen = *pprofListen
		case "rotation-interval":
			cfg.Rights.RotationInterval = *rotation
		case "purge-interval":
			cfg.Rights.PurgeInterval = *purgeEvery
		case "retention":
			cfg.Rights.Retention = retentionByKind
		}
	})
	if err := config.Validate(&cfg); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	cfg.Logger = newLogger(cfg.Log, stderr)
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
	// ones stay in force).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			cfg.Logger.Info("SIGHUP: reloading policy and TLS files")
			a.Reload()
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

func newLogger(c app.LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Level)) // validated by config.Validate
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// configCmd: "config check FILE" validates a config file (with the
// environment applied, as serve would) without starting anything.
func configCmd(args []string, _ io.Reader, stdout, _ io.Writer) error {
	if len(args) != 2 || args[0] != "check" {
		return errors.New("usage: tokenvault config check FILE")
	}
	cfg, err := config.Load(args[1], os.LookupEnv)
	if err != nil {
		return err
	}
	if err := config.Validate(&cfg); err != nil {
		return fmt.Errorf("%s is invalid:\n%w", args[1], err)
	}
	fmt.Fprintf(stdout, "%s: ok (kek provider %s, listen %s, data_dir %s)\n", args[1], cfg.KEK.Provider, cfg.Listen, cfg.DataDir)
	return nil
}

// clientFlags are shared by the client commands.
type clientFlags struct {
	fs      *flag.FlagSet
	addr    string
	timeout time.Duration
	auth    clientAuth
}

func newClientFlags(name string, stderr io.Writer) *clientFlags {
	return newClientFlagsTimeout(name, stderr, 30*time.Second)
}

func newClientFlagsTimeout(name string, stderr io.Writer, timeout time.Duration) *clientFlags {
	c := &clientFlags{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	c.fs.SetOutput(stderr)
	c.fs.StringVar(&c.addr, "addr", envOr("TOKENVAULT_ADDR", "127.0.0.1:7300"), "server address (env TOKENVAULT_ADDR)")
	c.fs.DurationVar(&c.timeout, "timeout", timeout, "deadline for the call")
	c.auth.addFlags(c.fs)
	return c
}

// parse parses flags and requires at least one positional argument.
func (c *clientFlags) parse(args []string, what string, stdin io.Reader) ([]string, error) {
	if err := c.fs.Parse(args); err != nil {
		return nil, err
	}
	if c.fs.NArg() == 0 {
		return nil, fmt.Errorf("missing %s", what)
	}
	out := c.fs.Args()
	for i, a := range out {
		if a == "-" {
			b, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
			if err != nil {
				return nil, fmt.Errorf("reading standard input: %w", err)
			}
			out[i] = strings.TrimRight(string(b), "\r\n")
		}
	}
	return out, nil
}

func (c *clientFlags) call(fn func(ctx context.Context, cl *client.Client) error) error {
	opts, err := c.auth.dialOptions()
	if err != nil {
		return err
	}
	cl, err := client.Dial(c.addr, opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	return fn(ctx, cl)
}

func required(name, v string) error {
	if v == "" {
		return fmt.Errorf("--%s is required", name)
	}
	return nil
}

func tokenize(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := newClientFlags("tokenize", stderr)
	subject := c.fs.String("subject", "", "data subject id (required)")
	kind := c.fs.String("kind", "", "value kind: pan, ssn, cn-resident-id, national-id, phone, email, iban, bank-account, address, name, generic (required)")
	det := c.fs.Bool("deterministic", false, "same subject+kind+value always gives the same token")
	valid := c.fs.Bool("checksum-valid", false, "make Luhn/mod-11-2/mod-97 checks of the token valid (default: deliberately invalid)")
	ttl := c.fs.Duration("ttl", 0, "retention: the token expires after this (default: the server's default for the kind)")
	values, err := c.parse(args, "VALUE", stdin)
	if err != nil {
		return err
	}
	if err := errors.Join(required("subject", *subject), required("kind", *kind)); err != nil {
		return err
	}
	fields := make([]client.Field, len(values))
	for i, v := range values {
		fields[i] = client.Field{Kind: *kind, Value: v, Deterministic: *det, ChecksumValid: *valid, TTL: *ttl}
	}
	return c.call(func(ctx context.Context, cl *client.Client) error {
		tokens, err := cl.Tokenize(ctx, *subject, fields...)
		if err != nil {
			return err
		}
		for _, t := range tokens {
			fmt.Fprintln(stdout, t)
		}
		return nil
	})
}

// printResults prints each value on its own line; failed items are
// reported on stderr and make the command fail.
func printResults(res []client.Result, what string, stdout, stderr io.Writer) error {
	failed := 0
	for i, r := range res {
		if r.Err != nil {
			s := status.Convert(r.Err)
			fmt.Fprintf(stderr, "%s %d: %s: %s\n", what, i+1, s.Code(), s.Message())
			failed++
			continue
		}
		fmt.Fprintln(stdout, r.Value)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d failed", failed, len(res))
	}
	return nil
}

func detokenize(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := newClientFlags("detokenize", stderr)
	purpose := c.fs.String("purpose", "", "why the value is needed, e.g. payment (required)")
	tokens, err := c.parse(args, "TOKEN", stdin)
	if err != nil {
		return err
	}
	if err := required("purpose", *purpose); err != nil {
		return err
	}
	return c.call(func(ctx context.Context, cl *client.Client) error {
		res, err := cl.Detokenize(ctx, *purpose, tokens...)
		if err != nil {
			return err
		}
		return printResults(res, "token", stdout, stderr)
	})
}

func mask(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := newClientFlags("mask", stderr)
	tokens, err := c.parse(args, "TOKEN", stdin)
	if err != nil {
		return err
	}
	return c.call(func(ctx context.Context, cl *client.Client) error {
		res, err := cl.Mask(ctx, tokens...)
		if err != nil {
			return err
		}
		return printResults(res, "token", stdout, stderr)
	})
}

func encrypt(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := newClientFlags("encrypt", stderr)
	subject := c.fs.String("subject", "", "data subject id (required)")
	bctx := c.fs.String("context", "", `where the blob will be stored, e.g. "orders.shipping_address"; decrypt needs the same`)
	values, err := c.parse(args, "VALUE", stdin)
	if err != nil {
		return err
	}
	if err := required("subject", *subject); err != nil {
		return err
	}
	plain := make([][]byte, len(values))
	for i, v := range values {
		plain[i] = []byte(v)
	}
	return c.call(func(ctx context.Context, cl *client.Client) error {
		blobs, err := cl.Encrypt(ctx, *subject, *bctx, plain...)
		if err != nil {
			return err
		}
		for _, b := range blobs {
			fmt.Fprintln(stdout, base64.RawURLEncoding.EncodeToString(b))
		}
		return nil
	})
}

func decrypt(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := newClientFlags("decrypt", stderr)
	purpose := c.fs.String("purpose", "", "why the value is needed (required)")
	bctx := c.fs.String("context", "", "the context given to encrypt")
	encoded, err := c.parse(args, "BLOB", stdin)
	if err != nil {
		return err
	}
	if err := required("purpose", *purpose); err != nil {
		return err
	}
	blobs := make([][]byte, len(encoded))
	for i, e := range encoded {
		if blobs[i], err = base64.RawURLEncoding.DecodeString(strings.TrimRight(strings.TrimSpace(e), "=")); err != nil {
			return fmt.Errorf("BLOB %d: not base64url (as printed by tokenvault encrypt)", i+1)
		}
	}
	return c.call(func(ctx context.Context, cl *client.Client) error {
		res, err := cl.Decrypt(ctx, *purpose, *bctx, blobs...)
		if err != nil {
			return err
		}
		return printResults(res, "blob", stdout, stderr)
	})
}

func erase(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	c := newClientFlags("erase", stderr)
	subject := c.fs.String("subject", "", "data subject id (required)")
	if err := c.fs.Parse(args); err != nil {
		return err
	}
	if c.fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (use --subject)", c.fs.Arg(0))
	}
	if err := required("subject", *subject); err != nil {
		return err
	}
	return c.call(func(ctx context.Context, cl *client.Client) error {
		r, err := cl.EraseSubject(ctx, *subject)
		if err != nil {
			return err
		}
		if r.Signed != nil { // the signed receipt: save it, check it with "tokenvault receipt verify"
			_, err := stdout.Write(r.Signed)
			return err
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{
			"subject_id": r.Subject, "erased_at": r.ErasedAt.Format(time.RFC3339Nano),
			"records_erased": r.Records, "lookups_erased": r.Lookups,
		})
	})
}

func kekCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("missing subcommand: status, rotate, rewrap or retire")
	}
	sub := args[0]
	c := newClientFlagsTimeout("kek "+sub, stderr, time.Hour)
	if err := c.fs.Parse(args[1:]); err != nil {
		return err
	}
	if c.fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", c.fs.Arg(0))
	}
	return c.call(func(ctx context.Context, cl *client.Client) error {
		adm := cl.KeyAdmin()
		switch sub {
		case "status":
			st, err := adm.GetKekStatus(ctx, &pb.GetKekStatusRequest{})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "current version: %d\nbackup retention: %s\n", st.GetCurrentVersion(), st.GetBackupRetention().AsDuration())
			for _, v := range st.GetVersions() {
				fmt.Fprintf(stdout, "version %d  created %s  subject keys %d\n", v.GetVersion(),
					v.GetCreated().AsTime().Format(time.RFC3339), v.GetSubjectKeys())
			}
			return nil
		case "rotate", "rewrap":
			stream, err := adm.RotateKek(ctx, &pb.RotateKekRequest{RewrapOnly: sub == "rewrap"})
			if err != nil {
				return err
			}
			for {
				m, err := stream.Recv()
				if err == io.EOF {
					return errors.New("the server ended the rotation without finishing; run \"tokenvault kek rewrap\" to resume")
				}
				if err != nil {
					fmt.Fprintln(stderr)
					return fmt.Errorf("%w (run \"tokenvault kek rewrap\" to resume)", err)
				}
				fmt.Fprintf(stderr, "\rrewrapping under KEK version %d: %s", m.GetVersion(), bar(m.GetScanned(), m.GetTotal()))
				if m.GetDone() {
					fmt.Fprintln(stderr)
					fmt.Fprintf(stdout, "KEK version %d is current; %d subject keys rewrapped (%d scanned)\n",
						m.GetVersion(), m.GetRewrapped(), m.GetScanned())
					return nil
				}
			}
		case "retire":
			res, err := adm.RetireKek(ctx, &pb.RetireKekRequest{})
			if err != nil {
				return err
			}
			if len(res.GetRetiredVersions()) == 0 {
				fmt.Fprintf(stdout, "nothing to retire yet (oldest version %d is within the backup retention)\n", res.GetMinVersion())
				return nil
			}
			fmt.Fprintf(stdout, "retired KEK versions %v; oldest version now %d\n", res.GetRetiredVersions(), res.GetMinVersion())
			return nil
		default:
			return fmt.Errorf("unknown kek subcommand %q (status, rotate, rewrap, retire)", sub)
		}
	})
}

// bar draws a text progress bar.
func bar(done, total int64) string {
	const width = 30
	if total <= 0 {
		return fmt.Sprintf("%d", done)
	}
	n := int(min(done, total) * width / total)
	return fmt.Sprintf("[%s%s] %d/%d (%d%%)", strings.Repeat("#", n), strings.Repeat(".", width-n), done, total, min(done, total)*100/total)
}
