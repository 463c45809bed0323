package e2e

import (
	"os"
	"testing"

	"github.com/tokenvault/tokenvault/internal/pgtest"
	"github.com/tokenvault/tokenvault/internal/vaulttest"
)

// TestMain says at the end how many tests were skipped for want of a
// HashiCorp Vault server (internal/vaulttest).
// It also stops the PostgreSQL server internal/pgtest started.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(runner(func() int { return vaulttest.Main(m) }))) }

type runner func() int

func (r runner) Run() int { return r() }
