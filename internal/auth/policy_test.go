package auth_test

import (
	"context"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/tokenvault/tokenvault/internal/auth"
	"github.com/tokenvault/tokenvault/vault/format"
)

func mtls(uris ...string) auth.Identity {
	return auth.Identity{Name: uris[0], Method: auth.MethodMTLS, URIs: uris}
}

// TestExamplePolicy checks the shipped example grants what README says.
func TestExamplePolicy(t *testing.T) {
	data, err := os.ReadFile("../../deploy/policy/tokenvault-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := auth.ParsePolicy(data)
	if err != nil {
		t.Fatal(err)
	}
	orders := mtls("spiffe://example.org/ns/shop/sa/orders")
	payments := mtls("spiffe://example.org/ns/shop/sa/payments")
	support := auth.Identity{Name: "support-dashboard", Method: auth.MethodAPIKey}
	privacy := auth.Identity{Name: "privacy-ops.internal.example.org", Method: auth.MethodMTLS, DNSNames: []string{"privacy-ops.internal.example.org"}}
	fulfilment := mtls("spiffe://example.org/ns/shop/sa/fulfilment")
	stranger := mtls("spiffe://example.org/ns/shop/sa/unknown")
	cases := []struct {
		id      auth.Identity
		op      auth.Operation
		kind    format.Kind
		purpose string
		ok      bool
	}{
		{orders, auth.OpTokenize, format.PAN, "", true},
		{orders, auth.OpTokenizeDeterministic, format.Email, "", true},
		{orders, auth.OpTokenizeDeterministic, format.PAN, "", false},
		{payments, auth.OpTokenize, auth.AnyKind, "", false},
		{orders, auth.OpMask, format.Email, "", true},
		{orders, auth.OpDetokenize, format.PAN, "payment", false},
		{payments, auth.OpDetokenize, format.PAN, "payment", true},
		{payments, auth.OpDetokenize, auth.AnyKind, "payment", true},
		{payments, auth.OpDetokenize, format.Email, "payment", false},
		{payments, auth.OpDetokenize, format.PAN, "marketing", false},
		{payments, auth.OpMask, format.PAN, "", false},
		{support, auth.OpMask, format.SSN, "", true},
		{support, auth.OpDetokenize, format.SSN, "support", false},
		{privacy, auth.OpExport, 0, "dsar", true},
		{privacy, auth.OpExport, 0, "curiosity", false},
		{privacy, auth.OpErase, 0, "", true},
		{privacy, auth.OpRestrict, 0, "", true},
		{privacy, auth.OpRectify, 0, "", true},
		{orders, auth.OpRectify, 0, "", false},
		{privacy, auth.OpDetokenize, format.PAN, "dsar", false},
		{stranger, auth.OpMask, format.PAN, "", false},
		{auth.Identity{Method: auth.MethodNone}, auth.OpMask, format.PAN, "", false},
	}
	for _, c := range cases {
		err := p.Authorize(c.id, c.op, c.kind, c.purpose)
		if (err == nil) != c.ok || err != nil && !errors.Is(err, auth.ErrPermissionDenied) {
			t.Errorf("%s %s %v %q: got %v, want allowed=%v", c.id, c.op, c.kind, c.purpose, err, c.ok)
		}
	}
	for _, c := range []struct {
		id          auth.Identity
		op          auth.Operation
		ctx, reason string
		ok          bool
	}{
		{fulfilment, auth.OpEncrypt, "orders.shipping_address", "", true},
		{fulfilment, auth.OpDecrypt, "orders.shipping_address", "shipping", true},
		{fulfilment, auth.OpDecrypt, "orders.shipping_address", "marketing", false},
		{fulfilment, auth.OpDecrypt, "billing.note", "shipping", false},
		{fulfilment, auth.OpEncrypt, "billing.note", "", false},
		{orders, auth.OpEncrypt, "orders.shipping_address", "", false},
	} {
		err := p.AuthorizeContext(c.id, c.op, c.ctx, c.reason)
		if (err == nil) != c.ok || err != nil && !errors.Is(err, auth.ErrPermissionDenied) {
			t.Errorf("%s %s %q %q: got %v, want allowed=%v", c.id, c.op, c.ctx, c.reason, err, c.ok)
		}
	}
	if got := p.Roles(support); !reflect.DeepEqual(got, []string{"support-ui"}) {
		t.Errorf("roles %v", got)
	}
}

func TestParsePolicyErrors(t *testing.T) {
	const roles = "roles:\n  r:\n    - operations: [mask]\n"
	cases := []struct{ name, yaml, want string }{
		{"empty", "", "empty file"},
		{"version", "version: 2\n", "version: must be 1"},
		{"unknown key", "version: 1\nrole: {}\n", "field role not found"},
		{"misspelt purposes", "version: 1\nroles:\n  r:\n    - operations: [detokenize]\n      purpose: [x]\n", "field purpose not found"},
		{"unknown op", "version: 1\nroles:\n  r:\n    - operations: [mask, detokenise]\n", "roles.r[0].operations[1]: unknown operation \"detokenise\""},
		{"no ops", "version: 1\nroles:\n  r:\n    - kinds: [pan]\n", "roles.r[0].operations: must name at least one"},
		{"unknown kind", "version: 1\nroles:\n  r:\n    - operations: [mask]\n      kinds: [pan, pna]\n", "roles.r[0].kinds[1]: unknown kind \"pna\""},
		{"kinds on erase", "version: 1\nroles:\n  r:\n    - operations: [erase]\n      kinds: [pan]\n", "roles.r[0].kinds: kinds apply only"},
		{"kinds on decrypt", "version: 1\nroles:\n  r:\n    - operations: [decrypt]\n      kinds: [pan]\n      purposes: [x]\n", "roles.r[0].kinds: kinds apply only"},
		{"misspelt deterministic", "version: 1\nroles:\n  r:\n    - operations: [tokenize_deterministic]\n", "roles.r[0].operations[0]: unknown operation \"tokenize_deterministic\""},
		{"contexts on detokenize", "version: 1\nroles:\n  r:\n    - operations: [detokenize]\n      contexts: [a]\n      purposes: [x]\n", "roles.r[0].contexts: contexts apply only to encrypt and decrypt"},
		{"contexts on tokenize", "version: 1\nroles:\n  r:\n    - operations: [encrypt, tokenize]\n      contexts: [a]\n", "roles.r[0].contexts: contexts apply only to encrypt and decrypt"},
		{"misspelt contexts", "version: 1\nroles:\n  r:\n    - operations: [decrypt]\n      context: [a]\n      purposes: [x]\n", "field context not found"},
		{"context control char", "version: 1\nroles:\n  r:\n    - operations: [encrypt]\n      contexts: [a, \"b\\u0085c\"]\n", "roles.r[0].contexts[1]: contains a control character"},
		{"context too long", "version: 1\nroles:\n  r:\n    - operations: [encrypt]\n      contexts: [" + strings.Repeat("c", 257) + "]\n", "roles.r[0].contexts[0]: longer than 256 bytes"},
		{"reveal without purposes", "version: 1\nroles:\n  r:\n    - operations: [decrypt]\n", "roles.r[0].purposes: required for decrypt"},
		{"purposes on mask", "version: 1\nroles:\n  r:\n    - operations: [mask]\n      purposes: [x]\n", "roles.r[0].purposes: only reveal operations"},
		{"mixed reveal", "version: 1\nroles:\n  r:\n    - operations: [export, erase]\n      purposes: [x]\n", "roles.r[0].operations: reveal operations"},
		{"empty role", "version: 1\nroles:\n  r: []\n", "roles.r: no permissions"},
		{"two names", "version: 1\n" + roles + "identities:\n  - uri: a\n    dns: b\n    roles: [r]\n", "identities[0]: set exactly one"},
		{"no name", "version: 1\n" + roles + "identities:\n  - roles: [r]\n", "identities[0]: set exactly one"},
		{"unknown role", "version: 1\n" + roles + "identities:\n  - api_key: k\n    roles: [r, s]\n", "identities[0].roles[1]: unknown role \"s\""},
		{"no roles", "version: 1\n" + roles + "identities:\n  - api_key: k\n", "identities[0].roles: must name at least one role"},
		{"duplicate", "version: 1\n" + roles + "identities:\n  - api_key: k\n    roles: [r]\n  - api_key: k\n    roles: [r]\n", "identities[1]: same identity as identities[0]"},
		{"two documents", "version: 1\n---\nversion: 1\n", "more than one YAML document"},
		{"control char", "version: 1\nroles:\n  r:\n    - operations: [decrypt]\n      purposes: [\"a\\tb\"]\n", "roles.r[0].purposes[0]: contains a control character"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := auth.ParsePolicy([]byte(c.yaml))
			if !errors.Is(err, auth.ErrPolicy) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// TestParsePolicyAllErrors: every problem at once, as the configuration
// reports them; a role whose own entry failed is not also "unknown".
func TestParsePolicyAllErrors(t *testing.T) {
	_, err := auth.ParsePolicy([]byte("version: 2\nroles:\n  ops:\n    - operations: [detokenze]\n" +
		"  ok:\n    - operations: [mask]\n      kinds: [pna]\n" +
		"identities:\n  - api_key: k\n    roles: [ops, missing]\n  - api_key: k2\n"))
	want := []string{
		"version: must be 1",
		`roles.ops[0].operations[0]: unknown operation "detokenze"`,
		`roles.ok[0].kinds[0]: unknown kind "pna"`,
		`identities[0].roles[1]: unknown role "missing"`,
		"identities[1].roles: must name at least one role",
	}
	if !errors.Is(err, auth.ErrPolicy) {
		t.Fatalf("err = %v, want ErrPolicy", err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d problems reported, want %d:\n%v", len(lines), len(want), err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%v", w, err)
		}
	}
}

func TestAnyPurposeAndKinds(t *testing.T) {
	p, err := auth.ParsePolicy([]byte(`version: 1
identities:
  - uri: spiffe://x/a
    roles: [a, b]
roles:
  a:
    - operations: [detokenize]
      kinds: [email]
      purposes: ["*"]
  b:
    - operations: [detokenize]
      kinds: [pan]
      purposes: [payment]
`))
	if err != nil {
		t.Fatal(err)
	}
	id := mtls("spiffe://x/a")
	for _, c := range []struct {
		kind    format.Kind
		purpose string
		ok      bool
	}{
		{format.Email, "anything", true}, {format.PAN, "payment", true}, {format.PAN, "anything", false},
		{format.Phone, "payment", false}, {auth.AnyKind, "anything", true},
	} {
		if err := p.Authorize(id, auth.OpDetokenize, c.kind, c.purpose); (err == nil) != c.ok {
			t.Errorf("%v %q: %v", c.kind, c.purpose, err)
		}
	}
}

func TestAPIKeys(t *testing.T) {
	key, hash, err := auth.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key, auth.APIKeyPrefix) || len(key) < 40 || strings.Contains(hash, key) {
		t.Fatalf("key %q hash %q", key, hash)
	}
	_, other, _ := auth.NewAPIKey()
	keys, err := auth.NewAPIKeys([]auth.APIKey{{Name: "a", Hash: other}, {Name: "b", Hash: hash}})
	if err != nil {
		t.Fatal(err)
	}
	id, err := keys.Identify(key)
	if err != nil || id.Name != "b" || id.Method != auth.MethodAPIKey || id.String() != "api_key:b" {
		t.Fatalf("identify: %+v %v", id, err)
	}
	_, err = keys.Identify(key + "x")
	if !errors.Is(err, auth.ErrUnauthenticated) || strings.Contains(err.Error(), key) {
		t.Fatalf("unknown key: %v", err)
	}
	for _, c := range []struct {
		keys []auth.APIKey
		want string
	}{
		{[]auth.APIKey{{Name: "", Hash: hash}}, "[0].name: must not be empty"},
		{[]auth.APIKey{{Name: "a", Hash: hash}, {Name: "a", Hash: hash}}, "[1].name: \"a\" is already used by [0]"},
		{[]auth.APIKey{{Name: "a", Hash: "md5:00"}}, "[0].hash: must start with \"sha256:\""},
		{[]auth.APIKey{{Name: "a", Hash: "sha256:abc"}}, "[0].hash: must be sha256: followed by 64 hex digits"},
	} {
		if _, err := auth.NewAPIKeys(c.keys); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.keys, err, c.want)
		}
	}
}

