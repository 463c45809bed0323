package agekeyring_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/tokenvault/tokenvault/crypto/kek"
	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/crypto/kek/kektest"
	"github.com/tokenvault/tokenvault/crypto/keyfile"
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

// TestFilePermissions: a keyring or identity file that group or others may
// access is refused, naming the file, and left as it is; one made with
// mode 0600 (as OpenOrCreate and age-keygen -o make them) opens.
func TestFilePermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no permission bits on Windows")
	}
	dir := t.TempDir()
	cfg := agekeyring.Config{Path: filepath.Join(dir, "keyring.age"), IdentityFile: filepath.Join(dir, "identity.txt")}
	if _, _, err := agekeyring.OpenOrCreate(cfg, true); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{cfg.Path, cfg.IdentityFile} {
		for _, mode := range []os.FileMode{0o640, 0o644, 0o604, 0o660} {
			t.Run(filepath.Base(file)+"/"+mode.String(), func(t *testing.T) {
				before, _ := os.ReadFile(file)
				os.Chmod(file, mode)
				defer os.Chmod(file, 0o600)
				_, _, err := agekeyring.OpenOrCreate(cfg, false)
				if !errors.Is(err, keyfile.ErrPermissions) || !strings.Contains(err.Error(), file) {
					t.Fatalf("mode %v: %v, want a permissions error naming the file", mode, err)
				}
				if after, _ := os.ReadFile(file); !bytes.Equal(before, after) {
					t.Fatal("a refused open changed the file")
				}
			})
		}
	}
	if _, _, err := agekeyring.OpenOrCreate(cfg, false); err != nil {
		t.Fatalf("mode 0600 again: %v", err)
	}
	pass := agekeyring.Config{Path: filepath.Join(dir, "pass.age"), Passphrase: "correct horse battery staple"}
	if _, _, err := agekeyring.OpenOrCreate(pass, true); err != nil {
		t.Fatal(err)
	}
	os.Chmod(pass.Path, 0o644)
	if _, _, err := agekeyring.OpenOrCreate(pass, false); !errors.Is(err, keyfile.ErrPermissions) {
		t.Fatalf("world-readable passphrase keyring: %v", err)
	}
}
