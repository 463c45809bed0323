package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/internal/app"
	"github.com/tokenvault/tokenvault/internal/audit"
	"github.com/tokenvault/tokenvault/internal/config"
	"github.com/tokenvault/tokenvault/internal/testpki"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// Security review, issue 19: deterministic tokenize is a permission of its
// own (item 2), decrypt and encrypt can be limited to blob contexts (item
// 10), and tokenize is rate-limited per identity (items 2 and 12).

const limitsPolicy = `version: 1
identities:
  - uri: spiffe://test.example/plain
    roles: [plain]
  - uri: spiffe://test.example/joiner
    roles: [joiner]
  - uri: spiffe://test.example/ssn-lookup
    roles: [ssn-lookup]
  - uri: spiffe://test.example/masker
    roles: [masker]
  - uri: spiffe://test.example/writer
    roles: [writer]
  - uri: spiffe://test.example/shipper
    roles: [shipper]
  - uri: spiffe://test.example/auditor
    roles: [auditor]
roles:
  plain:
    - operations: [tokenize]
  joiner:
    - operations: [tokenize]
    - operations: [tokenize-deterministic]
      kinds: [email]
  ssn-lookup:
    - operations: [tokenize-deterministic]
      kinds: [ssn]
  masker:
    - operations: [mask]
  writer:
    - operations: [encrypt]
  shipper:
    - operations: [encrypt]
      contexts: [orders.address]
    - operations: [decrypt]
      contexts: [orders.address, ""]
      purposes: [shipping]
  auditor:
    - operations: [decrypt]
      purposes: ["*"]
`

var limitsIdentities = []string{"plain", "joiner", "ssn-lookup", "masker", "writer", "shipper", "auditor"}

// limitsEnv is a TLS server with limitsPolicy and a client per identity.
type limitsEnv struct {
	*secureEnv
	clients map[string]*client.Client
}

func newLimitsEnv(t *testing.T, limits config.LimitsConfig) *limitsEnv {
	t.Helper()
	s := newSecureEnv(t)
	if err := os.WriteFile(s.policyFile, []byte(limitsPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	s.cfg.Limits = limits
	s.start(t)
	e := &limitsEnv{secureEnv: s, clients: map[string]*client.Client{}}
	for _, who := range limitsIdentities {
		c, k := s.pki.Issue(t, who, testpki.Leaf{URIs: []string{"spiffe://test.example/" + who}})
		e.clients[who] = dialTLS(t, s.app.Addr(), s.pki.CAFile, c, k)
	}
	return e
}

// auditEntries reads the audit log as it is now (an admitted call's entry
// is synced before the call is answered; a refusal's only by Stop).
func auditEntries(t *testing.T, path string) []audit.Entry {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Entry
	for _, ln := range bytes.SplitAfter(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		e, err := audit.ParseLine(ln)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e.Expanded()) // as the guard made it
	}
	return out
}

func findEntries(entries []audit.Entry, match func(audit.Entry) bool) []audit.Entry {
	var out []audit.Entry
	for _, e := range entries {
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}

func wantRefused(t *testing.T, err error, code codes.Code, parts ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got %v, want %v", err, code)
	}
	// Every refusal carries a reason the client maps to a typed error.
	var reason string
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reason = info.GetReason()
		}
	}
	var ce *client.Error
	if errors.As(err, &ce) {
		reason = ce.Reason
	}
	if reason == "" {
		t.Fatalf("refusal %v carries no ErrorInfo reason", err)
	}
	if code == codes.ResourceExhausted && (reason != "RATE_LIMITED" || ce != nil && !errors.Is(err, client.ErrRateLimited)) {
		t.Fatalf("rate-limit refusal %v (reason %q) is not client.ErrRateLimited", err, reason)
	}
	for _, p := range parts {
		if !strings.Contains(status.Convert(err).Message(), p) {
			t.Fatalf("%q does not say %q", status.Convert(err).Message(), p)
		}
	}
}

