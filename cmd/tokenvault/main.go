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

A VALUE of "-" is read from standard input (keeps values out of shell
history and the process list). Client commands take --addr (default
127.0.0.1:7300, env TOKENVAULT_ADDR). Run "tokenvault CMD -h" for flags.
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
		"encrypt": encrypt, "decrypt": decrypt, "erase": erase,
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
	fs.BoolVar(&cfg.AllowPlaintextNonLoopback, "insecure-plaintext-nonloopback", false, "allow plaintext gRPC on a non-loopback address (values cross the network unencrypted)")
	logFormat := fs.String("log-format", envOr("TOKENVAULT_LOG_FORMAT", "text"), "log format: text or json")
	logLevel := fs.String("log-level", envOr("TOKENVAULT_LOG_LEVEL", "info"), "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	// The passphrase comes only from the environment: flags show up in ps.
	cfg.Keyring.Passphrase = os.Getenv("TOKENVAULT_KEYRING_PASSPHRASE")
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
	select {
	case <-ctx.Done():
		cfg.Logger.Info("shutting down")
	case err := <-a.Done():
		a.Stop()
		return fmt.Errorf("server stopped: %w", err)
	}
	return a.Stop()
}

// clientFlags are shared by the client commands.
type clientFlags struct {
	fs      *flag.FlagSet
	addr    string
	timeout time.Duration
}

func newClientFlags(name string, stderr io.Writer) *clientFlags {
	c := &clientFlags{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	c.fs.SetOutput(stderr)
	c.fs.StringVar(&c.addr, "addr", envOr("TOKENVAULT_ADDR", "127.0.0.1:7300"), "server address (env TOKENVAULT_ADDR)")
	c.fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "deadline for the call")
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
	cl, err := client.Dial(c.addr)
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
