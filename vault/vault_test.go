package vault_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
	"github.com/tokenvault/tokenvault/vault/format"
)

type fixture struct {
	v     *vault.Vault
	store *badgerstore.Store
	kek   agekeyring.Provider
}

func newFixture(t testing.TB) *fixture { return newFixtureWith(t, vault.Options{}) }

// newFixtureWith is a vault on a fresh on-disk badger store and age keyring.
func newFixtureWith(t testing.TB, opts vault.Options) *fixture {
	t.Helper()
	return newFixtureOn(t, opts, nil)
}

// sharedStore is the badger store, with every capability, except that it
// does not claim to be exclusive: the vault then behaves as over a store
// that other servers share, re-reading subject keys on every request.
// Tests use it to change the store behind the vault's back (another
// server's erasure, or a crash between two writes).
type sharedStore struct{ *badgerstore.Store }

func (sharedStore) Exclusive() bool { return false }

// newSharedFixture is newFixture with the vault over a sharedStore.
func newSharedFixture(t testing.TB) *fixture {
	return newFixtureOn(t, vault.Options{}, func(s *badgerstore.Store) vault.Store { return sharedStore{s} })
}

// newFixtureOn is newFixtureWith with the vault over seen(the badger
// store), or over the store itself if seen is nil.
func newFixtureOn(t testing.TB, opts vault.Options, seen func(*badgerstore.Store) vault.Store) *fixture {
	t.Helper()
	dir := t.TempDir()
	store, err := badgerstore.Open(filepath.Join(dir, "data"), badgerstore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	kr, _, err := agekeyring.OpenOrCreate(agekeyring.Config{Path: filepath.Join(dir, "keyring.age"), IdentityFile: filepath.Join(dir, "id.txt")}, true)
	if err != nil {
		t.Fatal(err)
	}
	var over vault.Store = store
	if seen != nil {
		over = seen(store)
	}
	v, err := vault.New(context.Background(), over, kr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return &fixture{v: v, store: store, kek: kr}
}

func (f *fixture) tokenize(t testing.TB, subject string, fields ...vault.Field) []string {
	t.Helper()
	toks, err := f.v.Tokenize(context.Background(), subject, fields)
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

// TestRecordBinding: a sealed record moved under another token or to
// another subject's key does not decrypt (associated data binds them).
func TestRecordBinding(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	a := f.tokenize(t, "alice", vault.Field{Kind: format.PAN, Value: "4111111111111111"}, vault.Field{Kind: format.PAN, Value: "5555555555554444"})
	f.tokenize(t, "bob", vault.Field{Kind: format.Name, Value: "Bob"})
	rec, err := f.store.Record(ctx, a[0])
	if err != nil {
		t.Fatal(err)
	}
	bobKey, err := f.store.SubjectKey(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		subject string
		mutate  func(r *vault.Record)
	}{
		"other token":   {"alice", func(r *vault.Record) { r.Token = "4111119999991111" }},
		"other kind":    {"alice", func(r *vault.Record) { r.Token = "4111118888881111"; r.Kind = format.BankAccount }},
		"other subject": {"bob", func(r *vault.Record) { r.Token = "4111117777771111"; r.KeyID = bobKey.ID }},
	} {
		t.Run(name, func(t *testing.T) {
			moved := rec
			tc.mutate(&moved)
			if err := f.store.PutRecords(ctx, tc.subject, moved.KeyID, []vault.Record{moved}); err != nil {
				t.Fatal(err)
			}
			res, err := f.v.Detokenize(ctx, []string{moved.Token}, "test")
			if err != nil {
				t.Fatal(err)
			}
			if !errors.Is(res[0].Err, vault.ErrCorrupt) || res[0].Value != "" {
				t.Fatalf("moved record revealed: %+v", res[0])
			}
		})
	}
}

// TestResumeInterruptedErasure: a crash after the shred but before the
// purge leaves undecryptable records, and the next start purges them.
func TestResumeInterruptedErasure(t *testing.T) {
	ctx := context.Background()
	f := newSharedFixture(t) // the shred below bypasses the vault
	toks := f.tokenize(t, "alice", vault.Field{Kind: format.Email, Value: "alice@example.com", Deterministic: true})
	keep := f.tokenize(t, "bob", vault.Field{Kind: format.Email, Value: "bob@example.com"})
	// The crash: only the shred happened.
	if _, err := f.store.ShredSubject(ctx, "alice", vault.LedgerEntry{}); err != nil {
		t.Fatal(err)
	}
	res, _ := f.v.Detokenize(ctx, toks, "test")
	if !errors.Is(res[0].Err, vault.ErrErased) {
		t.Fatalf("token of a shredded subject: %+v", res[0])
	}
	if _, err := f.store.Record(ctx, toks[0]); err != nil {
		t.Fatal("record should still be on disk before the purge")
	}
	// Restart.
	v2, err := vault.New(ctx, f.store, f.kek, vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	if _, err := f.store.Record(ctx, toks[0]); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("record after resumed purge: %v", err)
	}
	if p, _ := f.store.PendingPurges(ctx); len(p) != 0 {
		t.Fatal("pending purge left behind")
	}
	res, _ = v2.Detokenize(ctx, keep, "test")
	if res[0].Err != nil {
		t.Fatalf("other subject after resumed purge: %v", res[0].Err)
	}
}

// TestWarmCacheDoesNotOutliveTheKey: over a store other servers share,
// the store is the authority. A key shredded behind this vault's back
// (another server erased the subject) stops every request even though
// this vault still caches the keys.
func TestWarmCacheDoesNotOutliveTheKey(t *testing.T) {
	ctx := context.Background()
	f := newSharedFixture(t)
	toks := f.tokenize(t, "alice", vault.Field{Kind: format.Phone, Value: "+14155550100"})
	blobs, err := f.v.Encrypt(ctx, "alice", []vault.EncryptItem{{Plaintext: []byte("x")}})
	if err != nil {
		t.Fatal(err)
	}
	if f.v.CachedKeys() != 1 {
		t.Fatalf("cached keys = %d, want 1", f.v.CachedKeys())
	}
	if _, err := f.store.ShredSubject(ctx, "alice", vault.LedgerEntry{}); err != nil { // not through f.v
		t.Fatal(err)
	}
	res, _ := f.v.Detokenize(ctx, toks, "test")
	if !errors.Is(res[0].Err, vault.ErrErased) {
		t.Fatalf("detokenize with warm cache after shred: %+v", res[0])
	}
	masks, _ := f.v.Mask(ctx, toks)
	if !errors.Is(masks[0].Err, vault.ErrErased) {
		t.Fatalf("mask with warm cache after shred: %+v", masks[0])
	}
	dec, _ := f.v.Decrypt(ctx, []vault.DecryptItem{{Blob: blobs[0]}}, "test")
	if !errors.Is(dec[0].Err, vault.ErrNotFound) {
		t.Fatalf("decrypt with warm cache after shred: %+v", dec[0])
	}
}

// TestEraseRacingTokenize: tokenizes racing an erasure either fail or are
// erased with it; none survives the erasure.
func TestEraseRacingTokenize(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.tokenize(t, "alice", vault.Field{Kind: format.Name, Value: "Alice Smith"})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var issued []string
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				toks, err := f.v.Tokenize(ctx, "alice", []vault.Field{{Kind: format.Name, Value: "Alice Smith"}})
				if err != nil {
					continue
				}
				mu.Lock()
				issued = append(issued, toks...)
				mu.Unlock()
			}
		}()
	}
	r, _, err := f.v.EraseSubject(ctx, "alice")
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	// Tokens issued before the erasure were erased; tokens issued after it
	// belong to a new key for the returning subject. Erase again and every
	// token ever issued must be gone.
	r2, _, err := f.v.EraseSubject(ctx, "alice")
	if err != nil && !errors.Is(err, vault.ErrNotFound) {
		t.Fatal(err)
	}
	if int(r.Records+r2.Records) < 1 {
		t.Fatalf("receipts count %d+%d records", r.Records, r2.Records)
	}
	res, _ := f.v.Detokenize(ctx, issued[:min(len(issued), 1000)], "test")
	for i, x := range res {
		if x.Err == nil {
			t.Fatalf("token %d survived erasure", i)
		}
	}
}

