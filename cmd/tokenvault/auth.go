package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/internal/auth"
)

// Client credentials and the API key command of "Who may see what" (the
// audit commands are in audit.go; serve's TLS, API key and policy flags
// are in serveFlags). Only wiring; the work is in internal/auth.

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
