package e2e

import (
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/errinfo"
	"github.com/tokenvault/tokenvault/internal/config"
	"github.com/tokenvault/tokenvault/internal/testpki"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// One error surface (issue 12): every refusal reaches the client with its
// code, an ErrorInfo reason (package errinfo) and, where a field is at
// fault, a BadRequest naming it, and the Go client turns it into the typed
// error. That includes the refusals the guard makes in its tap handle,
// before the request is read (authentication, unknown methods): grpc-go
// (1.85; 1.72 did not) sends that early abort with the status's details.

// refusal is one refused call and what the client must learn of it.
type refusal struct {
	name   string
	call   func() error // returns the client's error (client.AsError for raw stubs)
	code   codes.Code
	reason string
	field  string
	typed  error
	says   string // part of the message
}

func checkRefusals(t *testing.T, cases []refusal) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var ce *client.Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v (%T), want a *client.Error", err, err)
			}
			if ce.Code != tc.code || ce.Reason != tc.reason || ce.Field != tc.field || !errors.Is(err, tc.typed) {
				t.Fatalf("got code %v reason %q field %q (%v), want %v %q %q %v", ce.Code, ce.Reason, ce.Field, err, tc.code, tc.reason, tc.field, tc.typed)
			}
			if !strings.Contains(ce.Message, tc.says) {
				t.Fatalf("message %q does not say %q", ce.Message, tc.says)
			}
		})
	}
}

// errorsPolicy is testPolicy plus an encrypt limited to one context and a
// deterministic tokenize, whose refusals testPolicy cannot show.
var errorsPolicy = strings.NewReplacer(
	"identities:\n", `identities:
  - uri: spiffe://test.example/shipper
    roles: [shipper]
  - uri: spiffe://test.example/joiner
    roles: [joiner]
`,
	"roles:\n", `roles:
  shipper:
    - operations: [encrypt]
      contexts: [orders.address]
  joiner:
    - operations: [tokenize]
    - operations: [tokenize-deterministic]
      kinds: [email]
`).Replace(testPolicy)