// TestDeterministicTokenizePermission: role × mode × kind against a real
// TLS server. Plain tokenize no longer gives deterministic mode, so a
// tokenize-only caller holding a deterministic token cannot test guesses
// of its value; refused guesses store nothing and are audited.
func TestDeterministicTokenizePermission(t *testing.T) {
	e := newLimitsEnv(t, config.LimitsConfig{})
	c := ctx(t)
	values := map[string]string{"email": "jane.doe@example.com", "ssn": "078-05-1120"}
	// Written out by hand, not derived from the policy engine under test.
	allowed := map[string]bool{
		"plain/random/email": true, "plain/random/ssn": true,
		"joiner/random/email": true, "joiner/random/ssn": true, "joiner/deterministic/email": true,
		"ssn-lookup/deterministic/ssn": true,
	}
	seen := map[string]bool{}
	for _, who := range []string{"plain", "joiner", "ssn-lookup", "masker"} {
		for _, det := range []bool{false, true} {
			for _, kind := range []string{"email", "ssn"} {
				mode := map[bool]string{false: "random", true: "deterministic"}[det]
				key := who + "/" + mode + "/" + kind
				seen[key] = true
				t.Run(key, func(t *testing.T) {
					f := client.Field{Kind: kind, Value: values[kind], Deterministic: det}
					toks, err := e.clients[who].Tokenize(c, "perm-"+who, f)
					switch {
					case allowed[key]:
						if err != nil || len(toks) != 1 || toks[0] == "" {
							t.Fatalf("allowed: %v %v", toks, err)
						}
						if det {
							again, err := e.clients[who].Tokenize(c, "perm-"+who, f)
							if err != nil || again[0] != toks[0] {
								t.Fatalf("deterministic token not stable: %v %v", again, err)
							}
						}
					case who == "masker":
						wantRefused(t, err, codes.PermissionDenied, "may not tokenize")
					case det:
						wantRefused(t, err, codes.PermissionDenied, "fields[0].options.mode", "may not tokenize-deterministic")
					default:
						wantRefused(t, err, codes.PermissionDenied, "fields[0].kind", "may not tokenize")
					}
				})
			}
		}
	}
	for k := range allowed {
		if !seen[k] {
			t.Errorf("allowed cell %s is not in the matrix", k)
		}
	}

	// The oracle of the review: ssn-lookup made a deterministic token for
	// the victim's SSN; plain, which may tokenize, guesses. Every guess is
	// refused, the right one too, and none stores a record.
	tok, err := e.clients["ssn-lookup"].Tokenize(c, "victim", client.Field{Kind: "ssn", Value: values["ssn"], Deterministic: true})
	if err != nil {
		t.Fatal(err)
	}
	created := value(scrape(t, e.app.MetricsAddr()), "tokenvault_tokens_created_total", nil)
	guesses := []client.Field{
		{Kind: "ssn", Value: "078-05-1119", Deterministic: true},
		{Kind: "ssn", Value: values["ssn"], Deterministic: true},
		{Kind: "ssn", Value: "078-05-1121", Deterministic: true},
	}
	for i, g := range guesses {
		toks, err := e.clients["plain"].Tokenize(c, "victim", g)
		wantRefused(t, err, codes.PermissionDenied, "fields[0].options.mode")
		if toks != nil || strings.Contains(err.Error(), tok[0]) {
			t.Fatalf("guess %d: %v %v", i, toks, err)
		}
	}
	if after := value(scrape(t, e.app.MetricsAddr()), "tokenvault_tokens_created_total", nil); after != created {
		t.Fatalf("refused guesses created %v tokens", after-created)
	}
	// Refusals are audited without waiting (they are queued, or counted
	// under a flood); Stop writes everything still queued.
	if err := e.app.Stop(); err != nil {
		t.Fatal(err)
	}
	victim := subjectHash(t, e.keysDir, "victim")
	refused := findEntries(auditEntries(t, e.app.AuditLogPath()), func(x audit.Entry) bool {
		return x.Caller == "spiffe://test.example/plain" && x.SubjectHash == victim && x.Op == "tokenize"
	})
	if len(refused) != len(guesses) {
		t.Fatalf("%d audit entries for the refused guesses, want %d: %+v", len(refused), len(guesses), refused)
	}
	for _, x := range refused {
		if x.Outcome != "PermissionDenied" || !strings.Contains(x.Reason, "tokenize-deterministic") {
			t.Fatalf("audit entry %+v", x)
		}
	}
}

