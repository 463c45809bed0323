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
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

const usage = `tokenvault: tokenization and field-encryption vault

Usage:
  tokenvault serve [flags]                         run the gRPC service
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
		"encrypt": encrypt, "decrypt": decrypt, "erase": erase, "kek": kekCmd,
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
	var cfg app.Config
	fs.StringVar(&cfg.Listen, "listen", envOr("TOKENVAULT_LISTEN", "127.0.0.1:7300"), "gRPC listen address (env TOKENVAULT_LISTEN)")
	fs.StringVar(&cfg.DataDir, "data-dir", envOr("TOKENVAULT_DATA_DIR", "tokenvault-data"), "data directory (env TOKENVAULT_DATA_DIR)")
	fs.StringVar(&cfg.Keyring.Path, "keyring", envOr("TOKENVAULT_KEYRING", "tokenvault-keys/keyring.age"), "age-encrypted KEK keyring file (env TOKENVAULT_KEYRING)")
	fs.StringVar(&cfg.Keyring.IdentityFile, "keyring-identity", os.Getenv("TOKENVAULT_KEYRING_IDENTITY"), "age identity file that opens the keyring (default: identity.txt beside the keyring; env TOKENVAULT_KEYRING_IDENTITY)")
	fs.StringVar(&cfg.KEK, "kek", envOr("TOKENVAULT_KEK", "local"), "key-encryption key provider: local (age keyring) or vault (HashiCorp Vault transit) (env TOKENVAULT_KEK)")
	fs.StringVar(&cfg.Vault.Address, "vault-addr", os.Getenv("VAULT_ADDR"), "HashiCorp Vault address (env VAULT_ADDR; the token comes from env VAULT_TOKEN)")
	fs.StringVar(&cfg.Vault.Namespace, "vault-namespace", os.Getenv("VAULT_NAMESPACE"), "Vault Enterprise namespace (env VAULT_NAMESPACE)")
	fs.StringVar(&cfg.Vault.Mount, "vault-mount", "transit", "transit mount path")
	fs.StringVar(&cfg.Vault.Key, "vault-key", "tokenvault", "transit key name")
	fs.StringVar(&cfg.Vault.TLS.CACert, "vault-ca-cert", os.Getenv("VAULT_CACERT"), "PEM CA bundle for Vault's TLS certificate (env VAULT_CACERT)")
	fs.StringVar(&cfg.Vault.Auth.Method, "vault-auth", "token", "Vault auth method: token, approle or kubernetes")
	fs.StringVar(&cfg.Vault.Auth.RoleID, "vault-role-id", os.Getenv("TOKENVAULT_VAULT_ROLE_ID"), "AppRole role id (env TOKENVAULT_VAULT_ROLE_ID)")
	fs.StringVar(&cfg.Vault.Auth.SecretIDFile, "vault-secret-id-file", "", "file holding the AppRole secret id (re-read at every login)")
	fs.StringVar(&cfg.Vault.Auth.Role, "vault-k8s-role", "", "Vault role for Kubernetes auth")
	fs.DurationVar(&cfg.Vault.Timeout, "vault-timeout", 5*time.Second, "deadline for each call to Vault")
	fs.DurationVar(&cfg.BackupRetention, "backup-retention", 30*24*time.Hour, "how long backups are kept; bounds KEK retirement (kek retire)")
	fs.BoolVar(&cfg.AllowPlaintextNonLoopback, "insecure-plaintext-nonloopback", false, "allow plaintext gRPC on a non-loopback address (values cross the network unencrypted)")
	authFlagsDone := addServeAuthFlags(fs, &cfg.Auth)
	logFormat := fs.String("log-format", envOr("TOKENVAULT_LOG_FORMAT", "text"), "log format: text or json")
	logLevel := fs.String("log-level", envOr("TOKENVAULT_LOG_LEVEL", "info"), "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := authFlagsDone(); err != nil {
		return err
	}
	// Secrets come only from the environment: flags show up in ps.
	cfg.Keyring.Passphrase = os.Getenv("TOKENVAULT_KEYRING_PASSPHRASE")
	cfg.Vault.Token = os.Getenv("VAULT_TOKEN")
	cfg.Vault.Auth.SecretID = os.Getenv("TOKENVAULT_VAULT_SECRET_ID")
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch *logFormat {
	case "text":
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, hopts))
	case "json":
		cfg.Logger = slog.New(slog.NewJSONHandler(stderr, hopts))
	default:
		return fmt.Errorf("--log-format: %q is not text or json", *logFormat)
	}
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
			cfg.Logger.Info("shutting down")
		case err := <-a.Done():
			a.Stop()
			return fmt.Errorf("server stopped: %w", err)
		}
		return a.Stop()
	}
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
	values, err := c.parse(args, "VALUE", stdin)
	if err != nil {
		return err
	}
	if err := errors.Join(required("subject", *subject), required("kind", *kind)); err != nil {
		return err
	}
	fields := make([]client.Field, len(values))
	for i, v := range values {
		fields[i] = client.Field{Kind: *kind, Value: v, Deterministic: *det, ChecksumValid: *valid}
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
