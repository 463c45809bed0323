package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/errinfo"
	"github.com/tokenvault/tokenvault/vault/receipt"
)

// TestSubjectRights: export matches what was tokenized; rectification
// keeps the token; restriction blocks reveal and decrypt but not mask.
func TestSubjectRights(t *testing.T) { withEachKEK(t, subjectRights) }

func subjectRights(t *testing.T, e *env) {
	_, c := e.start(t)
	cx := ctx(t)
	fields := make([]client.Field, len(samples))
	for i, s := range samples {
		fields[i] = client.Field{Kind: s.kind, Value: s.value, Deterministic: s.kind == "email"}
	}
	tokens, err := c.Tokenize(cx, "rights-1", fields...)
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := c.Encrypt(cx, "rights-1", "orders.note", []byte("leave at door"))
	if err != nil {
		t.Fatal(err)
	}

	// Access / portability.
	ex, err := c.ExportSubject(cx, "rights-1", "dsar")
	if err != nil {
		t.Fatal(err)
	}
	if ex.Subject != "rights-1" || len(ex.Tokens) != len(samples) || len(ex.BlobKeyID) != 32 || ex.RestrictedSince != nil {
		t.Fatalf("export header: %+v", ex)
	}
	byToken := map[string]client.ExportedToken{}
	for _, tk := range ex.Tokens {
		byToken[tk.Token] = tk
	}
	for i, s := range samples {
		got, ok := byToken[tokens[i]]
		if !ok || got.Kind != s.kind || got.Value != normalized(t, s.kind, s.value) || got.Deterministic != (s.kind == "email") {
			t.Fatalf("export of %s: %+v", s.kind, got)
		}
	}
	// The blob key id names the blob's key (16 bytes at offset 2 of the blob, after its version and length bytes).
	if got := strings.ToLower(ex.BlobKeyID); got != hexOf(blobs[0][2:18]) {
		t.Fatalf("blob_key_id %s does not match the blob's key id %s", got, hexOf(blobs[0][2:18]))
	}
	_, err = c.ExportSubject(cx, "nobody", "dsar")
	wantCode(t, err, codes.NotFound, "subject_id")

	// Rectification: the token stays; lookups follow the new value.
	email := 5
	if _, err := c.Rectify(cx, tokens[email], "jane.new@example.com"); err != nil {
		t.Fatal(err)
	}
	det, _ := c.Detokenize(cx, "support", tokens[email])
	if det[0].Err != nil || det[0].Value != "jane.new@example.com" {
		t.Fatalf("after rectify: %q %v", det[0].Value, det[0].Err)
	}
	again, _ := c.Tokenize(cx, "rights-1", client.Field{Kind: "email", Value: "jane.new@example.com", Deterministic: true})
	if again[0] != tokens[email] {
		t.Fatal("deterministic tokenize of the rectified value gives another token")
	}
	_, err = c.Rectify(cx, tokens[0], "not a card")
	wantCode(t, err, codes.InvalidArgument, "value")
	// Refused, as Tokenize refuses them: a token of this vault as the
	// value, and a value without the token's kept parts (another domain).
	rectify := func(token, value string) func() error {
		return func() error { _, err := c.Rectify(cx, token, value); return err }
	}
	other, err := c.Tokenize(cx, "rights-2", client.Field{Kind: "email", Value: "bo@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	checkRefusals(t, []refusal{
		{"rectify to another subject's token", rectify(tokens[email], other[0]),
			codes.FailedPrecondition, errinfo.FailedPrecondition, "value", client.ErrFailedPrecondition, "is a token of this vault"},
		{"rectify to another domain", rectify(tokens[email], "jane.new@example.org"),
			codes.FailedPrecondition, errinfo.FailedPrecondition, "value", client.ErrFailedPrecondition, "email tokens keep the domain"},
	})
	if det, _ := c.Detokenize(cx, "support", tokens[email]); det[0].Err != nil || det[0].Value != "jane.new@example.com" {
		t.Fatalf("after the refused rectifications: %q %v", det[0].Value, det[0].Err)
	}
	_, err = c.Rectify(cx, "4111118306421111", "4111111111111111")
	wantCode(t, err, codes.NotFound, "token")

	// Restriction.
	if _, err := c.Restrict(cx, "rights-1"); err != nil {
		t.Fatal(err)
	}
	det, _ = c.Detokenize(cx, "support", tokens...)
	for _, d := range det {
		wantCode(t, d.Err, codes.FailedPrecondition, "restricted")
	}
	dec, _ := c.Decrypt(cx, "support", "orders.note", blobs[0])
	wantCode(t, dec[0].Err, codes.FailedPrecondition, "restricted")
	masks, _ := c.Mask(cx, tokens...)
	for _, m := range masks {
		if m.Err != nil || m.Value == "" {
			t.Fatalf("mask while restricted: %v", m.Err)
		}
	}
	if ex, err := c.ExportSubject(cx, "rights-1", "dsar"); err != nil || ex.RestrictedSince == nil {
		t.Fatalf("export while restricted (the right of access applies): %v", err)
	}
	if err := c.Unrestrict(cx, "rights-1"); err != nil {
		t.Fatal(err)
	}
	if dec, _ := c.Decrypt(cx, "support", "orders.note", blobs[0]); dec[0].Err != nil {
		t.Fatalf("decrypt after unrestrict: %v", dec[0].Err)
	}
	_, err = c.Restrict(cx, "nobody")
	wantCode(t, err, codes.NotFound, "subject_id")

	// Erasure receipt: verifies; a tampered one fails.
	r, rc, pub := eraseVerified(t, cx, c, "rights-1")
	// Default rotation interval and backup retention: 30 days each.
	if want := rc.ErasedAt.Add(60 * 24 * time.Hour); !rc.BackupsUndecryptableBy.Equal(want) || !r.BackupsUndecryptableBy.Equal(want) {
		t.Fatalf("backups_undecryptable_by = %v, want %v", rc.BackupsUndecryptableBy, want)
	}
	tampered, err := receipt.Parse([]byte(strings.Replace(string(r.Signed), `"records_erased": `+itoa(rc.Records), `"records_erased": 0`, 1)))
	if err != nil || tampered.Records != 0 {
		t.Fatalf("tampering failed: %v", err)
	}
	if tampered.Verify(pub) == nil {
		t.Fatal("a tampered receipt verifies")
	}
}

