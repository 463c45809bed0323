package main

import (
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/crypto/keyfile"
	"github.com/tokenvault/tokenvault/internal/audit"
	"github.com/tokenvault/tokenvault/internal/auth"
)

// Client credentials and the commands for "Who may see what": API keys and
// the audit log (serve's TLS, API key and policy flags are in serveFlags).
// Only wiring; the work is in internal/auth and internal/audit.

// clientAuth holds the client commands' TLS and API key flags.
type clientAuth struct {
	tls                       bool
	ca, cert, key, serverName string
	apiKey                    string
}

func (c *clientAuth) addFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.tls, "tls", os.Getenv("TOKENVAULT_TLS") == "1", "connect with TLS (implied by --ca and --cert; env TOKENVAULT_TLS=1)")
	fs.StringVar(&c.ca, "ca", os.Getenv("TOKENVAULT_CA"), "PEM CA that verifies the server (default: system roots; env TOKENVAULT_CA)")
	fs.StringVar(&c.cert, "cert", os.Getenv("TOKENVAULT_CERT"), "PEM client certificate for mutual TLS (env TOKENVAULT_CERT)")
	fs.StringVar(&c.key, "key", os.Getenv("TOKENVAULT_KEY"), "PEM client private key (env TOKENVAULT_KEY)")
	fs.StringVar(&c.serverName, "server-name", os.Getenv("TOKENVAULT_SERVER_NAME"), "name to verify in the server certificate (default: the host of --addr)")
	// The key is a secret: prefer the environment (flags show up in ps).
	fs.StringVar(&c.apiKey, "api-key", os.Getenv("TOKENVAULT_API_KEY"), "API key (prefer env TOKENVAULT_API_KEY: flags are visible in the process list)")
}

func (c *clientAuth) dialOptions() ([]client.Option, error) {
	var opts []client.Option
	if c.tls || c.ca != "" || c.cert != "" || c.key != "" || c.serverName != "" {
		cfg, err := client.LoadTLS(client.TLSFiles{CA: c.ca, Cert: c.cert, Key: c.key, ServerName: c.serverName})
		if err != nil {
			return nil, err
		}
		opts = append(opts, client.WithTLS(cfg))
	}
	if c.apiKey != "" {
		opts = append(opts, client.WithAPIKey(c.apiKey))
	}
	return opts, nil
}

func apikeyCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "new" {
		return errors.New(`usage: tokenvault apikey new --name NAME`)
	}
	fs := flag.NewFlagSet("apikey new", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "name of the key's owner, used in the policy (api_key: NAME) and the audit log (required)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if err := required("name", *name); err != nil {
		return err
	}
	if _, err := auth.NewAPIKeys([]auth.APIKey{{Name: *name, Hash: auth.HashAPIKey("x")}}); err != nil {
		return fmt.Errorf("--name: %s", strings.TrimPrefix(err.Error(), "[0].name: "))
	}
	key, hash, err := auth.NewAPIKey()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "key: %s\nhash: %s\n", key, hash)
	fmt.Fprintf(stderr, `Give the key to the caller (it is shown only once; send it as TOKENVAULT_API_KEY
or "authorization: Bearer <key>"). Configure only the hash on the server:
  tokenvault serve --api-key %s=%s ...
and grant it roles in the policy:
  identities:
    - api_key: %s
      roles: [...]
`, *name, hash, *name)
	return nil
}

func auditCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("missing subcommand: verify, pubkey or token-hash")
	}
	fs := flag.NewFlagSet("audit "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	switch args[0] {
	case "verify":
		pubFile := fs.String("pubkey", "", "PEM public key of the signing key (audit-signing.key.pub); without it only the hash chain is checked")
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return errors.New("usage: tokenvault audit verify FILE [--pubkey FILE]")
		}
		var pub ed25519.PublicKey
		if *pubFile != "" {
			b, err := os.ReadFile(*pubFile)
			if err != nil {
				return fmt.Errorf("--pubkey: %w", err)
			}
			if pub, err = audit.ParsePublicKey(b); err != nil {
				return fmt.Errorf("--pubkey: %w", err)
			}
		}
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			return err
		}
		defer f.Close()
		rep, err := audit.Verify(f, pub)
		if err != nil {
			return fmt.Errorf("%s: %w (%d entries verified before it)", fs.Arg(0), err, rep.Entries)
		}
		fmt.Fprintf(stdout, "OK: %d entries, %d checkpoints", rep.Entries, rep.Checkpoints)
		if rep.SignaturesChecked {
			fmt.Fprintf(stdout, " (signatures verified)")
		}
		fmt.Fprintf(stdout, ", last checkpoint at entry %d, head %s\n", rep.LastCheckpoint, rep.LastHash)
		if !rep.SignaturesChecked {
			fmt.Fprintln(stderr, "warning: checkpoint signatures NOT checked (no --pubkey): a rewritten chain would pass")
		}
		if rep.Unsigned > 0 {
			fmt.Fprintf(stderr, "warning: the last %d entries are not covered by a checkpoint yet (server running, or it crashed); truncation there cannot be detected\n", rep.Unsigned)
		}
		return nil
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
			b, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
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
		return fmt.Errorf("unknown audit subcommand %q (verify, pubkey, token-hash)", args[0])
	}
}
