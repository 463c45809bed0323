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

// wantFieldError checks that err is a *vault.FieldError naming field,
// unwrapping to sentinel, whose text holds none of secrets.
func wantFieldError(t *testing.T, err error, field string, sentinel error, secrets ...string) {
	t.Helper()
	var fe *vault.FieldError
	if !errors.As(err, &fe) || fe.Field != field || !errors.Is(err, sentinel) {
		t.Fatalf("err = %v, want a %v naming %s", err, sentinel, field)
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Fatalf("error %q contains %q", err, s)
		}
	}
}

// TestPurposeRule: a purpose is trimmed of white space (and invisible
// formatting characters) at both ends, and what is left must not be
// empty; a purpose of only white space is no reason to reveal anything.
func TestPurposeRule(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	toks := f.tokenize(t, "alice", vault.Field{Kind: format.PAN, Value: "4111111111111111"})
	blobs, err := f.v.Encrypt(ctx, "alice", []vault.EncryptItem{{Plaintext: []byte("note"), Context: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, purpose string
		ok            bool
	}{
		{"empty", "", false},
		{"spaces", "   ", false},
		{"tab", "\t", false},
		{"no-break and ideographic spaces", "\u00a0\u3000", false},
		{"zero-width space", "\u200b", false},
		{"byte order mark and space", "\ufeff ", false},
		{"plain", "support", true},
		{"surrounded by spaces", "  support ", true},
		{"inner space", "fraud review", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := f.v.Detokenize(ctx, toks, tc.purpose)
			dec, derr := f.v.Decrypt(ctx, []vault.DecryptItem{{Blob: blobs[0], Context: "c"}}, tc.purpose)
			if !tc.ok {
				wantFieldError(t, err, "purpose", vault.ErrInvalidArgument, strings.TrimSpace(tc.purpose))
				wantFieldError(t, derr, "purpose", vault.ErrInvalidArgument, strings.TrimSpace(tc.purpose))
				return
			}
			if err != nil || res[0].Err != nil || res[0].Value != "4111111111111111" {
				t.Fatalf("detokenize: %v %+v", err, res)
			}
			if derr != nil || dec[0].Err != nil || string(dec[0].Plaintext) != "note" {
				t.Fatalf("decrypt: %v %+v", derr, dec)
			}
		})
	}
}

// TestPurposeTrimmed: vault.Purpose, which the guard also applies, gives
// the purpose that the policy is asked about and the audit log records.
func TestPurposeTrimmed(t *testing.T) {
	for in, want := range map[string]string{"support": "support", "  support\u200b ": "support", "\u00a0fraud review\u3000": "fraud review"} {
		if got, err := vault.Purpose(in); err != nil || got != want {
			t.Errorf("Purpose(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", " ", "\u200b", "a\x00", strings.Repeat("p", vault.MaxIDBytes+1)} {
		if got, err := vault.Purpose(in); !errors.Is(err, vault.ErrInvalidArgument) || got != "" {
			t.Errorf("Purpose(%q) = %q, %v; want an invalid argument", in, got, err)
		}
	}
}

// blankIDs are subject ids and contexts that are blank or begin or end
// with white space (or an invisible formatting character).
var blankIDs = []struct{ name, id string }{
	{"spaces", "   "},
	{"leading space", " alice"},
	{"trailing space", "alice "},
	{"trailing no-break space", "alice\u00a0"},
	{"leading byte order mark", "\ufeffalice"},
	{"trailing zero-width space", "alice\u200b"},
}

// TestSubjectRule: subject ids are never trimmed (" alice" and "alice"
// would be two subjects, and erasing one would leave the other), so the
// calls that put data under a subject refuse one that is blank or has
// white space at either end.
func TestSubjectRule(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	before := f.v.Stats().TokensCreated
	for _, tc := range append(blankIDs, struct{ name, id string }{"empty", ""}) {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.v.Tokenize(ctx, tc.id, []vault.Field{{Kind: format.PAN, Value: "4111111111111111"}})
			wantFieldError(t, err, "subject_id", vault.ErrInvalidArgument, strings.TrimSpace(tc.id))
			_, err = f.v.Encrypt(ctx, tc.id, []vault.EncryptItem{{Plaintext: []byte("x")}})
			wantFieldError(t, err, "subject_id", vault.ErrInvalidArgument, strings.TrimSpace(tc.id))
		})
	}
	if n := f.v.Stats().TokensCreated; n != before {
		t.Fatalf("%d tokens created by refused calls", n-before)
	}
	if f.v.CachedKeys() != 0 {
		t.Fatal("a refused call made a subject key")
	}
	// Inner white space is part of the id.
	f.tokenize(t, "alice smith", vault.Field{Kind: format.PAN, Value: "4111111111111111"})
}

// TestContextRule: a blob context is never trimmed either (it is the
// blob's associated data); Encrypt refuses one that is blank but not
// empty, or has white space at either end. The empty context stays
// allowed.
func TestContextRule(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	for _, tc := range blankIDs {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.v.Encrypt(ctx, "alice", []vault.EncryptItem{{Plaintext: []byte("x"), Context: "orders"}, {Plaintext: []byte("y"), Context: tc.id}})
			wantFieldError(t, err, "items[1].context", vault.ErrInvalidArgument, strings.TrimSpace(tc.id))
		})
	}
	for _, c := range []string{"", "orders.note", "orders note"} {
		if _, err := f.v.Encrypt(ctx, "alice", []vault.EncryptItem{{Plaintext: []byte("x"), Context: c}}); err != nil {
			t.Fatalf("context %q: %v", c, err)
		}
	}
}

