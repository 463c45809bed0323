package agekeyring_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/tokenvault/tokenvault/crypto/kek"
	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/crypto/kek/kektest"
)

func TestConformance(t *testing.T) {
	kektest.Run(t, func(t *testing.T) kek.Wrapper {
		dir := t.TempDir()
		p, created, err := agekeyring.OpenOrCreate(agekeyring.Config{
			Path: filepath.Join(dir, "keyring.age"), IdentityFile: filepath.Join(dir, "identity.txt"),
		}, true)
		if err != nil || !created {
			t.Fatalf("OpenOrCreate: created=%v err=%v", created, err)
		}
		return p
	})
}

func TestPassphraseConformance(t *testing.T) {
	kektest.Run(t, func(t *testing.T) kek.Wrapper {
		p, _, err := agekeyring.OpenOrCreate(agekeyring.Config{
			Path: filepath.Join(t.TempDir(), "keyring.age"), Passphrase: "correct horse battery staple",
		}, true)
		if err != nil {
			t.Fatal(err)
		}
		return p
	})
}

// TestReopen: keys survive a restart, including rotations and retirements.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := agekeyring.Config{Path: filepath.Join(dir, "k", "keyring.age"), IdentityFile: filepath.Join(dir, "id", "identity.txt")}
	p, _, err := agekeyring.OpenOrCreate(cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	dek := bytes.Repeat([]byte{7}, 32)
	w1, _ := p.Wrap(ctx, dek)
	if _, err := p.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	w2, _ := p.Wrap(ctx, dek)

	p2, created, err := agekeyring.OpenOrCreate(cfg, false)
	if err != nil || created {
		t.Fatalf("reopen: created=%v err=%v", created, err)
	}
	for _, w := range [][]byte{w1, w2} {
		got, err := p2.Unwrap(ctx, w)
		if err != nil || !bytes.Equal(got, dek) {
			t.Fatalf("unwrap after reopen: %v", err)
		}
	}
	if err := p2.Retire(ctx, 2); err != nil {
		t.Fatal(err)
	}
	p3, _, err := agekeyring.OpenOrCreate(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p3.Unwrap(ctx, w1); !errors.Is(err, kek.ErrInvalidWrapped) {
		t.Fatalf("unwrap under a retired version after reopen: %v", err)
	}
	if _, err := p3.Unwrap(ctx, w2); err != nil {
		t.Fatalf("unwrap under the current version after reopen: %v", err)
	}
	if err := p3.Retire(ctx, 3); err == nil {
		t.Fatal("retiring the current version succeeded")
	}
	info, err := os.Stat(cfg.IdentityFile)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("identity file mode: %v %v", info.Mode(), err)
	}
}

// TestRefusals: never a new keyring over old data, never a silent fallback.
func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	cfg := agekeyring.Config{Path: filepath.Join(dir, "keyring.age"), IdentityFile: filepath.Join(dir, "identity.txt")}
	if _, _, err := agekeyring.OpenOrCreate(cfg, false); !errors.Is(err, agekeyring.ErrNotExist) {
		t.Fatalf("missing keyring with existing data: %v, want ErrNotExist", err)
	}
	if _, err := os.Stat(cfg.Path); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a keyring was created although creation was not allowed")
	}
	if _, _, err := agekeyring.OpenOrCreate(cfg, true); err != nil {
		t.Fatal(err)
	}
	original, _ := os.ReadFile(cfg.Path)

	t.Run("create over existing", func(t *testing.T) {
		id, _ := age.GenerateX25519Identity()
		if _, err := agekeyring.Create(cfg.Path, id.Recipient()); err == nil {
			t.Fatal("Create replaced an existing keyring")
		}
	})
	t.Run("wrong identity", func(t *testing.T) {
		other := filepath.Join(dir, "other.txt")
		id, _ := age.GenerateX25519Identity()
		os.WriteFile(other, []byte(id.String()+"\n"), 0o600)
		_, _, err := agekeyring.OpenOrCreate(agekeyring.Config{Path: cfg.Path, IdentityFile: other}, true)
		if err == nil || !strings.Contains(err.Error(), "cannot decrypt") {
			t.Fatalf("wrong identity: %v", err)
		}
	})
	t.Run("missing identity", func(t *testing.T) {
		_, _, err := agekeyring.OpenOrCreate(agekeyring.Config{Path: cfg.Path, IdentityFile: filepath.Join(dir, "nope.txt")}, true)
		if err == nil {
			t.Fatal("opened a keyring without its identity")
		}
		if _, err := os.Stat(filepath.Join(dir, "nope.txt")); err == nil {
			t.Fatal("generated a new identity for an existing keyring")
		}
	})
	t.Run("corrupt file", func(t *testing.T) {
		bad := filepath.Join(dir, "corrupt.age")
		os.WriteFile(bad, original[:len(original)/2], 0o600)
		if _, _, err := agekeyring.OpenOrCreate(agekeyring.Config{Path: bad, IdentityFile: cfg.IdentityFile}, true); err == nil {
			t.Fatal("opened a truncated keyring")
		}
	})
	t.Run("bad config", func(t *testing.T) {
		for _, c := range []agekeyring.Config{{}, {Path: "x"}} {
			if _, _, err := agekeyring.OpenOrCreate(c, true); err == nil || !strings.Contains(err.Error(), "keyring.") {
				t.Errorf("config %+v: %v", c, err)
			}
		}
	})
	after, _ := os.ReadFile(cfg.Path)
	if !bytes.Equal(original, after) {
		t.Fatal("a refused operation changed the keyring file")
	}
}

func TestConfigHidesPassphrase(t *testing.T) {
	c := agekeyring.Config{Path: "k.age", Passphrase: "correct horse battery staple"}
	for _, out := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%v", struct{ C agekeyring.Config }{c})} {
		if strings.Contains(out, "horse") || !strings.Contains(out, "k.age") {
			t.Errorf("printed config: %s", out)
		}
	}
}
