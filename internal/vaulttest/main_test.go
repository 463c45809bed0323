package vaulttest_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/tokenvault/tokenvault/internal/vaulttest"
)

func TestMain(m *testing.M) { os.Exit(vaulttest.Main(m)) }

const childEnv = "VAULTTEST_SKIP_CHILD"

// TestSkipChild is run by TestSkipSummary in a child process, outside the
// module so that no cached Vault binary is found.
func TestSkipChild(t *testing.T) {
	if os.Getenv(childEnv) != "1" {
		t.Skip("run by TestSkipSummary")
	}
	for _, name := range []string{"a", "b"} {
		t.Run(name, func(t *testing.T) { vaulttest.Start(t) })
	}
}

// TestSkipSummary: tests skipped for want of a Vault server are counted
// in one line after the package's tests; under CI=true they fail instead
// and there is no such line.
func TestSkipSummary(t *testing.T) {
	run := func(ci string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSkipChild$", "-test.v")
		cmd.Dir = t.TempDir()
		for _, kv := range os.Environ() {
			switch strings.SplitN(kv, "=", 2)[0] {
			case "VAULT_ADDR", "VAULT_TOKEN", "TOKENVAULT_VAULT_BIN", "CI":
			default:
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, childEnv+"=1", "CI="+ci)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("")
	if err != nil {
		t.Fatalf("child failed: %v\n%s", err, out)
	}
	if !strings.Contains(out, "vaulttest: this package skipped 2 test(s) that need a HashiCorp Vault server (") ||
		!strings.Contains(out, "deploy/vault-dev/build.sh") || !strings.Contains(out, "CI=true") {
		t.Errorf("no skip summary in:\n%s", out)
	}
	out, err = run("true")
	if err == nil || strings.Contains(out, "skipped 2 test(s)") || !strings.Contains(out, "--- FAIL: TestSkipChild/a") {
		t.Errorf("under CI=true: err %v, output:\n%s", err, out)
	}
}