// TestIDsStoredBefore: data an older server stored under a subject id or
// context that is now refused for new data stays revealable, exportable,
// restrictable and erasable (those calls take ids byte for byte); only
// new data under such an id is refused.
func TestIDsStoredBefore(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	const subject, blobCtx = " legacy ", "  "
	toks, err := vault.StoreAsBefore(ctx, f.v, subject, []vault.Field{{Kind: format.PAN, Value: "4111111111111111"}})
	if err != nil {
		t.Fatal(err)
	}
	blob, err := vault.EncryptAsBefore(ctx, f.v, subject, blobCtx, []byte("note"))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := f.v.Detokenize(ctx, toks, "p"); err != nil || res[0].Err != nil {
		t.Fatalf("detokenize: %v %+v", err, res)
	}
	if res, err := f.v.Decrypt(ctx, []vault.DecryptItem{{Blob: blob, Context: blobCtx}}, "p"); err != nil || res[0].Err != nil || res[0].Subject != subject {
		t.Fatalf("decrypt: %v %+v", err, res)
	}
	n := 0
	if err := f.v.ExportSubject(ctx, subject, func(_ vault.ExportHeader, recs []vault.ExportedRecord) error { n += len(recs); return nil }); err != nil || n != 1 {
		t.Fatalf("export: %v, %d records", err, n)
	}
	if _, err := f.v.RestrictSubject(ctx, subject); err != nil {
		t.Fatal(err)
	}
	if err := f.v.UnrestrictSubject(ctx, subject); err != nil {
		t.Fatal(err)
	}
	_, err = f.v.Tokenize(ctx, subject, []vault.Field{{Kind: format.PAN, Value: "4111111111111111"}})
	wantFieldError(t, err, "subject_id", vault.ErrInvalidArgument)
	if _, _, err := f.v.EraseSubject(ctx, subject); err != nil {
		t.Fatal(err)
	}
	if res, err := f.v.Detokenize(ctx, toks, "p"); err != nil || !errors.Is(res[0].Err, vault.ErrNotFound) {
		t.Fatalf("after erasure: %v %+v", err, res)
	}
}

// TestTokenizeRefusesTokens: a value that is a live token of this vault,
// of any kind and any subject, as given or once normalized, is refused
// (FailedPrecondition naming the field) and nothing is stored; a token
// that expired or was erased is only a string again.
//
// It runs over the badger store as it is (one batched read of every
// value's record, vault.RecordBatchStore) and over the same store without
// the batched read (one read per value).
func TestTokenizeRefusesTokens(t *testing.T) {
	for name, seen := range map[string]func(*badgerstore.Store) vault.Store{
		"batched read":       nil,
		"one read per value": func(s *badgerstore.Store) vault.Store { return noBatchRead{Store: s} },
	} {
		t.Run(name, func(t *testing.T) {
			clk := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
			testRefusesTokens(t, newFixtureOn(t, vault.Options{Now: clk.now}, seen), clk)
		})
	}
}