// TestBlobContexts: decrypt limited to contexts is checked per item (the
// rest of the batch is served), encrypt refuses the call naming the item.
func TestBlobContexts(t *testing.T) {
	e := newLimitsEnv(t, config.LimitsConfig{})
	c := ctx(t)
	plain := map[string]string{"orders.address": "1 Main Street", "billing.note": "pays late", "": "no context"}
	blobs := map[string][]byte{}
	for bctx, p := range plain {
		b, err := e.clients["writer"].Encrypt(c, "ctx-subject", bctx, []byte(p))
		if err != nil {
			t.Fatal(err)
		}
		blobs[bctx] = b[0]
	}
	resp, err := e.clients["shipper"].Raw().Decrypt(c, &pb.DecryptRequest{Purpose: "shipping", Items: []*pb.DecryptItem{
		{Blob: blobs["orders.address"], Context: "orders.address"},
		{Blob: blobs["billing.note"], Context: "billing.note"},
		{Blob: blobs[""], Context: ""},
		// Naming an allowed context for another context's blob does not
		// get it opened: the context is the blob's associated data.
		{Blob: blobs["billing.note"], Context: "orders.address"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	res := resp.GetResults()
	want := []codes.Code{codes.OK, codes.PermissionDenied, codes.OK, codes.InvalidArgument}
	for i, w := range want {
		if got := codes.Code(res[i].GetStatus().GetCode()); got != w {
			t.Fatalf("item %d: %v (%s), want %v", i, got, res[i].GetStatus().GetMessage(), w)
		}
		if w != codes.OK && (res[i].GetPlaintext() != nil || res[i].GetSubjectId() != "") {
			t.Fatalf("refused item %d carries %+v", i, res[i])
		}
	}
	if string(res[0].GetPlaintext()) != plain["orders.address"] || string(res[2].GetPlaintext()) != plain[""] {
		t.Fatalf("allowed items: %+v", res)
	}
	if m := res[1].GetStatus().GetMessage(); !strings.Contains(m, "items[1].context") || strings.Contains(m, plain["billing.note"]) {
		t.Fatalf("denied item's message %q", m)
	}
	// A permission without contexts covers every context.
	if r, err := e.clients["auditor"].Decrypt(c, "review", "billing.note", blobs["billing.note"]); err != nil || r[0].Err != nil || r[0].Value != plain["billing.note"] {
		t.Fatalf("auditor: %+v %v", r, err)
	}
	// Encrypt knows its contexts up front: the call is refused, naming the
	// item, and nothing is encrypted.
	if b, err := e.clients["shipper"].Encrypt(c, "ctx-subject", "orders.address", []byte("2 Side Road")); err != nil || len(b) != 1 {
		t.Fatalf("allowed encrypt: %v", err)
	}
	eresp, err := e.clients["shipper"].Raw().Encrypt(c, &pb.EncryptRequest{SubjectId: "ctx-subject", Items: []*pb.EncryptItem{
		{Plaintext: []byte("2 Side Road"), Context: "orders.address"},
		{Plaintext: []byte("owes money"), Context: "billing.note"},
	}})
	wantRefused(t, err, codes.PermissionDenied, "items[1].context", `may not encrypt in context "billing.note"`)
	if eresp != nil {
		t.Fatalf("refused encrypt answered %+v", eresp)
	}

	// The decrypt is audited item by item, the denied one as such.
	decs := findEntries(auditEntries(t, e.app.AuditLogPath()), func(x audit.Entry) bool {
		return x.Op == "decrypt" && x.Caller == "spiffe://test.example/shipper"
	})
	if len(decs) != 1 || len(decs[0].Items) != 4 {
		t.Fatalf("decrypt audit entries %+v", decs)
	}
	// Every item whose blob was opened far enough to find its key names
	// the subject (hashed): the decrypted ones, and the one in the wrong
	// context; the denied one was refused before its blob was read.
	for i, w := range want {
		it := decs[0].Items[i]
		if it.Outcome != w.String() || (w != codes.PermissionDenied) != (it.SubjectHash == subjectHash(t, e.keysDir, "ctx-subject")) || it.Subject != "" {
			t.Fatalf("audit item %d: %+v, want outcome %v", i, it, w)
		}
	}
	if it := decs[0].Items[1]; it.Context != "billing.note" {
		t.Fatalf("denied item's context not audited: %+v", it)
	}
}

// TestTokenizeRateLimits: per-identity buckets for all tokenized fields
// and for deterministic ones; refusals are RESOURCE_EXHAUSTED naming the
// field, store nothing, are audited, and survive a policy reload. Rates
// are so low (one field per 1,000 s) that the buckets do not refill during
// the test: nothing here depends on timing.
func TestTokenizeRateLimits(t *testing.T) {
	slow := func(burst int) config.RateConfig { return config.RateConfig{FieldsPerSecond: 0.001, Burst: burst} }
	e := newLimitsEnv(t, config.LimitsConfig{Tokenize: slow(30), DeterministicTokenize: slow(5)})
	c := ctx(t)
	joiner, plain := e.clients["joiner"], e.clients["plain"]
	emails := func(n int, det bool) []client.Field {
		out := make([]client.Field, n)
		for i := range out {
			out[i] = client.Field{Kind: "email", Value: fmt.Sprintf("user%d@example.com", i), Deterministic: det}
		}
		return out
	}
	if _, err := joiner.Tokenize(c, "rl", emails(5, true)...); err != nil {
		t.Fatal(err)
	}
	created := value(scrape(t, e.app.MetricsAddr()), "tokenvault_tokens_created_total", nil)
	// The deterministic bucket is empty: the call is refused as a whole,
	// naming its first deterministic field.
	toks, err := joiner.Tokenize(c, "rl", client.Field{Kind: "email", Value: "random@example.com"}, client.Field{Kind: "email", Value: "guess@example.com", Deterministic: true})
	wantRefused(t, err, codes.ResourceExhausted, "fields[1].options.mode", "rate limit", "spiffe://test.example/joiner", "deterministic fields a second", "retry in")
	if toks != nil {
		t.Fatalf("refused call answered %v", toks)
	}
	if after := value(scrape(t, e.app.MetricsAddr()), "tokenvault_tokens_created_total", nil); after != created {
		t.Fatalf("a refused call created %v tokens", after-created)
	}
	// Random fields still pass, up to the tokenize bucket (30 - 5 used).
	if _, err := joiner.Tokenize(c, "rl", emails(25, false)...); err != nil {
		t.Fatalf("random fields after the deterministic limit: %v", err)
	}
	_, err = joiner.Tokenize(c, "rl", emails(1, false)...)
	wantRefused(t, err, codes.ResourceExhausted, "fields:", "rate limit", "30 at once")
	// Another identity has its own buckets; a call larger than a burst is
	// told it can never pass.
	if _, err := plain.Tokenize(c, "rl", emails(30, false)...); err != nil {
		t.Fatalf("another identity: %v", err)
	}
	_, err = e.clients["ssn-lookup"].Tokenize(c, "rl", func() []client.Field {
		f := make([]client.Field, 6)
		for i := range f {
			f[i] = client.Field{Kind: "ssn", Value: fmt.Sprintf("078-05-%04d", 1120+i), Deterministic: true}
		}
		return f
	}()...)
	wantRefused(t, err, codes.ResourceExhausted, "fields[0].options.mode", "6 deterministic fields in one call", "send smaller batches")
	// A policy reload does not refill the buckets.
	if err := e.app.Reload(); err != nil {
		t.Fatal(err)
	}
	_, err = joiner.Tokenize(c, "rl", emails(1, false)...)
	wantRefused(t, err, codes.ResourceExhausted, "fields:")

	// Refusals are audited without waiting (they are queued, or counted
	// under a flood); Stop writes everything still queued.
	if err := e.app.Stop(); err != nil {
		t.Fatal(err)
	}
	limited := findEntries(auditEntries(t, e.app.AuditLogPath()), func(x audit.Entry) bool {
		return x.Op == "tokenize" && x.Outcome == "ResourceExhausted"
	})
	callers := map[string]int{}
	for _, x := range limited {
		if !strings.Contains(x.Reason, "rate limit") || x.SubjectHash != subjectHash(t, e.keysDir, "rl") || x.Subject != "" {
			t.Fatalf("audit entry %+v", x)
		}
		callers[x.Caller]++
	}
	if callers["spiffe://test.example/joiner"] != 3 || callers["spiffe://test.example/ssn-lookup"] != 1 || len(callers) != 2 {
		t.Fatalf("rate-limit refusals audited per caller: %v", callers)
	}
}

// TestDevModeIsNotLimited: without a policy there are no identities to
// tell apart, so the limits do not apply (dev mode is loopback only).
func TestDevModeIsNotLimited(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.Limits = config.LimitsConfig{Tokenize: config.RateConfig{FieldsPerSecond: 0.001, Burst: 1}, DeterministicTokenize: config.RateConfig{FieldsPerSecond: 0.001, Burst: 1}}
	a, err := app.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Stop() })
	cl, err := client.Dial(a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	c := ctx(t)
	for i := range 3 {
		if _, err := cl.Tokenize(c, "dev", client.Field{Kind: "email", Value: "a@example.com", Deterministic: true}, client.Field{Kind: "email", Value: "b@example.com"}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
}
