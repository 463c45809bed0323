package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/internal/app"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault/format"
)

// samples has one realistic value per kind.
var samples = []struct{ kind, value string }{
	{"pan", "4111 1111 1111 1111"},
	{"ssn", "123-45-6789"},
	{"cn-resident-id", "11010519491231002X"},
	{"national-id", "AB-123456-C"},
	{"phone", "+86 138 0013 8000"},
	{"email", "Jane.Doe@Example.COM"},
	{"iban", "DE89 3704 0044 0532 0130 00"},
	{"bank-account", "000123456789"},
	{"address", "1600 Amphitheatre Pkwy\nMountain View, CA 94043"},
	{"name", "Jane Doe"},
	{"generic", "gift message: happy 30th"},
}

func normalized(t *testing.T, kind, value string) string {
	k, err := format.ParseKind(kind)
	if err != nil {
		t.Fatal(err)
	}
	n, err := format.Normalize(k, value)
	if err != nil {
		t.Fatalf("%s sample: %v", kind, err)
	}
	return n
}

func wantCode(t *testing.T, err error, code codes.Code, mentions string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("err = %v, want code %v", err, code)
	}
	if mentions != "" && !strings.Contains(status.Convert(err).Message(), mentions) {
		t.Fatalf("message %q does not name %q", status.Convert(err).Message(), mentions)
	}
}

// TestLifecycle: tokenize → detokenize → mask → encrypt/decrypt → erase →
// every path fails.
func TestLifecycle(t *testing.T) { withEachKEK(t, testLifecycle) }

func testLifecycle(t *testing.T, e *env) {
	_, c := e.start(t)
	cx := ctx(t)

	fields := make([]client.Field, len(samples))
	for i, s := range samples {
		fields[i] = client.Field{Kind: s.kind, Value: s.value}
	}
	tokens, err := c.Tokenize(cx, "customer-1", fields...)
	if err != nil {
		t.Fatal(err)
	}
	if len(tokens) != len(samples) {
		t.Fatalf("%d tokens for %d fields", len(tokens), len(samples))
	}
	vals, err := c.Detokenize(cx, "support-ticket", tokens...)
	if err != nil {
		t.Fatal(err)
	}
	masks, err := c.Mask(cx, tokens...)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range samples {
		t.Run(s.kind, func(t *testing.T) {
			want := normalized(t, s.kind, s.value)
			if tokens[i] == want {
				t.Error("token equals the value")
			}
			if vals[i].Err != nil || vals[i].Value != want || vals[i].Kind != s.kind {
				t.Errorf("detokenize = %+v, want %q (%s)", vals[i], want, s.kind)
			}
			k, _ := format.ParseKind(s.kind)
			if masks[i].Err != nil || masks[i].Value != format.Mask(k, want) || masks[i].Value == want {
				t.Errorf("mask = %+v", masks[i])
			}
		})
	}
	if tokens[0][:6] != "411111" || tokens[0][12:] != "1111" || len(tokens[0]) != 16 || luhnValid(tokens[0]) {
		t.Errorf("pan token does not keep first 6/last 4 or passes Luhn")
	}
	if masks[0].Value != "411111******1111" {
		t.Errorf("pan mask = %q", masks[0].Value)
	}

	// Deterministic tokens repeat; random ones do not.
	det := client.Field{Kind: "email", Value: "jane@example.com", Deterministic: true}
	d1, err := c.Tokenize(cx, "customer-1", det, det)
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := c.Tokenize(cx, "customer-1", det)
	if d1[0] != d1[1] || d1[0] != d2[0] {
		t.Errorf("deterministic tokens differ: %v %v", d1, d2)
	}
	other, _ := c.Tokenize(cx, "customer-2", det)
	if other[0] == d1[0] {
		t.Error("deterministic token is shared across subjects")
	}
	r1, _ := c.Tokenize(cx, "customer-1", client.Field{Kind: "email", Value: "jane@example.com"})
	if r1[0] == d1[0] {
		t.Error("random token equals the deterministic one")
	}

	// Field encryption, bound to subject and context.
	blobs, err := c.Encrypt(cx, "customer-1", "orders.shipping_address", []byte("1 Main St"), []byte{})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := c.Decrypt(cx, "shipping", "orders.shipping_address", blobs...)
	if err != nil || dec[0].Err != nil || dec[0].Value != "1 Main St" || dec[0].Subject != "customer-1" || dec[1].Err != nil || dec[1].Value != "" {
		t.Fatalf("decrypt = %+v, %v", dec, err)
	}
	wrongCtx, _ := c.Decrypt(cx, "shipping", "orders.billing_address", blobs[0])
	wantCode(t, wrongCtx[0].Err, codes.InvalidArgument, "items[0].blob")

	// Erase.
	receipt, err := c.EraseSubject(cx, "customer-1")
	if err != nil {
		t.Fatal(err)
	}
	if receipt.Subject != "customer-1" || receipt.Records != int64(len(samples)+2) || receipt.Lookups != 1 || receipt.ErasedAt.IsZero() {
		t.Fatalf("receipt = %+v", receipt)
	}
	all := append(append(tokens, d1[0]), r1[0])
	vals, err = c.Detokenize(cx, "support-ticket", all...)
	if err != nil {
		t.Fatal(err)
	}
	masks, _ = c.Mask(cx, all...)
	for i := range all {
		wantCode(t, vals[i].Err, codes.NotFound, fmt.Sprintf("tokens[%d]", i))
		wantCode(t, masks[i].Err, codes.NotFound, fmt.Sprintf("tokens[%d]", i))
	}
	dec, _ = c.Decrypt(cx, "shipping", "orders.shipping_address", blobs...)
	for i := range dec {
		wantCode(t, dec[i].Err, codes.NotFound, fmt.Sprintf("items[%d].blob", i))
	}
	_, err = c.EraseSubject(cx, "customer-1")
	wantCode(t, err, codes.NotFound, "subject_id")
	// A returning customer starts over with a new key: old tokens stay dead.
	again, _ := c.Tokenize(cx, "customer-1", det)
	if again[0] == d1[0] {
		t.Error("deterministic token survived erasure")
	}
	// customer-2 is untouched.
	v2, _ := c.Detokenize(cx, "support-ticket", other[0])
	if v2[0].Err != nil || v2[0].Value != "jane@example.com" {
		t.Errorf("other subject after erase: %+v", v2[0])
	}
}

