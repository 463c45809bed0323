package vault_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
	"github.com/tokenvault/tokenvault/vault/format"
)

// gatedCount is the badger store whose snapshot count waits for release
// before it runs: the count of a large store, still running while the
// server serves.
type gatedCount struct {
	*badgerstore.Store
	release chan struct{}
}

func (g gatedCount) TokenCountSnapshot(ctx context.Context) (func(context.Context, int64) (int64, bool, error), error) {
	count, err := g.Store.TokenCountSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, limit int64) (int64, bool, error) {
		<-g.release
		return count(ctx, limit)
	}, nil
}

// openStoreKeyring opens a badger store and a keyring in a new directory,
// for a test that opens vaults over them itself (the caller closes the
// store).
func openStoreKeyring(t *testing.T) (*badgerstore.Store, agekeyring.Provider) {
	t.Helper()
	return openStoreKeyringIn(t, t.TempDir())
}

// openStoreKeyringIn is openStoreKeyring in dir: the store in dir/data.
func openStoreKeyringIn(t *testing.T, dir string) (*badgerstore.Store, agekeyring.Provider) {
	t.Helper()
	store, err := badgerstore.Open(filepath.Join(dir, "data"), badgerstore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kr, _, err := agekeyring.OpenOrCreate(agekeyring.Config{Path: filepath.Join(dir, "keyring.age"), IdentityFile: filepath.Join(dir, "id.txt")}, true)
	if err != nil {
		store.Close()
		t.Fatal(err)
	}
	return store, kr
}

// TestTokensCountedInBackground: New does not wait for the count of the
// stored tokens; until it is done the count is -1 and "counting"; then it
// is exact, including what was written and erased meanwhile.
func TestTokensCountedInBackground(t *testing.T) {
	ctx := context.Background()
	store, kr := openStoreKeyring(t)
	defer store.Close()
	pan := func(v string) vault.Field { return vault.Field{Kind: format.PAN, Value: v} }
	first, err := vault.New(ctx, store, kr, vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Tokenize(ctx, "alice", []vault.Field{pan("4111111111111111"), pan("5555555555554444")}); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Tokenize(ctx, "bob", []vault.Field{pan("4000056655665556")}); err != nil {
		t.Fatal(err)
	}
	if st := first.Stats(); st.TokensStored != 3 || st.TokensCounting {
		t.Fatalf("first vault: Stats = %+v, want 3 tokens, counted", st)
	}
	first.Close()

	g := gatedCount{store, make(chan struct{})}
	v, err := vault.New(ctx, g, kr, vault.Options{CountFirst: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if st := v.Stats(); st.TokensStored != -1 || !st.TokensCounting {
		t.Fatalf("while counting: Stats = %+v, want -1 tokens, counting", st)
	}
	// Writes and an erasure during the count.
	if _, err := v.Tokenize(ctx, "carol", []vault.Field{pan("4242424242424242"), pan("4012888888881881")}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.EraseSubject(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	close(g.release)
	st := v.Stats()
	for deadline := time.Now().Add(time.Minute); st.TokensCounting && time.Now().Before(deadline); st = v.Stats() {
		time.Sleep(5 * time.Millisecond)
	}
	want, err := store.CountTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want != 4 || st.TokensStored != want || st.TokensCounting {
		t.Fatalf("after the count: Stats = %+v, store holds %d; want 4, counted", st, want)
	}
}

// TestCloseStopsTheCount: Close does not wait for a count that cannot
// finish, and the store then closes.
func TestCloseStopsTheCount(t *testing.T) {
	ctx := context.Background()
	store, kr := openStoreKeyring(t)
	g := gatedCount{store, make(chan struct{})}
	v, err := vault.New(ctx, g, kr, vault.Options{CountFirst: -1})
	if err != nil {
		t.Fatal(err)
	}
	close(g.release) // the count now sees its context cancelled, or finishes
	v.Close()
	if st := v.Stats(); st.TokensCounting {
		t.Fatalf("after Close: Stats = %+v, still counting", st)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestTokensRefusedWhileCounting: after a restart, a stored token given
// as a value is refused and a stored token revealed, both while the count
// (which fills the badger store's token filter) still runs and after it;
// new tokens are drawn either way.
func TestTokensRefusedWhileCounting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, kr := openStoreKeyringIn(t, dir)
	v, err := vault.New(ctx, store, kr, vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	values := []string{"4111111111111111", "5555555555554444"}
	toks, err := v.Tokenize(ctx, "alice", []vault.Field{{Kind: format.PAN, Value: values[0]}, {Kind: format.Generic, Value: values[1]}})
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	if store, err = badgerstore.Open(filepath.Join(dir, "data"), badgerstore.Options{}, nil); err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	g := gatedCount{store, make(chan struct{})}
	if v, err = vault.New(ctx, g, kr, vault.Options{CountFirst: -1}); err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	check := func(when string) {
		t.Helper()
		for i, tok := range toks {
			_, err := v.Tokenize(ctx, "bob", []vault.Field{{Kind: format.Generic, Value: tok}})
			if !errors.Is(err, vault.ErrFailedPrecondition) || !strings.Contains(err.Error(), "is a token of this vault") {
				t.Fatalf("%s: tokenizing token %d: %v, want it refused", when, i, err)
			}
			res, err := v.Detokenize(ctx, []string{tok}, "test")
			if err != nil || res[0].Err != nil || res[0].Value != values[i] {
				t.Fatalf("%s: revealing token %d: %+v, %v", when, i, res, err)
			}
		}
		if _, err := v.Tokenize(ctx, "bob", []vault.Field{{Kind: format.PAN, Value: "4000056655665556"}}); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
	}
	check("while counting")
	close(g.release)
	for deadline := time.Now().Add(time.Minute); v.Stats().TokensCounting && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if st := v.Stats(); st.TokensCounting {
		t.Fatalf("count not done: %+v", st)
	}
	check("after the count")
}