// noBatchRead is the badger store without vault.RecordBatchStore: the
// field shadows the promoted method.
type noBatchRead struct {
	*badgerstore.Store
	RecordsOf struct{}
}

var (
	_ vault.RecordBatchStore = (*badgerstore.Store)(nil)
	_ vault.Store            = noBatchRead{}
	_                        = noBatchRead{}.RecordsOf // a field, not the method
)

func testRefusesTokens(t *testing.T, f *fixture, clk *clock) {
	ctx := context.Background()
	toks := f.tokenize(t, "alice",
		vault.Field{Kind: format.PAN, Value: "4111111111111111"},
		vault.Field{Kind: format.PAN, Value: "4111111111111111", ChecksumValid: true},
		vault.Field{Kind: format.SSN, Value: "123-45-6789"},
		vault.Field{Kind: format.Email, Value: "ada@example.com", Deterministic: true},
		vault.Field{Kind: format.Name, Value: "Ada Lovelace"},
	)
	pan, panValid, ssn, email, name := toks[0], toks[1], toks[2], toks[3], toks[4]
	spaced := pan[:4] + " " + pan[4:8] + " " + pan[8:12] + " " + pan[12:]
	ordinary := vault.Field{Kind: format.Phone, Value: "+14155550100"}
	before := f.v.Stats().TokensCreated
	for _, tc := range []struct {
		name, subject string
		field         vault.Field
	}{
		{"card token as a card", "alice", vault.Field{Kind: format.PAN, Value: pan}},
		{"card token spaced out", "alice", vault.Field{Kind: format.PAN, Value: spaced}},
		{"card token with surrounding space", "alice", vault.Field{Kind: format.PAN, Value: " " + pan + "\n"}},
		{"checksum-valid card token", "alice", vault.Field{Kind: format.PAN, Value: panValid}},
		{"card token, deterministic", "alice", vault.Field{Kind: format.PAN, Value: pan, Deterministic: true}},
		{"card token of another subject", "bob", vault.Field{Kind: format.PAN, Value: pan}},
		{"card token as a bank account", "carol", vault.Field{Kind: format.BankAccount, Value: pan}},
		{"card token as generic text", "alice", vault.Field{Kind: format.Generic, Value: pan}},
		{"SSN token as a bank account (normalized, it is no token)", "alice", vault.Field{Kind: format.BankAccount, Value: ssn}},
		{"e-mail token as an e-mail", "alice", vault.Field{Kind: format.Email, Value: email, Deterministic: true}},
		{"name token as a name", "alice", vault.Field{Kind: format.Name, Value: name}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.v.Tokenize(ctx, tc.subject, []vault.Field{ordinary, tc.field})
			wantFieldError(t, err, "fields[1].value", vault.ErrFailedPrecondition, tc.field.Value, strings.TrimSpace(tc.field.Value))
		})
	}
	// Of several tokens given, the first is named.
	_, err := f.v.Tokenize(ctx, "alice", []vault.Field{ordinary, {Kind: format.Name, Value: name}, {Kind: format.PAN, Value: pan}})
	wantFieldError(t, err, "fields[1].value", vault.ErrFailedPrecondition, name, pan)
	if n := f.v.Stats().TokensCreated; n != before {
		t.Fatalf("%d tokens created by refused calls", n-before)
	}
	for _, s := range []string{"bob", "carol"} {
		if err := f.v.ExportSubject(ctx, s, func(vault.ExportHeader, []vault.ExportedRecord) error { return nil }); !errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("a refused call made a key for %s: %v", s, err)
		}
	}

	// Not live: an expired token, and an erased subject's token.
	short := f.tokenize(t, "dave", vault.Field{Kind: format.PAN, Value: "4111111111111111", TTL: time.Hour})
	gone := f.tokenize(t, "erin", vault.Field{Kind: format.PAN, Value: "4111111111111111"})
	if _, _, err := f.v.EraseSubject(ctx, "erin"); err != nil {
		t.Fatal(err)
	}
	clk.add(2 * time.Hour)
	for _, tok := range []string{short[0], gone[0]} {
		if _, err := f.v.Tokenize(ctx, "alice", []vault.Field{{Kind: format.PAN, Value: tok}}); err != nil {
			t.Fatalf("a dead token's string: %v", err)
		}
	}
}