func luhnValid(s string) bool {
	sum := 0
	for i := range len(s) {
		d := int(s[len(s)-1-i] - '0')
		if i%2 == 1 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

// TestRestart: tokens issued before a restart on the same data dir read
// back after it; deterministic tokens stay stable.
func TestRestart(t *testing.T) { withEachKEK(t, testRestart) }

func testRestart(t *testing.T, e *env) {
	a, c := e.start(t)
	cx := ctx(t)
	toks, err := c.Tokenize(cx, "s1", client.Field{Kind: "pan", Value: "5555555555554444"},
		client.Field{Kind: "phone", Value: "+442071838750", Deterministic: true})
	if err != nil {
		t.Fatal(err)
	}
	blob, _ := c.Encrypt(cx, "s1", "c", []byte("secret"))
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}

	a2, c2 := e.start(t)
	if a2.Created {
		t.Fatal("a new keyring was created on restart")
	}
	vals, err := c2.Detokenize(cx, "p", toks...)
	if err != nil || vals[0].Value != "5555555555554444" || vals[1].Value != "+442071838750" {
		t.Fatalf("after restart: %+v %v", vals, err)
	}
	det, _ := c2.Tokenize(cx, "s1", client.Field{Kind: "phone", Value: "+44 20 7183 8750", Deterministic: true})
	if det[0] != toks[1] {
		t.Error("deterministic token changed across restart")
	}
	dec, _ := c2.Decrypt(cx, "p", "c", blob...)
	if dec[0].Err != nil || dec[0].Value != "secret" {
		t.Fatalf("decrypt after restart: %+v", dec[0])
	}
}

// TestKeyringSafety: the server never makes a new keyring over old data.
func TestKeyringSafety(t *testing.T) {
	e := newEnv(t)
	a, c := e.start(t)
	if !a.Created {
		t.Fatal("first start did not create a keyring")
	}
	if _, err := c.Tokenize(ctx(t), "s", client.Field{Kind: "name", Value: "Ada Lovelace"}); err != nil {
		t.Fatal(err)
	}
	a.Stop()
	cfg := e.config()

	t.Run("keyring missing", func(t *testing.T) {
		moved := cfg.KEK.Keyring.Path + ".moved"
		os.Rename(cfg.KEK.Keyring.Path, moved)
		defer os.Rename(moved, cfg.KEK.Keyring.Path)
		_, err := app.Start(ctx(t), cfg)
		if !errors.Is(err, agekeyring.ErrNotExist) {
			t.Fatalf("start without keyring: %v", err)
		}
		if _, err := os.Stat(cfg.KEK.Keyring.Path); err == nil {
			t.Fatal("a new keyring was created over existing data")
		}
	})
	t.Run("wrong identity", func(t *testing.T) {
		bad := cfg
		bad.KEK.Keyring.IdentityFile = filepath.Join(t.TempDir(), "other.txt")
		if _, err := app.Start(ctx(t), bad); err == nil {
			t.Fatal("started with an identity that does not open the keyring")
		}
	})
	t.Run("plaintext on non-loopback", func(t *testing.T) {
		bad := cfg
		bad.Listen = "0.0.0.0:0"
		if _, err := app.Start(ctx(t), bad); err == nil || !strings.Contains(err.Error(), "listen") {
			t.Fatalf("plaintext non-loopback listen: %v", err)
		}
	})
	// And the original still works.
	_, c2 := e.start(t)
	if _, err := c2.Tokenize(ctx(t), "s", client.Field{Kind: "name", Value: "Ada Lovelace"}); err != nil {
		t.Fatal(err)
	}
}

// TestBadInput: every bad input gets the right code and a message naming
// the field, never the value; nothing is stored.
func TestBadInput(t *testing.T) { withEachKEK(t, testBadInput) }

func testBadInput(t *testing.T, e *env) {
	_, c := e.start(t)
	raw := c.Raw()
	cx := ctx(t)
	secret := "4111111111111111"
	f := func(kind pb.Kind, value string) *pb.Field { return &pb.Field{Kind: kind, Value: value} }
	big := strings.Repeat("a", format.MaxValueBytes+1)
	many := make([]*pb.Field, 1001)
	for i := range many {
		many[i] = f(pb.Kind_KIND_GENERIC, "value-"+fmt.Sprint(i))
	}
	tokenizeCases := []struct {
		name  string
		req   *pb.TokenizeRequest
		field string
	}{
		{"empty subject", &pb.TokenizeRequest{Fields: []*pb.Field{f(pb.Kind_KIND_PAN, secret)}}, "subject_id"},
		{"control char subject", &pb.TokenizeRequest{SubjectId: "a\nb", Fields: []*pb.Field{f(pb.Kind_KIND_PAN, secret)}}, "subject_id"},
		{"long subject", &pb.TokenizeRequest{SubjectId: strings.Repeat("s", 257), Fields: []*pb.Field{f(pb.Kind_KIND_PAN, secret)}}, "subject_id"},
		{"no fields", &pb.TokenizeRequest{SubjectId: "s"}, "fields"},
		{"too many fields", &pb.TokenizeRequest{SubjectId: "s", Fields: many}, "fields"},
		{"unspecified kind", &pb.TokenizeRequest{SubjectId: "s", Fields: []*pb.Field{f(pb.Kind_KIND_UNSPECIFIED, secret)}}, "fields[0].kind"},
		{"unknown kind", &pb.TokenizeRequest{SubjectId: "s", Fields: []*pb.Field{f(pb.Kind(99), secret)}}, "fields[0].kind"},
		{"malformed pan", &pb.TokenizeRequest{SubjectId: "s", Fields: []*pb.Field{f(pb.Kind_KIND_PAN, secret), f(pb.Kind_KIND_PAN, "4111-1111-x111-1111")}}, "fields[1].value"},
		{"short pan", &pb.TokenizeRequest{SubjectId: "s", Fields: []*pb.Field{f(pb.Kind_KIND_PAN, "411111111111")}}, "fields[0].value"},
		{"bad email", &pb.TokenizeRequest{SubjectId: "s", Fields: []*pb.Field{f(pb.Kind_KIND_EMAIL, "jane.example.com")}}, "fields[0].value"},
		{"bad iban check", &pb.TokenizeRequest{SubjectId: "s", Fields: []*pb.Field{f(pb.Kind_KIND_IBAN, "DE88370400440532013000")}}, "fields[0].value"},
		{"oversize value", &pb.TokenizeRequest{SubjectId: "s", Fields: []*pb.Field{f(pb.Kind_KIND_GENERIC, big)}}, "fields[0].value"},
		{"invalid utf8", &pb.TokenizeRequest{SubjectId: "s", Fields: []*pb.Field{f(pb.Kind_KIND_NAME, "Jos\xff Ma")}}, "fields[0].value"},
		{"empty value", &pb.TokenizeRequest{SubjectId: "s", Fields: []*pb.Field{f(pb.Kind_KIND_GENERIC, "")}}, "fields[0].value"},
	}
	for _, tc := range tokenizeCases {
		t.Run("tokenize/"+tc.name, func(t *testing.T) {
			_, err := raw.Tokenize(cx, tc.req)
			wantCode(t, err, codes.InvalidArgument, tc.field)
			msg := status.Convert(err).Message()
			for _, fl := range tc.req.Fields {
				if len(fl.Value) >= 4 && strings.Contains(msg, fl.Value) {
					t.Fatalf("error message echoes the value: %q", msg)
				}
			}
		})
	}
	// Nothing half-written: the failed batch with a good first field stored
	// nothing, so this subject has nothing to erase.
	_, err := c.EraseSubject(cx, "s")
	wantCode(t, err, codes.NotFound, "subject_id")

	t.Run("detokenize", func(t *testing.T) {
		_, err := raw.Detokenize(cx, &pb.DetokenizeRequest{Tokens: []string{"x"}})
		wantCode(t, err, codes.InvalidArgument, "purpose")
		_, err = raw.Detokenize(cx, &pb.DetokenizeRequest{Purpose: "p"})
		wantCode(t, err, codes.InvalidArgument, "tokens")
		_, err = raw.Detokenize(cx, &pb.DetokenizeRequest{Purpose: "p", Tokens: make([]string, 1001)})
		wantCode(t, err, codes.InvalidArgument, "tokens")
	})
	t.Run("per-item status", func(t *testing.T) {
		good, err := c.Tokenize(cx, "t", client.Field{Kind: "pan", Value: secret})
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Detokenize(cx, "p", "4111110000001111", good[0], "", "bad\x00token", "\xff\xfe")
		if err != nil {
			t.Fatal(err)
		}
		wantCode(t, res[0].Err, codes.NotFound, "tokens[0]")
		if res[1].Err != nil || res[1].Value != secret {
			t.Fatalf("good token in a mixed batch: %+v", res[1])
		}
		for i := 2; i < 5; i++ {
			wantCode(t, res[i].Err, codes.InvalidArgument, fmt.Sprintf("tokens[%d]", i))
		}
	})
	t.Run("encrypt", func(t *testing.T) {
		_, err := c.Encrypt(cx, "", "c", []byte("x"))
		wantCode(t, err, codes.InvalidArgument, "subject_id")
		_, err = c.Encrypt(cx, "s", "c", make([]byte, 64<<10+1))
		wantCode(t, err, codes.InvalidArgument, "items[0].plaintext")
		_, err = c.Encrypt(cx, "s", "bad\ncontext", []byte("x"))
		wantCode(t, err, codes.InvalidArgument, "items[0].context")
		_, err = c.Encrypt(cx, "s", "c")
		wantCode(t, err, codes.InvalidArgument, "items")
	})
	t.Run("decrypt", func(t *testing.T) {
		_, err := c.Decrypt(cx, "", "c", []byte("x"))
		wantCode(t, err, codes.InvalidArgument, "purpose")
		blob, err := c.Encrypt(cx, "u", "c", []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		tampered := bytes.Clone(blob[0])
		tampered[len(tampered)-1] ^= 1
		unknownKey := bytes.Clone(blob[0])
		unknownKey[2] ^= 1
		res, err := c.Decrypt(cx, "p", "c", nil, []byte{9, 9, 9}, blob[0][:20], tampered, unknownKey, blob[0])
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 4; i++ {
			wantCode(t, res[i].Err, codes.InvalidArgument, fmt.Sprintf("items[%d].blob", i))
		}
		wantCode(t, res[4].Err, codes.NotFound, "items[4].blob")
		if res[5].Err != nil || res[5].Value != "hello" {
			t.Fatalf("good blob in a mixed batch: %+v", res[5])
		}
	})
	t.Run("erase", func(t *testing.T) {
		_, err := c.EraseSubject(cx, "")
		wantCode(t, err, codes.InvalidArgument, "subject_id")
		_, err = c.EraseSubject(cx, "nobody")
		wantCode(t, err, codes.NotFound, "subject_id")
	})
}

// TestConcurrentDeterministic: racing first uses of a subject and a value
// converge on one key and one token.
func TestConcurrentDeterministic(t *testing.T) { withEachKEK(t, testConcurrentDeterministic) }

func testConcurrentDeterministic(t *testing.T, e *env) {
	_, c := e.start(t)
	cx := ctx(t)
	const n = 16
	got := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			toks, err := c.Tokenize(cx, "racer", client.Field{Kind: "ssn", Value: "078-05-1120", Deterministic: true})
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = toks[0]
		}()
	}
	wg.Wait()
	for _, g := range got[1:] {
		if g != got[0] {
			t.Fatalf("deterministic tokens diverged under concurrency: %v", got)
		}
	}
	r, err := c.EraseSubject(cx, "racer")
	if err != nil || r.Records != 1 || r.Lookups != 1 {
		t.Fatalf("erase after race: %+v %v", r, err)
	}
}