func TestAccess(t *testing.T) {
	p, err := auth.ParsePolicy([]byte("version: 1\nidentities:\n  - api_key: k\n    roles: [r]\nroles:\n  r:\n    - operations: [export]\n      purposes: [dsar]\n"))
	if err != nil {
		t.Fatal(err)
	}
	id := auth.Identity{Name: "k", Method: auth.MethodAPIKey}
	ctx := auth.WithAccess(context.Background(), auth.NewAccess(id, p))
	a := auth.AccessFrom(ctx)
	if a.Allow(auth.OpExport, 0, "dsar") != nil || a.Allow(auth.OpExport, 0, "x") == nil || a.Allow(auth.OpErase, 0, "") == nil {
		t.Fatal("access does not follow the policy")
	}
	if auth.AccessFrom(context.Background()).Allow(auth.OpMask, 0, "") == nil {
		t.Fatal("no access in the context must allow nothing")
	}
	if auth.DevAccess(auth.Identity{Method: auth.MethodNone}).Allow(auth.OpErase, 0, "") != nil {
		t.Fatal("dev access must allow everything")
	}
}

// TestDeterministicIsItsOwnPermission: plain tokenize no longer allows
// deterministic mode (a value oracle for low-entropy kinds); the call-level
// check for Tokenize is met by either permission, each field by its own.
func TestDeterministicIsItsOwnPermission(t *testing.T) {
	p, err := auth.ParsePolicy([]byte(`version: 1
identities:
  - api_key: plain
    roles: [plain]
  - api_key: det
    roles: [det]
  - api_key: both
    roles: [both]
  - api_key: masker
    roles: [masker]
roles:
  plain:
    - operations: [tokenize]
  det:
    - operations: [tokenize-deterministic]
      kinds: [email]
  both:
    - operations: [tokenize]
      kinds: [pan]
    - operations: [tokenize-deterministic]
      kinds: ["*"]
  masker:
    - operations: [mask]
`))
	if err != nil {
		t.Fatal(err)
	}
	key := func(n string) auth.Identity { return auth.Identity{Name: n, Method: auth.MethodAPIKey} }
	const det = auth.OpTokenizeDeterministic
	for _, c := range []struct {
		who  string
		op   auth.Operation
		kind format.Kind
		want string // "" allowed, else a part of the denial
	}{
		{"plain", auth.OpTokenize, format.SSN, ""},
		{"plain", auth.OpTokenize, auth.AnyKind, ""},
		{"plain", det, format.SSN, "may not tokenize-deterministic"},
		{"plain", det, auth.AnyKind, "may not tokenize-deterministic"},
		{"det", auth.OpTokenize, auth.AnyKind, ""}, // may call Tokenize ...
		{"det", auth.OpTokenize, format.Email, "may not tokenize"},
		{"det", det, format.Email, ""},
		{"det", det, format.SSN, "may not tokenize-deterministic tokens of kind ssn"},
		{"both", auth.OpTokenize, format.PAN, ""},
		{"both", auth.OpTokenize, format.SSN, "may not tokenize tokens of kind ssn"},
		{"both", det, format.SSN, ""},
		{"masker", auth.OpTokenize, auth.AnyKind, "may not tokenize"},
		{"masker", det, format.Email, "may not tokenize-deterministic"},
	} {
		err := p.Authorize(key(c.who), c.op, c.kind, "")
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s %s %v: %v, want allowed", c.who, c.op, c.kind, err)
		case c.want != "" && (!errors.Is(err, auth.ErrPermissionDenied) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s %s %v: %v, want a denial saying %q", c.who, c.op, c.kind, err, c.want)
		}
	}
}

