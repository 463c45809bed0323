package vaulttest

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// skips counts the tests Start skipped in this test binary. It is
// process-wide on purpose: Main reports it once, after every test ran.
var skips struct {
	sync.Mutex
	n   int
	why string
}

func noteSkip(why string) {
	skips.Lock()
	defer skips.Unlock()
	skips.n++
	skips.why = why
}

// Main runs the tests (call it as os.Exit(vaulttest.Main(m)) from
// TestMain) and then, if Start skipped any for want of a Vault server,
// prints one line saying how many and how to run them.
//
// In "go test ./..." a passing package's output is not shown (not even
// its stderr), so without -v the line goes to the terminal (/dev/tty)
// when there is one; otherwise, and with -v, it goes to stderr.
func Main(m *testing.M) int {
	code := m.Run()
	if line := skipSummary(); line != "" {
		var w io.Writer = os.Stderr
		if !testing.Verbose() {
			if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
				defer tty.Close()
				w = tty
			}
		}
		fmt.Fprintln(w, line)
	}
	return code
}

// skipSummary is Main's line, or "" if nothing was skipped.
func skipSummary() string {
	skips.Lock()
	defer skips.Unlock()
	if skips.n == 0 {
		return ""
	}
	pkg := "this package"
	if wd, err := os.Getwd(); err == nil {
		if root, err := moduleRoot(); err == nil {
			if rel, err := filepath.Rel(root, wd); err == nil {
				pkg = "./" + filepath.ToSlash(rel)
			}
		}
	}
	return fmt.Sprintf("vaulttest: %s skipped %d test(s) that need a HashiCorp Vault server (%s): "+
		"run `bash deploy/vault-dev/build.sh` once and rerun, or set VAULT_ADDR and VAULT_TOKEN; with CI=true they fail instead",
		pkg, skips.n, skips.why)
}
