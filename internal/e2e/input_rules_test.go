package e2e

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/errinfo"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// Input rules (issue 14, defects 3–5), through the client against a dev
// mode server: what is trimmed, what is refused, which enum values exist,
// and that a token is not a value.

func invalidArg(name string, call func() error, field, says string) refusal {
	return refusal{name, call, codes.InvalidArgument, errinfo.InvalidArgument, field, client.ErrInvalidArgument, says}
}

// TestBlankInputsRefused: a purpose of only white space reveals nothing,
// in every reveal; subject ids and contexts of new data are neither blank
// nor padded with white space; an enum value the proto does not define is
// refused like an unknown kind.
func TestBlankInputsRefused(t *testing.T) {
	e := newEnv(t)
	a, c := e.start(t)
	cx := ctx(t)
	tok, err := c.Tokenize(cx, "rules", client.Field{Kind: "pan", Value: "4111111111111111"})
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := c.Encrypt(cx, "rules", "orders.note", []byte("note"))
	if err != nil {
		t.Fatal(err)
	}
	raw := pb.NewTokenVaultClient(dialRaw(t, a.Addr()))
	tokenizeRaw := func(fields ...*pb.Field) func() error {
		return func() error {
			_, err := raw.Tokenize(cx, &pb.TokenizeRequest{SubjectId: "rules", Fields: fields})
			return client.AsError(err)
		}
	}
	pan := &pb.Field{Kind: pb.Kind_KIND_PAN, Value: "4111111111111111"}
	withMode := func(m pb.TokenMode) *pb.Field {
		return &pb.Field{Kind: pb.Kind_KIND_EMAIL, Value: "ada@example.com", Options: &pb.TokenizeOptions{Mode: m}}
	}
	checkRefusals(t, []refusal{
		invalidArg("detokenize, spaces for a purpose", func() error { _, err := c.Detokenize(cx, "   ", tok...); return err }, "purpose", "purpose: required"),
		invalidArg("decrypt, no-break space for a purpose", func() error { _, err := c.Decrypt(cx, "\u00a0", "orders.note", blobs...); return err }, "purpose", "purpose: required"),
		invalidArg("export, zero-width space for a purpose", func() error { _, err := c.ExportSubject(cx, "rules", "\u200b "); return err }, "purpose", "purpose: required"),
		invalidArg("tokenize, blank subject", func() error {
			_, err := c.Tokenize(cx, "  ", client.Field{Kind: "pan", Value: "4111111111111111"})
			return err
		}, "subject_id", "blank"),
		invalidArg("tokenize, padded subject", func() error {
			_, err := c.Tokenize(cx, " rules", client.Field{Kind: "pan", Value: "4111111111111111"})
			return err
		}, "subject_id", "white space"),
		invalidArg("encrypt, padded subject", func() error { _, err := c.Encrypt(cx, "rules\u3000", "orders.note", []byte("x")); return err }, "subject_id", "subject_id"),
		invalidArg("encrypt, blank context", func() error { _, err := c.Encrypt(cx, "rules", "  ", []byte("x")); return err }, "items[0].context", "blank"),
		invalidArg("encrypt, padded context", func() error { _, err := c.Encrypt(cx, "rules", "orders.note ", []byte("x")); return err }, "items[0].context", "white space"),
		invalidArg("unknown token mode", tokenizeRaw(pan, withMode(3)), "fields[1].options.mode", "unknown token mode"),
		invalidArg("negative token mode", tokenizeRaw(withMode(-2)), "fields[0].options.mode", "unknown token mode"),
		invalidArg("unknown kind", tokenizeRaw(pan, &pb.Field{Kind: pb.Kind(len(pb.Kind_name)), Value: "x"}), "fields[1].kind", "unknown"),
	})
	// Inner white space is part of an id; a purpose is trimmed, not refused.
	if _, err := c.Encrypt(cx, "rules two", "orders note", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Detokenize(cx, "  support  ", tok...); err != nil || res[0].Err != nil {
		t.Fatalf("padded purpose: %v %+v", err, res)
	}
	// The defined modes still work.
	if err := tokenizeRaw(pan, withMode(pb.TokenMode_TOKEN_MODE_UNSPECIFIED), withMode(pb.TokenMode_TOKEN_MODE_DETERMINISTIC))(); err != nil {
		t.Fatal(err)
	}
}

// TestTokenIsNotAValue: a token of this vault, of any kind and subject,
// is refused as a value to tokenize (FAILED_PRECONDITION naming the
// field, without the token); nothing is stored.
func TestTokenIsNotAValue(t *testing.T) {
	e := newEnv(t)
	_, c := e.start(t)
	cx := ctx(t)
	toks, err := c.Tokenize(cx, "alice", client.Field{Kind: "pan", Value: "4111 1111 1111 1111"}, client.Field{Kind: "ssn", Value: "123-45-6789"})
	if err != nil {
		t.Fatal(err)
	}
	pan, ssn := toks[0], toks[1]
	tokenize := func(subject string, fields ...client.Field) func() error {
		return func() error { _, err := c.Tokenize(cx, subject, fields...); return err }
	}
	other := client.Field{Kind: "email", Value: "ada@example.com"}
	cases := []refusal{
		{"card token as a card", tokenize("alice", other, client.Field{Kind: "pan", Value: pan}),
			codes.FailedPrecondition, errinfo.FailedPrecondition, "fields[1].value", client.ErrFailedPrecondition, "is a token of this vault"},
		{"card token for another subject, deterministic", tokenize("bob", client.Field{Kind: "pan", Value: pan, Deterministic: true}),
			codes.FailedPrecondition, errinfo.FailedPrecondition, "fields[0].value", client.ErrFailedPrecondition, "is a token of this vault"},
		{"SSN token as a bank account", tokenize("alice", client.Field{Kind: "bank-account", Value: ssn}),
			codes.FailedPrecondition, errinfo.FailedPrecondition, "fields[0].value", client.ErrFailedPrecondition, "is a token of this vault"},
	}
	checkRefusals(t, cases)
	for _, tc := range cases {
		if err := tc.call(); err != nil && (strings.Contains(err.Error(), pan) || strings.Contains(err.Error(), ssn)) {
			t.Fatalf("%s: the error shows the token: %v", tc.name, err)
		}
	}
	// bob got no key from the refused call.
	if _, err := c.ExportSubject(cx, "bob", "check"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("export bob: %v", err)
	}
}

// TestPurposeTrimmedForPolicyAndAudit: under a policy, the guard asks the
// policy about, and the audit log records, the purpose the vault uses
// (trimmed): " payment " is the purpose "payment", and a blank purpose is
// refused before the policy is asked.
func TestPurposeTrimmedForPolicyAndAudit(t *testing.T) {
	s := newSecureEnv(t)
	s.start(t)
	cx := ctx(t)
	tok, err := s.as(t, "setup").Tokenize(cx, "trim-subject", client.Field{Kind: "pan", Value: authzValues["pan"]})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.as(t, "payments").Detokenize(cx, " payment\u00a0", tok...)
	if err != nil || res[0].Err != nil || res[0].Value != revealed["pan"] {
		t.Fatalf("padded allowed purpose: %v %+v", err, res)
	}
	checkRefusals(t, []refusal{
		invalidArg("blank purpose", func() error { _, err := s.as(t, "payments").Detokenize(cx, "  ", tok...); return err }, "purpose", "purpose: required"),
	})
	if err := s.app.Stop(); err != nil {
		t.Fatal(err)
	}
	var admitted []string
	for _, x := range verifiedAuditEntries(t, s.app, filepath.Join(s.keysDir, "audit-signing.key")) {
		if x.Op == "detokenize" && x.Outcome == "OK" {
			admitted = append(admitted, x.Purpose)
		}
	}
	if len(admitted) != 1 || admitted[0] != "payment" {
		t.Fatalf("purposes of the admitted detokenize calls: %q", admitted)
	}
}