// TestContexts: decrypt and encrypt limited to blob contexts, each context
// checked against the grant that names it (two grants do not combine into
// a context × purpose neither gives).
func TestContexts(t *testing.T) {
	// encrypt takes no purpose and decrypt needs one: they cannot share a
	// permission, contexts or not.
	_, err := auth.ParsePolicy([]byte(`version: 1
identities:
  - uri: spiffe://x/f
    roles: [f]
  - uri: spiffe://x/any
    roles: [any]
roles:
  f:
    - operations: [encrypt, decrypt]
      contexts: [orders.address, ""]
      purposes: [shipping]
    - operations: [decrypt]
      contexts: [billing.note]
      purposes: [billing]
  any:
    - operations: [encrypt]
    - operations: [decrypt]
      contexts: [a, "*"]
      purposes: ["*"]
`))
	if err == nil || !strings.Contains(err.Error(), "roles.f[0].operations: reveal operations") {
		t.Fatalf("encrypt and decrypt in one permission: %v", err)
	}
	p, err := auth.ParsePolicy([]byte(`version: 1
identities:
  - uri: spiffe://x/f
    roles: [f]
  - uri: spiffe://x/any
    roles: [any]
roles:
  f:
    - operations: [encrypt]
      contexts: [orders.address]
    - operations: [decrypt]
      contexts: [orders.address, ""]
      purposes: [shipping]
    - operations: [decrypt]
      contexts: [billing.note]
      purposes: [billing]
  any:
    - operations: [encrypt]
    - operations: [decrypt]
      contexts: [a, "*"]
      purposes: ["*"]
`))
	if err != nil {
		t.Fatal(err)
	}
	f, anyone := mtls("spiffe://x/f"), mtls("spiffe://x/any")
	for _, c := range []struct {
		id               auth.Identity
		op               auth.Operation
		context, purpose string
		want             string
	}{
		{f, auth.OpDecrypt, "orders.address", "shipping", ""},
		{f, auth.OpDecrypt, "", "shipping", ""},
		{f, auth.OpDecrypt, "billing.note", "billing", ""},
		{f, auth.OpDecrypt, "billing.note", "shipping", `may not decrypt in context "billing.note"`},
		{f, auth.OpDecrypt, "orders.address", "billing", `may not decrypt in context "orders.address"`},
		{f, auth.OpDecrypt, "orders.address", "marketing", `may not decrypt for purpose "marketing"`},
		{f, auth.OpDecrypt, "orders.addresses", "shipping", "in context"}, // exact match only
		{f, auth.OpEncrypt, "orders.address", "", ""},
		{f, auth.OpEncrypt, "", "", `may not encrypt in context ""`},
		{anyone, auth.OpEncrypt, "anything", "", ""},
		{anyone, auth.OpDecrypt, "anything", "why", ""},
	} {
		err := p.AuthorizeContext(c.id, c.op, c.context, c.purpose)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s %s %q %q: %v, want allowed", c.id, c.op, c.context, c.purpose, err)
		case c.want != "" && (!errors.Is(err, auth.ErrPermissionDenied) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s %s %q %q: %v, want a denial saying %q", c.id, c.op, c.context, c.purpose, err, c.want)
		}
	}
	// The call-level check: some context is allowed for the purpose.
	if err := p.Authorize(f, auth.OpDecrypt, auth.AnyKind, "billing"); err != nil {
		t.Errorf("call-level decrypt: %v", err)
	}
	if err := p.Authorize(f, auth.OpDecrypt, auth.AnyKind, "marketing"); err == nil {
		t.Error("call-level decrypt for a purpose no grant has was allowed")
	}
}