// TestExpiryAndPurge: a token with a retention is unreadable once it
// expires and the background purge removes it.
func TestExpiryAndPurge(t *testing.T) {
	e := newEnv(t)
	e.purgeInterval = 20 * time.Millisecond
	_, c := e.start(t)
	cx := ctx(t)
	// 1ns: expired by the time of any later call, without sleeping.
	toks, err := c.Tokenize(cx, "exp-1", client.Field{Kind: "pan", Value: "4111111111111111", TTL: time.Nanosecond},
		client.Field{Kind: "name", Value: "Kept"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Tokenize(cx, "exp-1", client.Field{Kind: "name", Value: "x", TTL: -time.Second})
	wantCode(t, err, codes.InvalidArgument, "fields[0].options.ttl")
	ex, err := c.ExportSubject(cx, "exp-1", "dsar")
	if err != nil || len(ex.Tokens) != 1 || ex.Tokens[0].Token != toks[1] {
		t.Fatalf("export with an expired token: %+v %v", ex.Tokens, err)
	}
	m, _ := c.Mask(cx, toks[0])
	wantCode(t, m[0].Err, codes.NotFound, "")
	// Expired and purged give the same code; the message tells them
	// apart. Wait (bounded) for the background purge.
	for deadline := time.Now().Add(30 * time.Second); ; {
		d, _ := c.Detokenize(cx, "audit", toks[0])
		wantCode(t, d[0].Err, codes.NotFound, "")
		if strings.Contains(d[0].Err.Error(), "unknown token") {
			break
		}
		if !strings.Contains(d[0].Err.Error(), "expired") {
			t.Fatalf("expired token: %v", d[0].Err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the expired token was not purged")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d, _ := c.Detokenize(cx, "audit", toks[1]); d[0].Err != nil {
		t.Fatalf("the token without expiry: %v", d[0].Err)
	}
}

func hexOf(b []byte) string { return fmt.Sprintf("%x", b) }
func itoa(n int64) string   { return strconv.FormatInt(n, 10) }
