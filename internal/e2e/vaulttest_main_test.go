package e2e

import (
	"os"
	"testing"

	"github.com/tokenvault/tokenvault/internal/vaulttest"
)

// TestMain says at the end how many tests were skipped for want of a
// HashiCorp Vault server (internal/vaulttest).
func TestMain(m *testing.M) { os.Exit(vaulttest.Main(m)) }
