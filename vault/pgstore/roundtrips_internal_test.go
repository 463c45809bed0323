package pgstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/internal/pgtest"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

// counted marks the context whose statements roundTrips counts.
type counted struct{}

// roundTrips counts the round trips made to the database for a counted
// context: every statement sent alone (a query, an Exec, BEGIN and
// COMMIT), every batch, every statement prepared. A figure independent of
// load, where CPU time and throughput are not.
type roundTrips struct{ n atomic.Int64 }

func (c *roundTrips) add(ctx context.Context) {
	if ctx.Value(counted{}) != nil {
		c.n.Add(1)
	}
}

func (c *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.add(ctx)
	return ctx
}
func (c *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.add(ctx)
	return ctx
}
func (c *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (c *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}
func (c *roundTrips) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	c.add(ctx)
	return ctx
}
func (c *roundTrips) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}

// count runs fn with a counted context and returns its round trips.
func (c *roundTrips) count(fn func(ctx context.Context)) int64 {
	before := c.n.Load()
	fn(context.WithValue(context.Background(), counted{}, true))
	return c.n.Load() - before
}

// TestRoundTrips: what a tokenize and a reveal cost in round trips to the
// database, on a vault over the store as a replica runs it (shared: the
// subject's key is read on every call). A tokenize: the subject's key,
// the check that no value is a live token (one statement for every
// field), and the batch with its key check, committed in the same
// statement; a reveal: the record with its subject's key, in one.
func TestRoundTrips(t *testing.T) {
	ctx := context.Background()
	rt := &roundTrips{}
	v := vaultOver(t, rt, vault.Options{})

	// 19-digit card numbers: a token keeps their first 6 and last 4, so
	// 9 digits are drawn (~9e8 tokens). With a 15-digit one (5 drawn,
	// ~9e4 tokens) a fresh token can meet an earlier one (~1e-4 a run),
	// and the collision's redraw adds its round trips to the count: most
	// likely why one CI run counted 7 for tokenize x10.
	pan := func(i int) vault.Field {
		return vault.Field{Kind: format.PAN, Value: []string{"4111111111111111110", "4000000000000000006", "4555555555555555557"}[i%3]}
	}
	fields := func(n int) []vault.Field {
		fs := make([]vault.Field, n)
		for i := range fs {
			fs[i] = pan(i)
		}
		return fs
	}
	var tok string
	tokenize := func(n int) func(ctx context.Context) {
		return func(ctx context.Context) {
			toks, err := v.Tokenize(ctx, "alice", fields(n))
			if err != nil {
				t.Fatal(err)
			}
			tok = toks[0]
		}
	}
	// Deterministic e-mails, tokenized before (the warm-up): each field's
	// lookup and record are read, all in one statement.
	emails := func(ctx context.Context) {
		fs := make([]vault.Field, 10)
		for i := range fs {
			fs[i] = vault.Field{Kind: format.Email, Value: fmt.Sprintf("user%d@example.com", i), Deterministic: true}
		}
		if _, err := v.Tokenize(ctx, "alice", fs); err != nil {
			t.Fatal(err)
		}
	}
	detokenize := func(ctx context.Context) {
		out, err := v.Detokenize(ctx, []string{tok}, "support")
		if err != nil || out[0].Err != nil {
			t.Fatalf("detokenize: %v %v", err, out)
		}
	}
	// Warm-up: the subject's first key, and each statement prepared once.
	tokenize(1)(ctx)
	tokenize(10)(ctx)
	detokenize(ctx)
	emails(ctx)

	for _, tc := range []struct {
		name string
		fn   func(context.Context)
		want int64
	}{
		{"tokenize x1", tokenize(1), 3},
		{"tokenize x10", tokenize(10), 3},
		{"detokenize x1", detokenize, 1},
		// The subject's key, the live-token check, and one statement for
		// every field's lookup and record (two per field before: 23 in all).
		{"deterministic tokenize x10, all known", emails, 3},
	} {
		if got := rt.count(tc.fn); got != tc.want {
			t.Errorf("%s: %d round trips to the database, want %d", tc.name, got, tc.want)
		} else {
			t.Logf("%s: %d round trips", tc.name, got)
		}
	}
}

// vaultOver opens a vault on a store over a fresh database, with one
// connection (so that its statement cache is warm after the first calls:
// each connection prepares a statement once), traced by rt.
func vaultOver(t *testing.T, rt *roundTrips, opts vault.Options) *vault.Vault {
	t.Helper()
	ctx := context.Background()
	db := pgtest.New(t)
	if _, _, err := Migrate(ctx, db.DSN); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, db.DSN, Options{MaxConns: 1, tracer: rt})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	dir := t.TempDir()
	kr, _, err := agekeyring.OpenOrCreate(agekeyring.Config{Path: filepath.Join(dir, "keyring.age"), IdentityFile: filepath.Join(dir, "id.txt")}, true)
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.New(ctx, s, kr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

// TestRefuseTokensAtOnce: the check that no value is a live token, made
// for every field in one read (vault.RecordBatchStore), refuses what the
// per-field check refuses (vault's TestTokenizeRefusesTokens, on badger):
// a live token of any subject, as given or once normalized, naming the
// field, and nothing stored; an expired or erased token is a string again.
func TestRefuseTokensAtOnce(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	rt := &roundTrips{}
	v := vaultOver(t, rt, vault.Options{Now: func() time.Time { return now }})
	tokenize := func(subject string, fs ...vault.Field) []string {
		t.Helper()
		toks, err := v.Tokenize(ctx, subject, fs)
		if err != nil {
			t.Fatal(err)
		}
		return toks
	}
	toks := tokenize("alice", vault.Field{Kind: format.PAN, Value: "4111111111111111"}, vault.Field{Kind: format.SSN, Value: "123-45-6789"})
	pan, ssn := toks[0], toks[1]
	spaced := pan[:4] + " " + pan[4:8] + " " + pan[8:12] + " " + pan[12:]
	ordinary := vault.Field{Kind: format.Phone, Value: "+14155550100"}
	before := v.Stats().TokensCreated
	for _, tc := range []struct {
		name, subject string
		field         vault.Field
	}{
		{"card token as a card", "alice", vault.Field{Kind: format.PAN, Value: pan}},
		{"card token spaced out", "alice", vault.Field{Kind: format.PAN, Value: spaced}},
		{"card token with surrounding space", "alice", vault.Field{Kind: format.PAN, Value: " " + pan + "\n"}},
		{"card token of another subject", "bob", vault.Field{Kind: format.PAN, Value: pan}},
		{"SSN token as a bank account (normalized, it is no token)", "alice", vault.Field{Kind: format.BankAccount, Value: ssn}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Tokenize(ctx, tc.subject, []vault.Field{ordinary, tc.field})
			var fe *vault.FieldError
			if !errors.As(err, &fe) || fe.Field != "fields[1].value" || !errors.Is(err, vault.ErrFailedPrecondition) {
				t.Fatalf("Tokenize = %v, want FailedPrecondition on fields[1].value", err)
			}
		})
	}
	if n := v.Stats().TokensCreated; n != before {
		t.Fatalf("%d tokens created by refused calls", n-before)
	}
	short := tokenize("dave", vault.Field{Kind: format.PAN, Value: "4111111111111111", TTL: time.Hour})
	gone := tokenize("erin", vault.Field{Kind: format.PAN, Value: "4111111111111111"})
	if _, _, err := v.EraseSubject(ctx, "erin"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Hour)
	for _, tok := range []string{short[0], gone[0]} {
		tokenize("alice", ordinary, vault.Field{Kind: format.PAN, Value: tok})
	}
}