// TestHealthAndReflection: grpcurl-style tooling works out of the box.
func TestHealth(t *testing.T) {
	e := newEnv(t)
	a, _ := e.start(t)
	conn, err := client.Dial(a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn
	hc := healthpb.NewHealthClient(dialRaw(t, a.Addr()))
	for _, svc := range []string{"", "tokenvault.v1.TokenVault"} {
		resp, err := hc.Check(ctx(t), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health(%q) = %v, %v", svc, resp, err)
		}
	}
}

// TestNoSecretsInLogs runs a scenario with successes and failures and
// searches the server's debug-level log for every value and token.
func TestNoSecretsInLogs(t *testing.T) { withEachKEK(t, testNoSecretsInLogs) }

func testNoSecretsInLogs(t *testing.T, e *env) {
	_, c := e.start(t)
	cx := ctx(t)
	var secrets []string
	for _, s := range samples {
		toks, err := c.Tokenize(cx, "leaky", client.Field{Kind: s.kind, Value: s.value})
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, normalized(t, s.kind, s.value), toks[0])
	}
	c.Tokenize(cx, "leaky", client.Field{Kind: "pan", Value: "4000-0000-0000-000x"})
	c.Detokenize(cx, "audit", append(secrets[1:2], "4000001234560002")...)
	blob, _ := c.Encrypt(cx, "leaky", "c", []byte("very secret note"))
	c.Decrypt(cx, "p", "wrong", blob...)
	c.EraseSubject(cx, "leaky")
	c.Detokenize(cx, "audit", secrets[1])
	secrets = append(secrets, "very secret note", "4000-0000-0000-000x", "4000001234560002")

	logs := e.logs.Bytes()
	if len(logs) == 0 {
		t.Fatal("no logs captured")
	}
	for _, s := range secrets {
		for _, part := range strings.Split(s, "\n") {
			if len(part) >= 6 && bytes.Contains(logs, []byte(part)) {
				t.Errorf("server log contains a value or token")
			}
		}
	}
}

