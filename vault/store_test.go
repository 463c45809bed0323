package vault_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
	"github.com/tokenvault/tokenvault/vault/format"
)

// coreOnly is the badger store seen through vault.Store alone: a store
// with none of the optional capabilities.
type coreOnly struct{ vault.Store }

// TestCoreOnlyStore: a store that implements vault.Store and nothing else
// serves tokenization, reveal and erasure; each operation that needs a
// capability it lacks fails with ErrUnsupported (a FailedPrecondition
// naming what the store cannot do, and nothing of the request).
func TestCoreOnlyStore(t *testing.T) {
	ctx := context.Background()
	v := newFixtureOn(t, vault.Options{}, func(s *badgerstore.Store) vault.Store { return coreOnly{s} }).v

	const subject, value = "core-subject", "4111111111111111"
	toks, err := v.Tokenize(ctx, subject, []vault.Field{{Kind: format.PAN, Value: value, Deterministic: true}})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := v.Detokenize(ctx, toks, "test"); err != nil || res[0].Err != nil || res[0].Value != value {
		t.Fatalf("Detokenize = %+v, %v", res, err)
	}
	if st := v.Stats(); st.TokensStored != -1 {
		t.Fatalf("Stats.TokensStored = %d over a store that cannot count, want -1", st.TokensStored)
	}

	for name, call := range map[string]func() error{
		"ExportSubject": func() error {
			return v.ExportSubject(ctx, subject, func(vault.ExportHeader, []vault.ExportedRecord) error { return nil })
		},
		"Rectify":           func() error { _, err := v.Rectify(ctx, toks[0], "5555555555554444"); return err },
		"RestrictSubject":   func() error { _, err := v.RestrictSubject(ctx, subject); return err },
		"UnrestrictSubject": func() error { return v.UnrestrictSubject(ctx, subject) },
		"PurgeExpired":      func() error { _, err := v.PurgeExpired(ctx); return err },
		"ScanLedger":        func() error { return v.ScanLedger(ctx, func([]vault.LedgerEntry) error { return nil }) },
		"KEKStatus":         func() error { _, err := v.KEKStatus(ctx); return err },
		"RewrapKeys":        func() error { _, err := v.RewrapKeys(ctx, nil); return err },
		"RetireKEK":         func() error { _, err := v.RetireKEK(ctx, 0); return err },
	} {
		t.Run(name, func(t *testing.T) {
			err := call()
			if !errors.Is(err, vault.ErrUnsupported) || !errors.Is(err, vault.ErrFailedPrecondition) {
				t.Fatalf("%s over a core-only store = %v, want ErrUnsupported", name, err)
			}
			var fe *vault.FieldError
			if !errors.As(err, &fe) || !strings.HasPrefix(fe.Reason, "the store does not support ") {
				t.Fatalf("%s: error %v does not say what the store lacks", name, err)
			}
			for _, secret := range []string{subject, value, toks[0]} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("%s: error %q contains request data", name, err)
				}
			}
		})
	}

	// Erasure needs nothing optional.
	r, _, err := v.EraseSubject(ctx, subject)
	if err != nil || r.Records != 1 || r.Lookups != 1 {
		t.Fatalf("EraseSubject = %+v, %v", r, err)
	}
	if res, _ := v.Detokenize(ctx, toks, "test"); !errors.Is(res[0].Err, vault.ErrNotFound) {
		t.Fatalf("Detokenize after erasure: %v", res[0].Err)
	}
}

// TestDeterministicLookupPaths: the deterministic lookups of a call are
// read in one batch over a store with vault.LookupBatchStore (badger) and
// one field at a time over one without (coreOnly); both give the same
// answers: a repeat within the call, a value tokenized before, a new one,
// and an expired token replaced by a fresh one (deleted, and counted out
// of the tokens stored).
func TestDeterministicLookupPaths(t *testing.T) {
	for _, tc := range []struct {
		name string
		seen func(*badgerstore.Store) vault.Store
	}{
		{"batch", nil},
		{"per field", func(s *badgerstore.Store) vault.Store { return coreOnly{s} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
			f := newFixtureOn(t, vault.Options{Now: c.now}, tc.seen)
			var over vault.Store = f.store
			if tc.seen != nil {
				over = tc.seen(f.store)
			}
			if _, batched := over.(vault.LookupBatchStore); batched != (tc.seen == nil) {
				t.Fatalf("store is a LookupBatchStore: %v", batched)
			}
			det := func(v string) vault.Field { return vault.Field{Kind: format.Email, Value: v, Deterministic: true} }
			short := vault.Field{Kind: format.Email, Value: "short@example.com", Deterministic: true, TTL: time.Hour}
			first := f.tokenize(t, "alice", det("a@example.com"), det("b@example.com"), det("a@example.com"),
				vault.Field{Kind: format.Email, Value: "a@example.com"}, short)
			if first[0] != first[2] || first[0] == first[1] || first[3] == first[0] {
				t.Fatalf("first call: %v", first)
			}
			c.add(2 * time.Hour) // short's token expires
			again := f.tokenize(t, "alice", det("b@example.com"), det("new@example.com"), det("a@example.com"), short)
			if again[0] != first[1] || again[2] != first[0] || again[1] == first[0] || again[1] == first[1] {
				t.Fatalf("second call %v after %v", again, first)
			}
			if again[3] == first[4] {
				t.Fatal("an expired deterministic token was returned")
			}
			if _, err := f.store.Record(ctx, first[4]); !errors.Is(err, vault.ErrNotFound) {
				t.Fatalf("the expired token's record: %v, want it deleted", err)
			}
			// A store that cannot count (coreOnly) reports -1.
			if n, err := f.store.CountTokens(ctx); err != nil || tc.seen == nil && f.v.Stats().TokensStored != n {
				t.Fatalf("Stats.TokensStored = %d, the store holds %d (%v)", f.v.Stats().TokensStored, n, err)
			}
			if other := f.tokenize(t, "bob", det("a@example.com")); other[0] == first[0] {
				t.Fatal("another subject got alice's deterministic token")
			}
		})
	}
}
