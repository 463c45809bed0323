package vault_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
	"github.com/tokenvault/tokenvault/vault/receipt"
)

// clock is a settable clock: expiry is tested without sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newRightsFixture(t *testing.T, opts vault.RightsOptions) (*fixture, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	return newFixtureWith(t, vault.Options{Now: c.now, Rights: opts}), c
}

func TestExpiry(t *testing.T) {
	ctx := context.Background()
	f, c := newRightsFixture(t, vault.RightsOptions{DefaultTTL: map[format.Kind]time.Duration{format.Email: 48 * time.Hour}})
	toks := f.tokenize(t, "alice",
		vault.Field{Kind: format.PAN, Value: "4111111111111111", TTL: time.Hour},
		vault.Field{Kind: format.Email, Value: "a@example.com", Deterministic: true}, // kind default: 48h
		vault.Field{Kind: format.Name, Value: "Alice"})                               // no expiry
	if _, err := f.v.Tokenize(ctx, "alice", []vault.Field{{Kind: format.Name, Value: "x", TTL: -time.Second}}); !errors.Is(err, vault.ErrInvalidArgument) {
		t.Fatalf("negative ttl: %v", err)
	}
	reveal := func() []vault.Revealed {
		res, err := f.v.Detokenize(ctx, toks, "test")
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, r := range reveal() {
		if r.Err != nil {
			t.Fatalf("before expiry: %v", r.Err)
		}
	}
	c.add(time.Hour)
	res := reveal()
	if !errors.Is(res[0].Err, vault.ErrExpired) || !errors.Is(res[0].Err, vault.ErrNotFound) || res[1].Err != nil || res[2].Err != nil {
		t.Fatalf("after 1h: %v / %v / %v", res[0].Err, res[1].Err, res[2].Err)
	}
	if m, _ := f.v.Mask(ctx, toks[:1]); !errors.Is(m[0].Err, vault.ErrExpired) {
		t.Fatalf("mask of an expired token: %v", m[0].Err)
	}
	c.add(47 * time.Hour)
	// The expired deterministic token is replaced by a fresh one.
	again := f.tokenize(t, "alice", vault.Field{Kind: format.Email, Value: "a@example.com", Deterministic: true})
	if again[0] == toks[1] {
		t.Fatal("deterministic tokenize returned an expired token")
	}
	n, err := f.v.PurgeExpired(ctx)
	if err != nil || n != 1 { // the pan; the old email token was deleted by the tokenize
		t.Fatalf("PurgeExpired = %d, %v", n, err)
	}
	for _, tok := range toks[:2] {
		if _, err := f.store.Record(ctx, tok); !errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("expired record survived the purge: %v", err)
		}
	}
	res = reveal()
	if !errors.Is(res[0].Err, vault.ErrNotFound) || res[2].Err != nil {
		t.Fatalf("after purge: %v / %v", res[0].Err, res[2].Err)
	}
	var exported []vault.ExportedRecord
	if err := f.v.ExportSubject(ctx, "alice", func(_ vault.ExportHeader, recs []vault.ExportedRecord) error {
		exported = append(exported, recs...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(exported) != 2 {
		t.Fatalf("export lists %d records, want the name and the new email", len(exported))
	}
}

func TestRectify(t *testing.T) {
	ctx := context.Background()
	f, _ := newRightsFixture(t, vault.RightsOptions{})
	toks := f.tokenize(t, "alice",
		vault.Field{Kind: format.Email, Value: "old@example.com", Deterministic: true},
		vault.Field{Kind: format.Email, Value: "taken@example.com", Deterministic: true},
		vault.Field{Kind: format.Name, Value: "Alcie"})
	r, err := f.v.Rectify(ctx, toks[0], "new@example.com")
	if err != nil || !r.Deterministic {
		t.Fatalf("Rectify = %+v, %v", r, err)
	}
	det := func(v string) string {
		return f.tokenize(t, "alice", vault.Field{Kind: format.Email, Value: v, Deterministic: true})[0]
	}
	if det("new@example.com") != toks[0] {
		t.Fatal("deterministic lookup does not follow the new value")
	}
	if det("old@example.com") == toks[0] {
		t.Fatal("the old value still maps to the rectified token")
	}
	// Onto a value another deterministic token holds: that token keeps the lookup.
	if r, err := f.v.Rectify(ctx, toks[0], "taken@example.com"); err != nil || r.Deterministic {
		t.Fatalf("Rectify onto a taken value = %+v, %v", r, err)
	}
	if det("taken@example.com") != toks[1] {
		t.Fatal("the other token lost its lookup")
	}
	if _, err := f.v.Rectify(ctx, toks[2], "Alice"); err != nil {
		t.Fatal(err)
	}
	res, _ := f.v.Detokenize(ctx, toks, "test")
	for i, want := range []string{"taken@example.com", "taken@example.com", "Alice"} {
		if res[i].Err != nil || res[i].Value != want {
			t.Fatalf("token %d = %q, %v; want %q", i, res[i].Value, res[i].Err, want)
		}
	}
	// A card keeps its first 6 and last 4 digits: a correction within the
	// middle is a rectification, another card is not.
	card := f.tokenize(t, "alice", vault.Field{Kind: format.PAN, Value: "5555555555554444"})[0]
	if _, err := f.v.Rectify(ctx, card, "5555 5512 3455 4444"); err != nil {
		t.Fatalf("Rectify within the middle digits: %v", err)
	}
	bob := f.tokenize(t, "bob", vault.Field{Kind: format.Generic, Value: "bob-value-1234"})[0]
	alices := f.tokenize(t, "alice", vault.Field{Kind: format.Generic, Value: "alice-secret-9911"})[0]
	for name, tc := range map[string]struct {
		token, value, field string
		want                error
		says                string
	}{
		"not a token":   {"", "x", "token", vault.ErrInvalidArgument, "not a token"},
		"unknown token": {"zzzzzzzz", "x", "token", vault.ErrNotFound, "unknown token"},
		"bad value":     {toks[0], "not an email", "value", vault.ErrInvalidArgument, "email"},
		// A token standing for a token would outlive its subject's erasure.
		"another subject's token": {bob, alices, "value", vault.ErrFailedPrecondition, "is a token of this vault"},
		"its own token":           {bob, bob, "value", vault.ErrFailedPrecondition, "is a token of this vault"},
		"a token, padded":         {bob, " " + alices + "\n", "value", vault.ErrFailedPrecondition, "is a token of this vault"},
		"another card's BIN":      {card, "4111111111114444", "value", vault.ErrFailedPrecondition, "the first 6 and last 4 digits"},
		"another card's last 4":   {card, "5555555555551111", "value", vault.ErrFailedPrecondition, "the first 6 and last 4 digits"},
		"another domain":          {toks[1], "taken@example.org", "value", vault.ErrFailedPrecondition, "email tokens keep the domain"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := f.v.Rectify(ctx, tc.token, tc.value)
			var fe *vault.FieldError
			if !errors.Is(err, tc.want) || !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Rectify = %v, want %v naming %s and saying %q", err, tc.want, tc.field, tc.says)
			}
			if strings.Contains(err.Error(), tc.value) && tc.value != "x" || strings.Contains(err.Error(), "5555") {
				t.Fatalf("the error shows the value: %v", err)
			}
		})
	}
	// Nothing changed behind the refused rectifications.
	res, _ = f.v.Detokenize(ctx, []string{card, bob, toks[1]}, "test")
	for i, want := range []string{"5555551234554444", "bob-value-1234", "taken@example.com"} {
		if res[i].Err != nil || res[i].Value != want {
			t.Fatalf("after the refusals, token %d = %q, %v; want %q", i, res[i].Value, res[i].Err, want)
		}
	}
}

func TestRestriction(t *testing.T) {
	ctx := context.Background()
	f, _ := newRightsFixture(t, vault.RightsOptions{})
	toks := f.tokenize(t, "alice", vault.Field{Kind: format.PAN, Value: "4111111111111111"})
	blobs, err := f.v.Encrypt(ctx, "alice", []vault.EncryptItem{{Plaintext: []byte("1 Main St"), Context: "addr"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.RestrictSubject(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	res, _ := f.v.Detokenize(ctx, toks, "test")
	if !errors.Is(res[0].Err, vault.ErrRestricted) || !errors.Is(res[0].Err, vault.ErrFailedPrecondition) {
		t.Fatalf("detokenize while restricted: %v", res[0].Err)
	}
	dec, _ := f.v.Decrypt(ctx, []vault.DecryptItem{{Blob: blobs[0], Context: "addr"}}, "test")
	if !errors.Is(dec[0].Err, vault.ErrRestricted) {
		t.Fatalf("decrypt while restricted: %v", dec[0].Err)
	}
	if m, _ := f.v.Mask(ctx, toks); m[0].Err != nil || m[0].Value != "411111******1111" {
		t.Fatalf("mask while restricted: %q %v", m[0].Value, m[0].Err)
	}
	f.tokenize(t, "alice", vault.Field{Kind: format.Name, Value: "Alice"}) // storing stays allowed
	if err := f.v.UnrestrictSubject(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if res, _ := f.v.Detokenize(ctx, toks, "test"); res[0].Err != nil {
		t.Fatalf("after unrestrict: %v", res[0].Err)
	}
	if _, err := f.v.RestrictSubject(ctx, "nobody"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("restrict unknown subject: %v", err)
	}
}

func TestSignedReceiptAndLedger(t *testing.T) {
	ctx := context.Background()
	lk, _ := aead.NewKey()
	_, priv, _ := ed25519.GenerateKey(nil)
	f, c := newRightsFixture(t, vault.RightsOptions{LedgerKey: lk, ReceiptKey: priv, BackupHorizon: 60 * 24 * time.Hour})
	f.tokenize(t, "alice", vault.Field{Kind: format.PAN, Value: "4111111111111111"})
	r, signed, err := f.v.EraseSubject(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	p, err := receipt.Parse(signed)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Verify(f.v.ReceiptPublicKey()); err != nil {
		t.Fatal(err)
	}
	if p.Subject != "alice" || p.Records != 1 || !p.ErasedAt.Equal(c.now()) || !p.BackupsUndecryptableBy.Equal(c.now().Add(60*24*time.Hour)) {
		t.Fatalf("receipt = %+v", p)
	}
	// The receipt returned is the one signed: it verifies as it is, and
	// the signed file is its encoding.
	if err := r.Verify(f.v.ReceiptPublicKey()); err != nil {
		t.Fatalf("returned receipt: %v", err)
	}
	if !bytes.Equal(r.Marshal(), signed) {
		t.Fatal("the signed receipt file is not the returned receipt's encoding")
	}
	var entries []vault.LedgerEntry
	if err := f.v.ScanLedger(ctx, func(page []vault.LedgerEntry) error { entries = append(entries, page...); return nil }); err != nil {
		t.Fatal(err)
	}
	want, _ := vault.LedgerHash(lk, "alice")
	if len(entries) != 1 || string(entries[0].Hash) != string(want) || !entries[0].ErasedAt.Equal(c.now()) {
		t.Fatalf("ledger = %+v", entries)
	}
}

// TestExportManyPages: an export of more records than one page of the
// store's listing (scanPage) resumes from each page's cursor and gives
// every record once.
func TestExportManyPages(t *testing.T) {
	ctx := context.Background()
	f, _ := newRightsFixture(t, vault.RightsOptions{})
	want := map[string]bool{}
	for call := range 5 {
		var fields []vault.Field
		for i := range 90 {
			fields = append(fields, vault.Field{Kind: format.Email, Value: fmt.Sprintf("u%d-%d@example.com", call, i)})
		}
		for _, tok := range f.tokenize(t, "alice", fields...) {
			want[tok] = true
		}
	}
	got := map[string]bool{}
	if err := f.v.ExportSubject(ctx, "alice", func(_ vault.ExportHeader, recs []vault.ExportedRecord) error {
		for _, r := range recs {
			if got[r.Token] || !want[r.Token] {
				t.Errorf("export gives %q: twice %v, unknown %v", r.Token, got[r.Token], !want[r.Token])
			}
			got[r.Token] = true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("export gives %d records, want %d", len(got), len(want))
	}
}