// TestTokenSpaceExhausted: a 13-digit card number keeps 10 of 13 digits;
// when the remaining space is used up the vault says so instead of reusing
// a token.
func TestTokenSpaceExhausted(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a token space")
	}
	ctx := context.Background()
	f := newFixture(t)
	fields := make([]vault.Field, 1000)
	for i := range fields {
		fields[i] = vault.Field{Kind: format.PAN, Value: "4222222222222"}
	}
	seen := map[string]bool{}
	var err error
	for range 3 {
		var toks []string
		toks, err = f.v.Tokenize(ctx, "alice", fields)
		if err != nil {
			break
		}
		for _, tok := range toks {
			if seen[tok] {
				t.Fatal("a token was issued twice")
			}
			seen[tok] = true
		}
	}
	if !errors.Is(err, vault.ErrExhausted) {
		t.Fatalf("err = %v after %d tokens, want ErrExhausted", err, len(seen))
	}
	var fe *vault.FieldError
	if !errors.As(err, &fe) || fe.Field == "" {
		t.Fatalf("exhaustion error does not name the field: %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "card number of the same length with the same first 6 and last 4 digits") || strings.Contains(msg, "4222222222222") {
		t.Fatalf("exhaustion message %q: want the card numbers that share the tokens, and not the value", msg)
	}
}

