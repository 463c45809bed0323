package vault_test

import (
	"context"
	"errors"
	"testing"

	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

func marketingOnly(p string) bool { return p == "marketing" }

func TestConsentPerPurpose(t *testing.T) {
	ctx := context.Background()
	f := newFixtureWith(t, vault.Options{ConsentRequired: marketingOnly})
	toks := f.tokenize(t, "alice", vault.Field{Kind: format.Email, Value: "a@example.com"})
	blobs, err := f.v.Encrypt(ctx, "alice", []vault.EncryptItem{{Plaintext: []byte("addr"), Context: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	check := func(purpose string, want error) {
		t.Helper()
		res, err := f.v.Detokenize(ctx, toks, purpose)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := f.v.Decrypt(ctx, []vault.DecryptItem{{Blob: blobs[0], Context: "c"}}, purpose)
		if err != nil {
			t.Fatal(err)
		}
		for _, got := range []error{res[0].Err, dec[0].Err} {
			if want == nil && got != nil || want != nil && !errors.Is(got, want) {
				t.Fatalf("%s: %v, want %v", purpose, got, want)
			}
		}
	}
	check("marketing", vault.ErrNoConsent)
	check(" marketing ", vault.ErrNoConsent) // trimmed like every purpose
	check("payment", nil)
	if _, err := f.v.GrantConsent(ctx, "alice", "marketing", "signup-form"); err != nil {
		t.Fatal(err)
	}
	check("marketing", nil)
	if _, err := f.v.WithdrawConsent(ctx, "alice", "marketing", "email-unsubscribe"); err != nil {
		t.Fatal(err)
	}
	check("marketing", vault.ErrNoConsent)
	check("payment", nil)
	res, _ := f.v.Detokenize(ctx, toks, "marketing")
	var fe *vault.FieldError
	if !errors.As(res[0].Err, &fe) || fe.Field != "tokens[0]" || !errors.Is(res[0].Err, vault.ErrFailedPrecondition) {
		t.Fatalf("refusal %v: want a FailedPrecondition naming the item", res[0].Err)
	}
	if m, _ := f.v.Mask(ctx, toks); m[0].Err != nil {
		t.Fatalf("mask without consent: %v", m[0].Err)
	}
	var hist []vault.ConsentRecord
	if err := f.v.ExportSubject(ctx, "alice", func(h vault.ExportHeader, _ []vault.ExportedRecord) error {
		hist = h.Consent
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 || !hist[0].Granted || hist[0].Source != "signup-form" || hist[1].Granted || hist[1].Purpose != "marketing" || hist[1].At.IsZero() {
		t.Fatalf("exported history %+v", hist)
	}
}

func TestConsentRequests(t *testing.T) {
	ctx := context.Background()
	f := newFixtureWith(t, vault.Options{ConsentRequired: marketingOnly})
	for _, tc := range []struct {
		subject, purpose, source, field string
	}{
		{"alice", "payment", "form", "purpose"}, // not consent-based
		{"alice", " ", "form", "purpose"},
		{"alice", "marketing", "", "source"},
		{"alice", "marketing", "a\x00b", "source"},
		{" alice", "marketing", "form", "subject_id"},
	} {
		_, err := f.v.GrantConsent(ctx, tc.subject, tc.purpose, tc.source)
		var fe *vault.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !errors.Is(err, vault.ErrInvalidArgument) {
			t.Errorf("GrantConsent(%q, %q, %q) = %v, want InvalidArgument naming %s", tc.subject, tc.purpose, tc.source, err, tc.field)
		}
	}
}

// TestConsentAcrossServers: a withdrawal through one vault holds at once
// in another over the same store, even with the subject's keys warm in
// its cache (the check reads the store).
func TestConsentAcrossServers(t *testing.T) {
	ctx := context.Background()
	f := newFixtureWith(t, vault.Options{ConsentRequired: marketingOnly})
	other, err := vault.New(ctx, sharedStore{f.store}, f.kek, vault.Options{ConsentRequired: marketingOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	toks := f.tokenize(t, "alice", vault.Field{Kind: format.Name, Value: "Alice"})
	if _, err := f.v.GrantConsent(ctx, "alice", "marketing", "form"); err != nil {
		t.Fatal(err)
	}
	for _, v := range []*vault.Vault{f.v, other} {
		if res, _ := v.Detokenize(ctx, toks, "marketing"); res[0].Err != nil {
			t.Fatalf("with consent: %v", res[0].Err)
		}
	}
	if _, err := other.WithdrawConsent(ctx, "alice", "marketing", "call"); err != nil {
		t.Fatal(err)
	}
	if res, _ := f.v.Detokenize(ctx, toks, "marketing"); !errors.Is(res[0].Err, vault.ErrNoConsent) {
		t.Fatalf("after a withdrawal on the other server: %v", res[0].Err)
	}
}

// TestConsentErasedWithTheSubject: after an erasure, the subject starts
// over without consent and with an empty history.
func TestConsentErasedWithTheSubject(t *testing.T) {
	ctx := context.Background()
	f := newFixtureWith(t, vault.Options{ConsentRequired: marketingOnly})
	if _, err := f.v.GrantConsent(ctx, "alice", "marketing", "form"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.v.EraseSubject(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	toks := f.tokenize(t, "alice", vault.Field{Kind: format.Name, Value: "Alice"})
	if res, _ := f.v.Detokenize(ctx, toks, "marketing"); !errors.Is(res[0].Err, vault.ErrNoConsent) {
		t.Fatalf("consent outlived the erasure: %v", res[0].Err)
	}
	f.v.ExportSubject(ctx, "alice", func(h vault.ExportHeader, _ []vault.ExportedRecord) error {
		if len(h.Consent) != 0 {
			t.Fatalf("history outlived the erasure: %+v", h.Consent)
		}
		return nil
	})
}

// TestConsentVolatile: a card security code is a reveal like any other:
// for a consent-based purpose without consent it is refused, and the
// refusal does not use its reveal up.
func TestConsentVolatile(t *testing.T) {
	ctx := context.Background()
	f := newFixtureWith(t, vault.Options{ConsentRequired: marketingOnly})
	toks := f.tokenize(t, "alice", vault.Field{Kind: format.CardSecurityCode, Value: "737"})
	res, err := f.v.Detokenize(ctx, toks, "marketing")
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res[0].Err, vault.ErrNoConsent) || res[0].Value != "" {
		t.Fatalf("code for marketing without consent: %q, %v; want ErrNoConsent", res[0].Value, res[0].Err)
	}
	if res, _ = f.v.Detokenize(ctx, toks, "payment"); res[0].Err != nil || res[0].Value != "737" {
		t.Fatalf("code for payment after the refusal: %q, %v; want it revealed (the refusal used nothing up)", res[0].Value, res[0].Err)
	}
}
