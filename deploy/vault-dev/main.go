// Command vault is HashiCorp Vault v1.13.0's CLI and server, built from the
// released module so that integration tests have a real Vault to talk to.
// See build.sh and /deploy/vault/README.md.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() { os.Exit(command.Run(os.Args[1:])) }