// TestEraseWithWarmCache: over the exclusive badger store the key cache is
// trusted (no store read per request), so erasing through the vault must
// take effect in the cache: nothing revealed afterwards, and a returning
// subject gets a new key.
func TestEraseWithWarmCache(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	toks := f.tokenize(t, "alice", vault.Field{Kind: format.Phone, Value: "+14155550100"})
	blobs, err := f.v.Encrypt(ctx, "alice", []vault.EncryptItem{{Plaintext: []byte("x")}})
	if err != nil {
		t.Fatal(err)
	}
	if res, _ := f.v.Detokenize(ctx, toks, "test"); res[0].Err != nil || f.v.CachedKeys() != 1 {
		t.Fatalf("warm-up: %+v, cached %d", res[0], f.v.CachedKeys())
	}
	if _, _, err := f.v.EraseSubject(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if f.v.CachedKeys() != 0 {
		t.Fatalf("cached keys after erasure = %d, want 0", f.v.CachedKeys())
	}
	check := func(when string) {
		t.Helper()
		if res, _ := f.v.Detokenize(ctx, toks, "test"); res[0].Err == nil || res[0].Value != "" {
			t.Fatalf("detokenize %s: %+v", when, res[0])
		}
		if m, _ := f.v.Mask(ctx, toks); m[0].Err == nil {
			t.Fatalf("mask %s: %+v", when, m[0])
		}
		if dec, _ := f.v.Decrypt(ctx, []vault.DecryptItem{{Blob: blobs[0]}}, "test"); !errors.Is(dec[0].Err, vault.ErrNotFound) {
			t.Fatalf("decrypt %s: %+v", when, dec[0])
		}
	}
	check("after erasure")
	// The subject comes back: a new key, and the old data stays dead.
	again := f.tokenize(t, "alice", vault.Field{Kind: format.Phone, Value: "+14155550100"})
	if res, _ := f.v.Detokenize(ctx, again, "test"); res[0].Err != nil || res[0].Value != "+14155550100" {
		t.Fatalf("returning subject: %+v", res[0])
	}
	check("after the subject came back")
}

// TestRevealsRacingErasure: reveals running while a subject is erased or
// restricted may succeed until the call returns, never after it, even
// though they keep (re)filling the key cache concurrently.
func TestRevealsRacingErasure(t *testing.T) {
	for _, change := range []string{"erase", "restrict"} {
		t.Run(change, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t)
			for round := range 20 {
				subject := fmt.Sprintf("subject-%d", round)
				toks := f.tokenize(t, subject, vault.Field{Kind: format.Email, Value: "a@example.com"})
				blobs, err := f.v.Encrypt(ctx, subject, []vault.EncryptItem{{Plaintext: []byte("x")}})
				if err != nil {
					t.Fatal(err)
				}
				var done atomic.Bool
				var leaks atomic.Int64
				var wg sync.WaitGroup
				for range 4 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							after := done.Load() // read before the reveal starts
							res, _ := f.v.Detokenize(ctx, toks, "test")
							dec, _ := f.v.Decrypt(ctx, []vault.DecryptItem{{Blob: blobs[0]}}, "test")
							if after && (res[0].Err == nil || dec[0].Err == nil) {
								leaks.Add(1)
							}
							if after {
								return
							}
						}
					}()
				}
				time.Sleep(time.Millisecond)
				switch change {
				case "erase":
					_, _, err = f.v.EraseSubject(ctx, subject)
				case "restrict":
					_, err = f.v.RestrictSubject(ctx, subject)
				}
				if err != nil {
					t.Fatal(err)
				}
				done.Store(true)
				wg.Wait()
				if n := leaks.Load(); n > 0 {
					t.Fatalf("round %d: %d reveals started after %s returned succeeded", round, n, change)
				}
			}
		})
	}
}