// TestRoles checks the roles of identities named by one policy entry and
// by several (a certificate whose URI and DNS name are both listed): the
// union, sorted, without duplicates, and a copy the caller may change.
// Authorize runs per field, so for one entry it must not allocate.
func TestRoles(t *testing.T) {
	p, err := auth.ParsePolicy([]byte(`version: 1
identities:
  - api_key: k
    roles: [b, a, b]
  - uri: spiffe://example.org/ns/shop/sa/orders
    roles: [c, a]
  - dns: orders.example.org
    roles: [b, c]
roles:
  a:
    - operations: [mask]
  b:
    - operations: [tokenize]
  c:
    - operations: [detokenize]
      purposes: [support]
`))
	if err != nil {
		t.Fatal(err)
	}
	key := auth.Identity{Name: "k", Method: auth.MethodAPIKey}
	uri := mtls("spiffe://example.org/ns/shop/sa/orders")
	both := uri
	both.DNSNames = []string{"orders.example.org", "unlisted.example.org"}
	for _, c := range []struct {
		name string
		id   auth.Identity
		want []string
	}{
		{"api key, duplicate role", key, []string{"a", "b"}},
		{"one uri", uri, []string{"a", "c"}},
		{"uri and dns", both, []string{"a", "b", "c"}},
		{"unknown key", auth.Identity{Name: "x", Method: auth.MethodAPIKey}, nil},
		{"no identity", auth.Identity{Method: auth.MethodNone}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := p.Roles(c.id)
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("roles %v, want %v", got, c.want)
			}
			if len(got) > 0 {
				got[0] = "changed"
				if again := p.Roles(c.id); !reflect.DeepEqual(again, c.want) {
					t.Fatalf("changing the result changed the policy: %v", again)
				}
			}
		})
	}
	if err := p.Authorize(both, auth.OpTokenize, format.PAN, ""); err != nil {
		t.Errorf("uri and dns: tokenize (role b, from the dns entry): %v", err)
	}
	for _, id := range []auth.Identity{key, uri} {
		if n := testing.AllocsPerRun(100, func() {
			if p.Authorize(id, auth.OpMask, format.PAN, "") != nil {
				t.Fatal("mask denied")
			}
		}); n != 0 {
			t.Errorf("%s: Authorize allocates %v times", id, n)
		}
	}
}
