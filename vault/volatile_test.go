package vault_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

func code(t testing.TB, f *fixture, subject, value string, extra ...vault.Field) string {
	t.Helper()
	toks := f.tokenize(t, subject, append([]vault.Field{{Kind: format.CardSecurityCode, Value: value}}, extra...)...)
	if !format.IsVolatileToken(toks[0]) {
		t.Fatalf("security code token %q is not volatile", toks[0])
	}
	return toks[0]
}

func reveal(t testing.TB, f *fixture, tok string) vault.Revealed {
	t.Helper()
	res, err := f.v.Detokenize(context.Background(), []string{tok}, "checkout")
	if err != nil {
		t.Fatal(err)
	}
	return res[0]
}

func TestVolatileBurnedOnFirstReveal(t *testing.T) {
	f := newFixture(t)
	tok := code(t, f, "alice", "737")
	if h, _ := format.VolatileHolder(tok); h != f.v.HolderID() {
		t.Fatalf("token holder %q, vault %q", h, f.v.HolderID())
	}
	m, err := f.v.Mask(context.Background(), []string{tok})
	if err != nil || m[0].Err != nil || m[0].Value != format.SecurityCodeMask {
		t.Fatalf("Mask = %+v, %v", m, err)
	}
	if r := reveal(t, f, tok); r.Err != nil || r.Value != "737" || r.Kind != format.CardSecurityCode {
		t.Fatalf("first reveal = %+v", r)
	}
	if r := reveal(t, f, tok); !errors.Is(r.Err, vault.ErrNotFound) {
		t.Fatalf("second reveal = %+v, want NotFound", r)
	}
	st := f.v.Stats().Volatile
	if st.Live != 0 || st.Created != 1 || st.Revealed != 1 || st.Burned != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestVolatileReveals(t *testing.T) {
	f := newFixtureWith(t, vault.Options{Volatile: vault.VolatileOptions{Reveals: 2}})
	perField := f.tokenize(t, "alice", vault.Field{Kind: format.CardSecurityCode, Value: "1234", Reveals: 3})[0]
	byConfig := code(t, f, "alice", "4321")
	for i := range 3 {
		if r := reveal(t, f, perField); r.Err != nil || r.Value != "1234" {
			t.Fatalf("reveal %d = %+v", i, r)
		}
	}
	if r := reveal(t, f, perField); !errors.Is(r.Err, vault.ErrNotFound) {
		t.Fatalf("fourth reveal = %+v", r)
	}
	for range 2 {
		if r := reveal(t, f, byConfig); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if r := reveal(t, f, byConfig); !errors.Is(r.Err, vault.ErrNotFound) {
		t.Fatalf("third reveal = %+v", r)
	}
}

func TestVolatileTTL(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	f := newFixtureWith(t, vault.Options{Now: c.now, Volatile: vault.VolatileOptions{TTL: 10 * time.Minute}})
	short := f.tokenize(t, "alice", vault.Field{Kind: format.CardSecurityCode, Value: "111", TTL: time.Minute})[0]
	def := code(t, f, "alice", "222")
	c.add(time.Minute - time.Nanosecond)
	if m, _ := f.v.Mask(context.Background(), []string{short}); m[0].Err != nil {
		t.Fatalf("before its TTL: %v", m[0].Err)
	}
	c.add(time.Nanosecond)
	if r := reveal(t, f, short); !errors.Is(r.Err, vault.ErrNotFound) {
		t.Fatalf("after its TTL: %+v", r)
	}
	c.add(9*time.Minute - time.Nanosecond)
	if st := f.v.Stats().Volatile; st.Live != 1 || st.Expired != 1 {
		t.Fatalf("stats %+v", st)
	}
	c.add(time.Nanosecond)
	if st := f.v.Stats().Volatile; st.Live != 0 || st.Expired != 2 {
		t.Fatalf("stats %+v", st)
	}
	if r := reveal(t, f, def); !errors.Is(r.Err, vault.ErrNotFound) {
		t.Fatalf("after the default TTL: %+v", r)
	}
}

func TestVolatileFieldChecks(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		f     vault.Field
		field string
	}{
		{vault.Field{Kind: format.CardSecurityCode, Value: "12"}, "fields[0].value"},
		{vault.Field{Kind: format.CardSecurityCode, Value: "123", Deterministic: true}, "fields[0].options.mode"},
		{vault.Field{Kind: format.CardSecurityCode, Value: "123", ChecksumValid: true}, "fields[0].options.checksum_valid"},
		{vault.Field{Kind: format.CardSecurityCode, Value: "123", TTL: 25 * time.Hour}, "fields[0].options.ttl"},
		{vault.Field{Kind: format.CardSecurityCode, Value: "123", Reveals: vault.MaxVolatileReveals + 1}, "fields[0].reveals"},
		{vault.Field{Kind: format.PAN, Value: "4111111111111111", Reveals: 2}, "fields[0].reveals"},
	} {
		_, err := f.v.Tokenize(context.Background(), "alice", []vault.Field{c.f})
		var fe *vault.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field || !errors.Is(err, vault.ErrInvalidArgument) {
			t.Errorf("%+v: %v, want invalid %s", c.f, err, c.field)
		}
	}
	if st := f.v.Stats().Volatile; st.Created != 0 {
		t.Fatalf("refused fields made tokens: %+v", st)
	}
}

// TestVolatileConcurrentReveals: of many concurrent reveals of one token,
// exactly one gets the code (run with -race).
func TestVolatileConcurrentReveals(t *testing.T) {
	f := newFixture(t)
	for round := range 5 {
		tok := code(t, f, "alice", fmt.Sprintf("%03d", round))
		var wins, gone atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				res, err := f.v.Detokenize(context.Background(), []string{tok}, "checkout")
				switch {
				case err != nil:
					t.Error(err)
				case res[0].Err == nil:
					wins.Add(1)
				case errors.Is(res[0].Err, vault.ErrNotFound):
					gone.Add(1)
				default:
					t.Error(res[0].Err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if wins.Load() != 1 || gone.Load() != 15 {
			t.Fatalf("round %d: %d reveals won, %d not found", round, wins.Load(), gone.Load())
		}
	}
}

func TestVolatileEraseDrops(t *testing.T) {
	f := newFixture(t)
	a := code(t, f, "alice", "737", vault.Field{Kind: format.PAN, Value: "4111111111111111"})
	b := code(t, f, "bob", "848")
	if _, _, err := f.v.EraseSubject(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	if st := f.v.Stats().Volatile; st.Live != 1 || st.Erased != 1 {
		t.Fatalf("stats after erasure %+v", st)
	}
	if r := reveal(t, f, a); !errors.Is(r.Err, vault.ErrNotFound) {
		t.Fatalf("erased subject's code: %+v", r)
	}
	if r := reveal(t, f, b); r.Err != nil || r.Value != "848" {
		t.Fatalf("other subject's code: %+v", r)
	}
}

// TestVolatileEraseElsewhere: a subject erased through another process
// sharing the store (here: the store directly, behind the vault's back)
// stops the reveal at once, though this process never saw the erasure.
func TestVolatileEraseElsewhere(t *testing.T) {
	f := newFixture(t) // an exclusive store: the key cache would answer
	tok := code(t, f, "alice", "737")
	if _, err := f.store.ShredSubject(context.Background(), "alice", vault.LedgerEntry{}); err != nil {
		t.Fatal(err)
	}
	if r := reveal(t, f, tok); !errors.Is(r.Err, vault.ErrErased) {
		t.Fatalf("reveal after an erasure elsewhere = %+v, want ErrErased", r)
	}
	if r := reveal(t, f, tok); !errors.Is(r.Err, vault.ErrNotFound) {
		t.Fatalf("second reveal = %+v, want NotFound (dropped)", r)
	}
}

func TestVolatileRestrictedNotConsumed(t *testing.T) {
	f := newFixture(t)
	tok := code(t, f, "alice", "737")
	ctx := context.Background()
	if _, err := f.v.RestrictSubject(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if r := reveal(t, f, tok); !errors.Is(r.Err, vault.ErrRestricted) {
		t.Fatalf("restricted reveal = %+v", r)
	}
	if err := f.v.UnrestrictSubject(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if r := reveal(t, f, tok); r.Err != nil || r.Value != "737" {
		t.Fatalf("reveal after lifting = %+v", r)
	}
}

func TestVolatileCap(t *testing.T) {
	f := newFixtureWith(t, vault.Options{Volatile: vault.VolatileOptions{MaxTokens: 3}})
	var toks []string
	for i := range 3 {
		toks = append(toks, code(t, f, "alice", fmt.Sprintf("%03d", i)))
	}
	_, err := f.v.Tokenize(context.Background(), "alice", []vault.Field{
		{Kind: format.PAN, Value: "4111111111111111"}, {Kind: format.CardSecurityCode, Value: "999"}})
	var fe *vault.FieldError
	if !errors.Is(err, vault.ErrVolatileFull) || !errors.As(err, &fe) || fe.Field != "fields[1].value" || !strings.Contains(err.Error(), "volatile.max_tokens") {
		t.Fatalf("over the cap: %v", err)
	}
	if st := f.v.Stats(); st.Volatile.Refused != 1 || st.Volatile.Live != 3 || st.TokensCreated != 0 {
		t.Fatalf("the refused call stored something: %+v", st)
	}
	if r := reveal(t, f, toks[0]); r.Err != nil {
		t.Fatal(r.Err)
	}
	code(t, f, "alice", "999") // room again
}

// TestVolatileAllOrNothing: a call whose durable part fails leaves no
// volatile token behind.
func TestVolatileAllOrNothing(t *testing.T) {
	f := newFixture(t)
	_, err := f.v.Tokenize(context.Background(), "alice", []vault.Field{
		{Kind: format.CardSecurityCode, Value: "737"}, {Kind: format.PAN, Value: "41"}})
	if !errors.Is(err, vault.ErrInvalidArgument) {
		t.Fatal(err)
	}
	st := f.v.Stats()
	if st.Volatile.Live != 0 {
		t.Fatalf("stats %+v", st.Volatile)
	}
}

// TestVolatileRestartDrops: a new vault over the same store (a restart)
// holds none of the old one's tokens and says so.
func TestVolatileRestartDrops(t *testing.T) {
	f := newFixture(t)
	tok := code(t, f, "alice", "737")
	f.v.Close()
	v2, err := vault.New(context.Background(), f.store, f.kek, vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	res, err := v2.Detokenize(context.Background(), []string{tok}, "checkout")
	if err != nil || !errors.Is(res[0].Err, vault.ErrVolatileElsewhere) || !errors.Is(res[0].Err, vault.ErrNotFound) {
		t.Fatalf("after restart: %+v, %v", res, err)
	}
	if st := v2.Stats().Volatile; st.Elsewhere != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestVolatileNeverStored: a workload of codes writes no token record
// (the byte searches of the data directory, backups and logs are in
// internal/e2e/volatile_test.go).
func TestVolatileNeverStored(t *testing.T) {
	f := newFixture(t)
	for i := range 50 {
		code(t, f, fmt.Sprintf("s%d", i%10), fmt.Sprintf("%04d", 7000+i))
	}
	n, err := f.store.CountTokens(context.Background())
	if err != nil || n != 0 {
		t.Fatalf("store holds %d token records (%v)", n, err)
	}
	if st := f.v.Stats(); st.TokensCreated != 0 || st.Volatile.Created != 50 {
		t.Fatalf("stats %+v", st)
	}
}

// TestVolatileNotRectified: rectification applies to stored tokens only.
func TestVolatileNotRectified(t *testing.T) {
	f := newFixture(t)
	tok := code(t, f, "alice", "737")
	if _, err := f.v.Rectify(context.Background(), tok, "738"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("Rectify of a volatile token: %v", err)
	}
	if r := reveal(t, f, tok); r.Err != nil || r.Value != "737" {
		t.Fatalf("reveal after the refused rectification: %+v", r)
	}
}

// TestVolatileKindDenied: a caller the policy refuses the kind gets
// PermissionDenied, and the code keeps its reveal.
func TestVolatileKindDenied(t *testing.T) {
	f := newFixture(t)
	tok := code(t, f, "alice", "737")
	deny := vault.WithKindFilter(context.Background(), func(k format.Kind) bool { return k != format.CardSecurityCode })
	res, err := f.v.Detokenize(deny, []string{tok}, "checkout")
	if err != nil || !errors.Is(res[0].Err, vault.ErrPermissionDenied) {
		t.Fatalf("denied reveal: %+v, %v", res, err)
	}
	if r := reveal(t, f, tok); r.Err != nil || r.Value != "737" {
		t.Fatalf("reveal after the denied one: %+v", r)
	}
}

// TestVolatileTokenRefusedAsValue: a held card security code's token is
// a live token of this vault, so Tokenize refuses it as a value, as any
// other live token (refuseTokens), on the batched check too.
func TestVolatileTokenRefusedAsValue(t *testing.T) {
	f := newFixture(t)
	tok := f.tokenize(t, "alice", vault.Field{Kind: format.CardSecurityCode, Value: "737"})[0]
	_, err := f.v.Tokenize(context.Background(), "bob", []vault.Field{{Kind: format.Generic, Value: tok}})
	var fe *vault.FieldError
	if !errors.As(err, &fe) || fe.Field != "fields[0].value" || !errors.Is(err, vault.ErrFailedPrecondition) {
		t.Fatalf("Tokenize of a held security code's token: %v, want FailedPrecondition on fields[0].value", err)
	}
}
