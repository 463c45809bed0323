package vault_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

// TestSubjectTokens: pages cover every unexpired token once, without
// values; expired tokens are skipped even across pages.
func TestSubjectTokens(t *testing.T) {
	ctx := context.Background()
	f, c := newRightsFixture(t, vault.RightsOptions{})
	var fields []vault.Field
	for i := range 23 {
		fl := vault.Field{Kind: format.Email, Value: fmt.Sprintf("u%02d@example.com", i), Deterministic: i == 0}
		if i%3 == 1 {
			fl.TTL = time.Hour // these expire below
		}
		fields = append(fields, fl)
	}
	toks := f.tokenize(t, "alice", fields...)
	f.tokenize(t, "bob", vault.Field{Kind: format.Name, Value: "Bob"})
	c.add(time.Hour)
	var want []string
	for i, tk := range toks {
		if i%3 != 1 {
			want = append(want, tk)
		}
	}
	slices.Sort(want)

	var got []string
	after, pages := "", 0
	for {
		info, page, more, err := f.v.SubjectTokens(ctx, "alice", after, 5)
		if err != nil {
			t.Fatal(err)
		}
		if info.KeyCreated.IsZero() || !info.Restricted.IsZero() {
			t.Fatalf("info %+v", info)
		}
		pages++
		for _, ti := range page {
			got = append(got, ti.Token)
			if ti.Kind != format.Email || ti.Created.IsZero() || ti.Deterministic != (ti.Token == toks[0]) {
				t.Fatalf("token info %+v", ti)
			}
		}
		if !more {
			break
		}
		if len(page) != 5 {
			t.Fatalf("a page with more after it has %d tokens", len(page))
		}
		after = page[len(page)-1].Cursor
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("listed %d tokens, want the %d unexpired ones once each", len(got), len(want))
	}
	if pages != 3 { // 15 tokens, 5 a page: the third says no more
		t.Fatalf("%d pages", pages)
	}

	for _, tc := range []struct {
		subject string
		limit   int
		want    error
	}{
		{"nobody", 5, vault.ErrNotFound},
		{"", 5, vault.ErrInvalidArgument},
		{"alice", 0, vault.ErrInvalidArgument},
		{"alice", vault.MaxTokenPage + 1, vault.ErrInvalidArgument},
	} {
		if _, _, _, err := f.v.SubjectTokens(ctx, tc.subject, "", tc.limit); !errors.Is(err, tc.want) {
			t.Errorf("SubjectTokens(%q, limit %d): %v, want %v", tc.subject, tc.limit, err, tc.want)
		}
	}
}

// TestErasedAt: the ledger answers for the erased subject, with its
// erasure time, and for no one else.
func TestErasedAt(t *testing.T) {
	ctx := context.Background()
	lk, err := aead.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	f, c := newRightsFixture(t, vault.RightsOptions{LedgerKey: lk})
	// Several erasures, so that the lookup has neighbours on both sides.
	subjects := []string{"alice", "bob", "carol", "dave", "erin"}
	erased := map[string]time.Time{}
	for _, s := range subjects {
		f.tokenize(t, s, vault.Field{Kind: format.Name, Value: s})
		c.add(time.Minute)
		r, _, err := f.v.EraseSubject(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		erased[s] = r.ErasedAt
	}
	for _, s := range subjects {
		at, err := f.v.ErasedAt(ctx, s)
		if err != nil || !at.Equal(erased[s]) {
			t.Errorf("ErasedAt(%s) = %v, %v; want %v", s, at, err, erased[s])
		}
	}
	f.tokenize(t, "frank", vault.Field{Kind: format.Name, Value: "Frank"})
	for _, s := range []string{"frank", "nobody"} {
		if at, err := f.v.ErasedAt(ctx, s); err != nil || !at.IsZero() {
			t.Errorf("ErasedAt(%s) = %v, %v; want zero", s, at, err)
		}
	}
	// Without a ledger key, nothing is known.
	g, _ := newRightsFixture(t, vault.RightsOptions{})
	if at, err := g.v.ErasedAt(ctx, "alice"); err != nil || !at.IsZero() {
		t.Errorf("no ledger: %v, %v", at, err)
	}
}

// TestSubjectTokensKindFilter: a listing made under a kind filter (a
// mask permission limited to some kinds) leaves the other kinds out, as
// Mask refuses them.
func TestSubjectTokensKindFilter(t *testing.T) {
	f, _ := newRightsFixture(t, vault.RightsOptions{})
	f.tokenize(t, "alice", vault.Field{Kind: format.Email, Value: "a@example.com"},
		vault.Field{Kind: format.PAN, Value: "4111111111111111"}, vault.Field{Kind: format.Email, Value: "b@example.com"})
	ctx := vault.WithKindFilter(context.Background(), func(k format.Kind) bool { return k == format.Email })
	_, toks, more, err := f.v.SubjectTokens(ctx, "alice", "", 10)
	if err != nil || more {
		t.Fatal(err, more)
	}
	if len(toks) != 2 {
		t.Fatalf("%d tokens listed under an email-only filter, want the 2 emails", len(toks))
	}
	for _, tk := range toks {
		if tk.Kind != format.Email {
			t.Fatalf("a %v token was listed under an email-only filter", tk.Kind)
		}
	}
}