// TestRequestID: every response carries an x-request-id header: the
// caller's own id if it sent a valid one, a generated one otherwise; the
// server's log line for a failed call names it.
func TestRequestID(t *testing.T) {
	e := newEnv(t)
	a, _ := e.start(t)
	tv := pb.NewTokenVaultClient(dialRaw(t, a.Addr()))
	for _, tc := range []struct {
		name, sent string
		echoed     bool
	}{
		{"caller's id", "order-1234.retry-2", true},
		{"none", "", false},
		{"too long", strings.Repeat("a", 65), false},
		{"with spaces", "id with spaces", false}, // printable, but not logged as is
	} {
		t.Run(tc.name, func(t *testing.T) {
			cx := ctx(t)
			if tc.sent != "" {
				cx = metadata.AppendToOutgoingContext(cx, "x-request-id", tc.sent)
			}
			var ok, failed metadata.MD
			if _, err := tv.Tokenize(cx, &pb.TokenizeRequest{SubjectId: "rid", Fields: []*pb.Field{{Kind: pb.Kind_KIND_PAN, Value: "4111111111111111"}}}, grpc.Header(&ok)); err != nil {
				t.Fatal(err)
			}
			_, err := tv.Tokenize(cx, &pb.TokenizeRequest{SubjectId: "rid", Fields: []*pb.Field{{Value: "no kind"}}}, grpc.Header(&failed))
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("tokenize without a kind: %v", err)
			}
			for _, md := range []metadata.MD{ok, failed} {
				ids := md.Get("x-request-id")
				if len(ids) != 1 || ids[0] == "" {
					t.Fatalf("x-request-id header = %q", ids)
				}
				if tc.echoed != (ids[0] == tc.sent) {
					t.Fatalf("sent %q, got back %q", tc.sent, ids[0])
				}
			}
			if id := failed.Get("x-request-id")[0]; !bytes.Contains(e.logs.Bytes(), []byte("request_id="+id)) {
				t.Fatalf("no log line names request %s", id)
			}
		})
	}
}