// TestEveryGuardRefusal: each way the guard refuses a call, and the
// refusals of the rights and admin handlers, against a TLS server with a
// policy and tokenize limits.
func TestEveryGuardRefusal(t *testing.T) {
	s := newSecureEnv(t)
	if err := os.WriteFile(s.policyFile, []byte(errorsPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	slow := func(burst int) config.RateConfig { return config.RateConfig{FieldsPerSecond: 0.001, Burst: burst} }
	s.cfg.Limits = config.LimitsConfig{Tokenize: slow(3), DeterministicTokenize: slow(1)}
	s.start(t)
	c := ctx(t)
	as := func(who string) *client.Client {
		if _, ok := s.certs[who]; !ok {
			cert, key := s.pki.Issue(t, who, testpki.Leaf{URIs: []string{"spiffe://test.example/" + who}})
			s.certs[who] = [2]string{cert, key}
		}
		return s.as(t, who)
	}
	tok, err := as("setup").Tokenize(c, "errors", client.Field{Kind: "pan", Value: authzValues["pan"]})
	if err != nil {
		t.Fatal(err)
	}
	addr := s.app.Addr()
	anon := dialTLS(t, addr, s.pki.CAFile, "", "")
	raw := pb.NewTokenVaultClient(dialTLSRaw(t, addr, s.pki.CAFile))
	emails := func(n int, det bool) []client.Field {
		f := make([]client.Field, n)
		for i := range f {
			f[i] = client.Field{Kind: "email", Value: "user" + string(rune('a'+i)) + "@example.com", Deterministic: det}
		}
		return f
	}
	tokenize := func(who string, fields ...client.Field) func() error {
		return func() error { _, err := as(who).Tokenize(c, "errors", fields...); return err }
	}
	backup := func(who string, recipients ...string) func() error {
		return func() error {
			st, err := as(who).BackupAdmin().Backup(c, &pb.BackupRequest{Recipients: recipients})
			if err == nil {
				_, err = st.Recv() // the refusal ends the stream
			}
			return client.AsError(err)
		}
	}
	checkRefusals(t, []refusal{
		// Authentication, in the tap handle: details too.
		{"no credentials", func() error { _, err := anon.Mask(c, tok...); return err },
			codes.Unauthenticated, errinfo.Unauthenticated, "", client.ErrUnauthenticated, "no client certificate or API key"},
		{"unknown API key", func() error {
			_, err := dialTLS(t, addr, s.pki.CAFile, "", "", client.WithAPIKey(s.apiKey+"x")).Mask(c, tok...)
			return err
		}, codes.Unauthenticated, errinfo.Unauthenticated, "", client.ErrUnauthenticated, "unknown API key"},
		{"certificate and API key", func() error {
			f := s.certs["payments"]
			_, err := dialTLS(t, addr, s.pki.CAFile, f[0], f[1], client.WithAPIKey(s.apiKey)).Detokenize(c, "payment", tok...)
			return err
		}, codes.Unauthenticated, errinfo.Unauthenticated, "", client.ErrUnauthenticated, "use one"},
		{"not a bearer header", func() error {
			_, err := raw.Mask(metadata.AppendToOutgoingContext(c, "authorization", "Basic eDp5"), &pb.MaskRequest{Tokens: tok})
			return client.AsError(err)
		}, codes.Unauthenticated, errinfo.Unauthenticated, "", client.ErrUnauthenticated, `not "Bearer <API key>"`},
		{"two authorization headers", func() error {
			md := metadata.AppendToOutgoingContext(c, "authorization", "Bearer a", "authorization", "Bearer b")
			_, err := raw.Mask(md, &pb.MaskRequest{Tokens: tok})
			return client.AsError(err)
		}, codes.Unauthenticated, errinfo.Unauthenticated, "", client.ErrUnauthenticated, "more than one authorization header"},
		{"unknown method", func() error {
			err := dialTLSRaw(t, addr, s.pki.CAFile).Invoke(c, "/tokenvault.v1.TokenVault/NoSuchMethod", &pb.MaskRequest{}, new(pb.MaskResponse))
			return client.AsError(err)
		}, codes.PermissionDenied, errinfo.PermissionDenied, "", client.ErrPermissionDenied, "not a tokenvault method the guard knows"},

		// Authorization: the request was read, so every detail is there.
		{"no role", func() error { _, err := as("nobody").Mask(c, tok...); return err },
			codes.PermissionDenied, errinfo.PermissionDenied, "", client.ErrPermissionDenied, "no role"},
		{"operation not allowed", func() error { _, err := as("orders").Decrypt(c, "shipping", "orders.note", []byte("x")); return err },
			codes.PermissionDenied, errinfo.PermissionDenied, "", client.ErrPermissionDenied, "decrypt"},
		{"purpose not allowed", func() error { _, err := as("payments").Detokenize(c, "marketing", tok...); return err },
			codes.PermissionDenied, errinfo.PermissionDenied, "", client.ErrPermissionDenied, "marketing"},
		{"detokenize without a purpose", func() error { _, err := as("payments").Detokenize(c, "", tok...); return err },
			codes.InvalidArgument, errinfo.InvalidArgument, "purpose", client.ErrInvalidArgument, "purpose: required"},
		{"decrypt without a purpose", func() error { _, err := as("fulfilment").Decrypt(c, "", "orders.note", []byte("x")); return err },
			codes.InvalidArgument, errinfo.InvalidArgument, "purpose", client.ErrInvalidArgument, "purpose: required"},
		{"export without a purpose", func() error { _, err := as("privacy-ops").ExportSubject(c, "errors", ""); return err },
			codes.InvalidArgument, errinfo.InvalidArgument, "purpose", client.ErrInvalidArgument, "purpose: required"},
		{"export for another purpose", func() error { _, err := as("privacy-ops").ExportSubject(c, "errors", "marketing"); return err },
			codes.PermissionDenied, errinfo.PermissionDenied, "", client.ErrPermissionDenied, "marketing"},
		{"kind not allowed", tokenize("orders", client.Field{Kind: "pan", Value: authzValues["pan"]}, client.Field{Kind: "phone", Value: authzValues["phone"]}),
			codes.PermissionDenied, errinfo.PermissionDenied, "fields[1].kind", client.ErrPermissionDenied, "fields[1].kind: permission denied"},
		{"deterministic mode not allowed", tokenize("orders", client.Field{Kind: "email", Value: authzValues["email"], Deterministic: true}),
			codes.PermissionDenied, errinfo.PermissionDenied, "fields[0].options.mode", client.ErrPermissionDenied, "fields[0].options.mode: permission denied"},
		{"context not allowed", func() error {
			_, err := as("shipper").Encrypt(c, "errors", "billing.note", []byte("owes money"))
			return err
		}, codes.PermissionDenied, errinfo.PermissionDenied, "items[0].context", client.ErrPermissionDenied, "items[0].context: permission denied"},
		{"rectify not allowed", func() error { _, err := as("orders").Rectify(c, tok[0], authzValues["pan"]); return err },
			codes.PermissionDenied, errinfo.PermissionDenied, "", client.ErrPermissionDenied, "rectify"},
		{"restrict not allowed", func() error { _, err := as("orders").Restrict(c, "errors"); return err },
			codes.PermissionDenied, errinfo.PermissionDenied, "", client.ErrPermissionDenied, "restrict"},
		{"unrestrict not allowed", func() error { return as("orders").Unrestrict(c, "errors") },
			codes.PermissionDenied, errinfo.PermissionDenied, "", client.ErrPermissionDenied, "restrict"},
		{"erase not allowed", func() error { _, err := as("orders").EraseSubject(c, "errors"); return err },
			codes.PermissionDenied, errinfo.PermissionDenied, "", client.ErrPermissionDenied, "erase"},
		{"admin not allowed", func() error {
			_, err := as("orders").KeyAdmin().GetKekStatus(c, &pb.GetKekStatusRequest{})
			return client.AsError(err)
		}, codes.PermissionDenied, errinfo.PermissionDenied, "", client.ErrPermissionDenied, "admin"},
		{"backup not allowed", backup("orders", "age1x"), codes.PermissionDenied, errinfo.PermissionDenied, "", client.ErrPermissionDenied, "admin"},

		// Per-identity limits (burst 3 fields, 1 deterministic).
		{"more fields than a burst", tokenize("joiner", emails(4, false)...),
			codes.ResourceExhausted, errinfo.RateLimited, "fields", client.ErrRateLimited, "send smaller batches"},
		{"more deterministic fields than a burst", tokenize("joiner", emails(2, true)...),
			codes.ResourceExhausted, errinfo.RateLimited, "fields[0].options.mode", client.ErrRateLimited, "send smaller batches"},
		{"deterministic bucket empty", func() error {
			if err := tokenize("joiner", emails(1, true)...)(); err != nil {
				t.Fatalf("first deterministic field: %v", err)
			}
			return tokenize("joiner", emails(1, false)[0], emails(1, true)[0])()
		}, codes.ResourceExhausted, errinfo.RateLimited, "fields[1].options.mode", client.ErrRateLimited, "retry in"},
		{"tokenize bucket empty", tokenize("joiner", emails(3, false)...),
			codes.ResourceExhausted, errinfo.RateLimited, "fields", client.ErrRateLimited, "retry in"},

		// The handlers' own refusals.
		{"backup to a bad recipient", backup("key-admin", "age1x"), codes.InvalidArgument, errinfo.InvalidArgument, "recipients[0]", client.ErrInvalidArgument, "not an age public key"},
		{"backup without recipients", backup("key-admin"), codes.InvalidArgument, errinfo.InvalidArgument, "recipients", client.ErrInvalidArgument, "at least one age recipient"},
	})

	// An item refused within an admitted call carries the reason too.
	emailTok, err := as("setup").Tokenize(c, "errors", client.Field{Kind: "email", Value: authzValues["email"]})
	if err != nil {
		t.Fatal(err)
	}
	res, err := as("payments").Detokenize(c, "payment", emailTok...)
	var ce *client.Error
	if err != nil || !errors.As(res[0].Err, &ce) || ce.Reason != errinfo.PermissionDenied || !errors.Is(res[0].Err, client.ErrPermissionDenied) {
		t.Fatalf("denied item: %v %+v", err, res)
	}
}

// TestAuditUnavailableRefusals: with the audit log on a full disk, each
// place that withholds a call carries the AUDIT_UNAVAILABLE reason: the
// write after a reveal, after another audited call, before a stream sends
// anything, and the refusal of calls once the log is known to be broken.
func TestAuditUnavailableRefusals(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /dev/full")
	}
	start := func(t *testing.T) *client.Client {
		e := newEnv(t)
		cfg := e.config()
		cfg.Auth.Audit.Path = "/dev/full"
		a, err := startApp(t, cfg)
		if err != nil {
			t.Fatal(err)
		}
		// No retries: each call's own answer is checked.
		cl, err := client.Dial(a.Addr(), client.WithRetry(1, time.Millisecond, time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		return cl
	}
	c := ctx(t)
	reveals := start(t)
	tok, err := reveals.Tokenize(c, "s1", client.Field{Kind: "pan", Value: authzValues["pan"]})
	if err != nil {
		t.Fatal(err)
	}
	detokenize := func() error { _, err := reveals.Detokenize(c, "payment", tok...); return err }
	checkRefusals(t, []refusal{
		{"reveal, entry not written", detokenize,
			codes.Unavailable, errinfo.AuditUnavailable, "", client.ErrUnavailable, "audit log unavailable; nothing was revealed"},
		{"reveal, log known broken", detokenize,
			codes.Unavailable, errinfo.AuditUnavailable, "", client.ErrUnavailable, "audit log unavailable; the call was not carried out"},
		{"admin call, entry not written", func() error {
			_, err := start(t).KeyAdmin().GetKekStatus(c, &pb.GetKekStatusRequest{})
			return client.AsError(err)
		}, codes.Unavailable, errinfo.AuditUnavailable, "", client.ErrUnavailable, "audit log unavailable; the operation may have taken effect but its result is withheld"},
		{"stream, nothing sent", func() error { _, err := start(t).ExportSubject(c, "s1", "dsar"); return err },
			codes.Unavailable, errinfo.AuditUnavailable, "", client.ErrUnavailable, "audit log unavailable; nothing was sent"},
	})
}
