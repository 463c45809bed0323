package vault_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/tokenvault/tokenvault/crypto/kek"
	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/crypto/kek/hcvault"
	"github.com/tokenvault/tokenvault/internal/vaulttest"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
	"github.com/tokenvault/tokenvault/vault/format"
)

// rotatingKEK is what these tests need of a KEK: both providers have it.
type rotatingKEK interface {
	kek.Wrapper
	kek.Rotator
}

// forEachKEK runs test against the age keyring and against HashiCorp Vault
// transit (a real server from internal/vaulttest: skipped without one,
// except under CI=true).
func forEachKEK(t *testing.T, test func(t *testing.T, newKEK func(t *testing.T) rotatingKEK)) {
	t.Run("agekeyring", func(t *testing.T) {
		test(t, func(t *testing.T) rotatingKEK {
			dir := t.TempDir()
			kr, _, err := agekeyring.OpenOrCreate(agekeyring.Config{Path: filepath.Join(dir, "keyring.age"), IdentityFile: filepath.Join(dir, "id.txt")}, true)
			if err != nil {
				t.Fatal(err)
			}
			return kr
		})
	})
	t.Run("hcvault", func(t *testing.T) {
		srv := vaulttest.Start(t)
		mount, key := srv.Transit(t)
		test(t, func(t *testing.T) rotatingKEK {
			p, err := hcvault.New(t.Context(), hcvault.Config{Address: srv.Addr, Token: srv.Token, Mount: mount, Key: key}, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			return p
		})
	})
}

// TestWrappedKeyMovedToDecoy: someone who can write the store copies a
// subject's wrapped key under a decoy subject, hoping to keep it past the
// subject's erasure and through KEK rotations. The wrap is bound to its
// subject (vault.KeyBinding), so under the decoy it does not unwrap, with
// a cold cache (the KEK refuses) or a warm one (the vault refuses), and the
// rewrap refuses to carry it into the next KEK version.
func TestWrappedKeyMovedToDecoy(t *testing.T) {
	forEachKEK(t, func(t *testing.T, newKEK func(t *testing.T) rotatingKEK) {
		ctx := context.Background()
		store, err := badgerstore.Open(filepath.Join(t.TempDir(), "data"), badgerstore.Options{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		w := newKEK(t)
		warm, err := vault.New(ctx, store, w, vault.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(warm.Close)
		toks, err := warm.Tokenize(ctx, "alice", []vault.Field{{Kind: format.Email, Value: "alice@example.com"}})
		if err != nil {
			t.Fatal(err)
		}
		alice, err := store.SubjectKey(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Unwrap(ctx, alice.Wrapped, vault.KeyBinding(alice.ID, "alice")); err != nil {
			t.Fatalf("alice's key does not unwrap bound to alice: %v", err)
		}
		if _, err := w.Unwrap(ctx, alice.Wrapped, vault.KeyBinding(alice.ID, "decoy")); !errors.Is(err, kek.ErrInvalidWrapped) {
			t.Fatalf("alice's key unwraps bound to the decoy: %v", err)
		}

		// The store writer's copy.
		if _, err := store.CreateSubjectKey(ctx, "decoy", alice); err != nil {
			t.Fatal(err)
		}

		cold, err := vault.New(ctx, store, w, vault.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cold.Close)
		if _, err := cold.Tokenize(ctx, "decoy", []vault.Field{{Kind: format.Name, Value: "Eve"}}); !errors.Is(err, kek.ErrInvalidWrapped) {
			t.Fatalf("tokenize under the decoy, cold cache: %v, want kek.ErrInvalidWrapped", err)
		}
		if _, err := cold.Encrypt(ctx, "decoy", []vault.EncryptItem{{Plaintext: []byte("x"), Context: "c"}}); !errors.Is(err, kek.ErrInvalidWrapped) {
			t.Fatalf("encrypt under the decoy, cold cache: %v, want kek.ErrInvalidWrapped", err)
		}
		// The copy also took over the key id's index, so alice's token now
		// leads to the decoy: refused too.
		res, err := cold.Detokenize(ctx, toks, "test")
		if err != nil || !errors.Is(res[0].Err, kek.ErrInvalidWrapped) {
			t.Fatalf("detokenize through the decoy: %+v, %v", res, err)
		}
		// The warm vault has alice's keys cached under the same key id.
		if _, err := warm.Tokenize(ctx, "decoy", []vault.Field{{Kind: format.Name, Value: "Eve"}}); !errors.Is(err, vault.ErrCorrupt) {
			t.Fatalf("tokenize under the decoy, warm cache: %v, want vault.ErrCorrupt", err)
		}

		if _, err := cold.RotateKEK(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := cold.RewrapKeys(ctx, nil); !errors.Is(err, kek.ErrInvalidWrapped) {
			t.Fatalf("rewrap with the decoy in the store: %v, want kek.ErrInvalidWrapped", err)
		}
		if got, _ := store.SubjectKey(ctx, "decoy"); string(got.Wrapped) != string(alice.Wrapped) {
			t.Fatal("the decoy's copy was rewrapped")
		}
	})
}
