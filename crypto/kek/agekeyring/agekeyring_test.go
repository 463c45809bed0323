package agekeyring_test

import (
	"bytes"
	"context"
	"encoding/hex"
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
	}, wrapUnbound)
}

func wrapUnbound(t *testing.T, w kek.Wrapper, dek []byte) []byte {
	t.Helper()
	b, err := agekeyring.WrapUnbound(w.(agekeyring.Provider), dek)
	if err != nil {
		t.Fatal(err)
	}
	return b
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
	}, wrapUnbound)
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
	w1, _ := p.Wrap(ctx, dek, ad)
	if _, err := p.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	w2, _ := p.Wrap(ctx, dek, ad)

	p2, created, err := agekeyring.OpenOrCreate(cfg, false)
	if err != nil || created {
		t.Fatalf("reopen: created=%v err=%v", created, err)
	}
	for _, w := range [][]byte{w1, w2} {
		got, err := p2.Unwrap(ctx, w, ad)
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
	if _, err := p3.Unwrap(ctx, w1, ad); !errors.Is(err, kek.ErrInvalidWrapped) {
		t.Fatalf("unwrap under a retired version after reopen: %v", err)
	}
	if _, err := p3.Unwrap(ctx, w2, ad); err != nil {
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

var ad = []byte("associated data")

// TestLegacyKeyring: a keyring and a wrapped key written by the code before
// wraps were bound (testdata/legacy-v1, made by its gen.go at commit
// 6978447) still open; the blob is reported unbound, and Rewrap binds it.
func TestLegacyKeyring(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, name := range []string{"keyring.age", "identity.txt"} {
		b, err := os.ReadFile(filepath.Join("testdata", "legacy-v1", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	golden, err := os.ReadFile(filepath.Join("testdata", "legacy-v1", "wrapped.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var dekHex, wrappedHex string
	if _, err := fmt.Sscanf(string(golden), "dek %s\nwrapped %s\n", &dekHex, &wrappedHex); err != nil {
		t.Fatalf("wrapped.txt: %v", err)
	}
	dek, _ := hex.DecodeString(dekHex)
	wrapped, _ := hex.DecodeString(wrappedHex)

	p, _, err := agekeyring.OpenOrCreate(agekeyring.Config{Path: filepath.Join(dir, "keyring.age"), IdentityFile: filepath.Join(dir, "identity.txt")}, false)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := p.Describe(wrapped); err != nil || info.Bound || info.Version != 1 {
		t.Fatalf("Describe(legacy blob) = %+v, %v; want unbound, version 1", info, err)
	}
	if got, err := p.Unwrap(ctx, wrapped, ad); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("Unwrap(legacy blob) = %x, %v", got, err)
	}
	// The test helper writes the same format as the old code did.
	same, err := agekeyring.WrapUnbound(p, dek)
	if err != nil || len(same) != len(wrapped) || !bytes.Equal(same[:5], wrapped[:5]) {
		t.Fatalf("WrapUnbound = %x, %v; want the legacy header %x", same, err, wrapped[:5])
	}
	out, err := p.Rewrap(ctx, []kek.RewrapItem{{Wrapped: wrapped, AD: ad}})
	if err != nil {
		t.Fatal(err)
	}
	if info, err := p.Describe(out[0]); err != nil || !info.Bound {
		t.Fatalf("Describe(rewrapped) = %+v, %v; want bound", info, err)
	}
	if got, err := p.Unwrap(ctx, out[0], ad); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("Unwrap(rewrapped) = %x, %v", got, err)
	}
	if _, err := p.Unwrap(ctx, out[0], []byte("another subject")); !errors.Is(err, kek.ErrInvalidWrapped) {
		t.Fatalf("rewrapped legacy blob unwraps with other associated data: %v", err)
	}
}

// TestBoundCannotPassAsUnbound: marking a bound blob as format 1 (unbound,
// whose Unwrap ignores the associated data) makes it fail to authenticate,
// so binding cannot be stripped.
func TestBoundCannotPassAsUnbound(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	p, _, err := agekeyring.OpenOrCreate(agekeyring.Config{Path: filepath.Join(dir, "k.age"), IdentityFile: filepath.Join(dir, "id")}, true)
	if err != nil {
		t.Fatal(err)
	}
	w, err := p.Wrap(ctx, bytes.Repeat([]byte{1}, 32), ad)
	if err != nil {
		t.Fatal(err)
	}
	downgraded := bytes.Clone(w)
	downgraded[0] = 1
	if info, err := p.Describe(downgraded); err != nil || info.Bound {
		t.Fatalf("Describe(downgraded) = %+v, %v", info, err)
	}
	for _, a := range [][]byte{ad, []byte("another subject")} {
		if _, err := p.Unwrap(ctx, downgraded, a); !errors.Is(err, kek.ErrInvalidWrapped) {
			t.Fatalf("a bound blob relabelled unbound unwraps: %v", err)
		}
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
