// Command tokenvault runs the tokenvault gRPC service (serve) and talks to
// a running one (tokenize, detokenize, mask, encrypt, decrypt, erase).
//
// The command only wires flags and environment to the packages that do
// the work (internal/config and internal/app for the server, client for the
// rest), one file per command family: serve.go (serve, config check),
// tokens.go (tokenize … erase), store.go (store migrate), kek.go, auth.go (apikey), audit.go, rights.go
// (rights, receipts, ledger, backup, restore); clientflags.go holds what
// the client commands share, cli.go what every command shares (flag
// parsing with help on stdout, progress output).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"google.golang.org/grpc/status"
)

const usage = `tokenvault: tokenization and field-encryption vault

Usage:
  tokenvault serve [--config FILE] [flags]         run the gRPC service
  tokenvault config check FILE                     validate a config file
  tokenvault store migrate --config FILE           create or upgrade the PostgreSQL store's schema
  tokenvault tokenize --subject S --kind K VALUE…  print one token per value
  tokenvault detokenize --purpose P TOKEN…         print the values
  tokenvault mask TOKEN…                           print display masks
  tokenvault encrypt --subject S [--context C] VALUE   print a blob (base64url)
  tokenvault decrypt --purpose P [--context C] BLOB    print the value (BLOB: base64url or base64)
  tokenvault erase --subject S                     crypto-shred a subject, print the receipt
  tokenvault kek status|rotate|rewrap|retire       KEK rotation epochs (see README)
  tokenvault apikey new --name NAME               make an API key and the hash to configure
  tokenvault audit verify FILE|DIR [--pubkey FILE] check the audit log's chain and signatures
  tokenvault audit rotate                          rotate the server's audit log now
  tokenvault audit grep --subject ID [--config F]  list a subject's entries (ids are hashed)
  tokenvault audit pubkey|token-hash               export the audit public key; hash a token

Data-subject rights, receipts, backups (see README):
  tokenvault export --subject S                    print every token and value of S (JSON)
  tokenvault rectify --token T VALUE               correct the value behind T (token unchanged)
  tokenvault restrict|unrestrict --subject S       restrict processing (no reveal/decrypt) or lift it
  tokenvault consent grant|withdraw --subject S --purpose P --source SRC   record consent to a purpose
  tokenvault erasures watch --consumer NAME [--count N]   print erasure events as JSON lines (acknowledged once printed)
  tokenvault receipt pubkey [--to FILE]            print the vault's public key (PEM): verifies receipts and backups
  tokenvault receipt verify RECEIPT_FILE --pubkey FILE   check an erasure receipt (offline)
  tokenvault ledger export --to FILE               write the erasure ledger
  tokenvault backup keygen --to IDENTITY_FILE      make the age key pair for backups, print the recipient
  tokenvault backup --to FILE --recipient AGE_PUBLIC_KEY… [--incremental-from PREV]
  tokenvault restore --from FILE… --identity FILE --data-dir DIR|--store postgres --ledger FILE|--ledger-from ADDR
                     [--keys-dir DIR | --config FILE] [--verify-key PUBKEY_FILE] [--ledger-key FILE] [--allow-unauthenticated-legacy]

A VALUE of "-" is read from standard input (keeps values out of shell
history and the process list). Flags may also follow the values; after
"--" everything is a value. Client commands take --addr (default
127.0.0.1:7300, env TOKENVAULT_ADDR), TLS flags (--ca, --cert, --key,
--server-name) and --api-key (env TOKENVAULT_API_KEY). Run "tokenvault CMD -h"
for flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage) // not asked for: a usage error
		return 2
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage) // asked for: output, so "| less" works
		return 0
	}
	// The commands' flag sets print -h to stdout through this (cli.go).
	stderr = streams{Writer: stderr, stdout: stdout}
	cmds := map[string]func([]string, io.Reader, io.Writer, io.Writer) error{
		"serve": serve, "tokenize": tokenize, "detokenize": detokenize, "mask": mask,
		"encrypt": encrypt, "decrypt": decrypt, "erase": erase, "kek": kekCmd, "config": configCmd,
		"export": exportCmd, "rectify": rectifyCmd, "restrict": restrictCmd(false), "unrestrict": restrictCmd(true),
		"receipt": receiptCmd, "ledger": ledgerCmd, "backup": backupCmd, "restore": restoreCmd,
		"apikey": apikeyCmd, "audit": auditCmd, "store": storeCmd,
		"consent": consentCmd, "erasures": erasuresCmd,
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
