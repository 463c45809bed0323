package vault_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

// TestTokenizeBatch: a call answers every field in order: random fields
// get new tokens, a deterministic field repeated in the call gets one
// token, a deterministic value tokenized before gets its existing token,
// and everything reveals to its normalized value.
func TestTokenizeBatch(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	before := f.tokenize(t, "alice", vault.Field{Kind: format.Email, Value: "ada@example.com", Deterministic: true})
	fields := []vault.Field{
		{Kind: format.Name, Value: "Ada Lovelace"},
		{Kind: format.Email, Value: "ada@EXAMPLE.com", Deterministic: true}, // tokenized before (domains are case-insensitive)
		{Kind: format.PAN, Value: "4111 1111 1111 1111", Deterministic: true},
		{Kind: format.Name, Value: "Ada Lovelace"},                            // random: a token of its own
		{Kind: format.PAN, Value: "4111-1111-1111-1111", Deterministic: true}, // repeats field 2
		{Kind: format.Phone, Value: "+14155550100"},
	}
	want := []string{"Ada Lovelace", "ada@example.com", "4111111111111111", "Ada Lovelace", "4111111111111111", "+14155550100"}
	toks := f.tokenize(t, "alice", fields...)
	if len(toks) != len(fields) {
		t.Fatalf("%d tokens for %d fields", len(toks), len(fields))
	}
	if toks[1] != before[0] {
		t.Fatal("a deterministic value tokenized before got a new token")
	}
	if toks[2] != toks[4] {
		t.Fatal("a deterministic value repeated in one call got two tokens")
	}
	if toks[0] == toks[3] {
		t.Fatal("two random tokens of one value are the same")
	}
	st := f.v.Stats()
	if st.TokensCreated != 5 { // the earlier email, then 4 new: name, pan, name, phone
		t.Fatalf("TokensCreated = %d, want 5", st.TokensCreated)
	}
	res, err := f.v.Detokenize(ctx, toks, "test")
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		// Detokenize reveals the normalized value.
		if r.Err != nil || r.Value != want[i] {
			t.Fatalf("field %d reveals %q, %v; want %q", i, r.Value, r.Err, want[i])
		}
	}
}

// TestConcurrentDeterministicTokenize: calls racing to tokenize the same
// value deterministically (the losers' writes collide on the lookup key)
// all get the one token that was stored, next to their random fields.
func TestConcurrentDeterministicTokenize(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.tokenize(t, "carol", vault.Field{Kind: format.Name, Value: "Carol"}) // the key exists: the calls race on the value only
	const callers = 16
	got := make([][]string, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			toks, err := f.v.Tokenize(ctx, "carol", []vault.Field{
				{Kind: format.Name, Value: "Carol Danvers"},
				{Kind: format.Email, Value: "carol@example.com", Deterministic: true},
			})
			if err != nil {
				t.Error(err)
			}
			got[i] = toks
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	stored, err := f.v.Tokenize(ctx, "carol", []vault.Field{{Kind: format.Email, Value: "carol@example.com", Deterministic: true}})
	if err != nil {
		t.Fatal(err)
	}
	randoms := map[string]bool{}
	for i, toks := range got {
		if toks[1] != stored[0] {
			t.Fatalf("caller %d got deterministic token %q, the store holds %q", i, toks[1], stored[0])
		}
		if randoms[toks[0]] {
			t.Fatalf("caller %d got a random token another caller got", i)
		}
		randoms[toks[0]] = true
	}
	if res, _ := f.v.Detokenize(ctx, []string{stored[0]}, "test"); res[0].Err != nil || res[0].Value != "carol@example.com" {
		t.Fatalf("the deterministic token reveals %+v", res[0])
	}
}

// TestTokenSpaceExhaustedMessage: the error for a used-up token space
// says which values share it, in the kind's terms, and never the value.
// A 6-digit bank account has 99 tokens, shared by every 6-digit account
// with the same last 4 digits.
func TestTokenSpaceExhaustedMessage(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	const value = "123456"
	fields := make([]vault.Field, 100)
	for i := range fields {
		fields[i] = vault.Field{Kind: format.BankAccount, Value: value}
	}
	_, err := f.v.Tokenize(ctx, "dave", fields)
	var fe *vault.FieldError
	if !errors.Is(err, vault.ErrExhausted) || !errors.As(err, &fe) {
		t.Fatalf("100 tokens of a 6-digit account: %v, want ErrExhausted", err)
	}
	if !strings.HasPrefix(fe.Field, "fields[") || !strings.HasSuffix(fe.Field, "].value") {
		t.Fatalf("the error names field %q", fe.Field)
	}
	msg := err.Error()
	for _, want := range []string{"no free token", "account number of the same length with the same last 4 digits", "across kinds and subjects"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not say %q", msg, want)
		}
	}
	for _, leak := range []string{value, "3456", "card"} {
		if strings.Contains(msg, leak) {
			t.Errorf("message %q contains %q", msg, leak)
		}
	}
	// All or nothing: the failed call stored no token.
	if st := f.v.Stats(); st.TokensCreated != 0 {
		t.Fatalf("a failed call created %d tokens", st.TokensCreated)
	}
}
