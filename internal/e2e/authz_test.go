package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/internal/app"
	"github.com/tokenvault/tokenvault/internal/auth"
	"github.com/tokenvault/tokenvault/internal/config"
	"github.com/tokenvault/tokenvault/internal/testpki"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// testPolicy: the shipped example's roles (deploy/policy) plus the
// identities and roles the tests need. orders may tokenize only pan and
// email, so that tokenize has a kind dimension too.
const testPolicy = `version: 1
identities:
  - uri: spiffe://test.example/orders
    roles: [orders]
  - uri: spiffe://test.example/payments
    roles: [payments]
  - uri: spiffe://test.example/support-ui
    roles: [support-ui]
  - api_key: dashboard
    roles: [support-ui]
  - dns: privacy-ops.test.example
    roles: [privacy-ops]
  - uri: spiffe://test.example/key-admin
    roles: [key-admin]
  - uri: spiffe://test.example/fulfilment
    roles: [fulfilment]
  - uri: spiffe://test.example/setup
    roles: [setup]
roles:
  orders:
    - operations: [tokenize]
      kinds: [pan, email]
    - operations: [mask]
  payments:
    - operations: [detokenize]
      kinds: [pan]
      purposes: [payment]
  support-ui:
    - operations: [mask]
  privacy-ops:
    - operations: [export]
      purposes: [dsar]
    - operations: [erase, restrict]
  key-admin:
    - operations: [admin]
  fulfilment:
    - operations: [encrypt]
    - operations: [decrypt]
      purposes: [shipping]
  setup:
    - operations: [tokenize, encrypt]
`

// secureEnv is a TLS server with a policy, client certificates for each
// identity and one API key.
type secureEnv struct {
	*env
	pki         *testpki.CA
	cfg         config.Config
	app         *app.App
	policyFile  string
	apiKey      string
	certs       map[string][2]string // identity → cert, key files
	serverCert  [2]string
	clientCache map[string]*client.Client
	t           *testing.T // owns the cached clients
}

var identities = map[string]testpki.Leaf{
	"orders":      {URIs: []string{"spiffe://test.example/orders"}},
	"payments":    {URIs: []string{"spiffe://test.example/payments"}},
	"support-ui":  {URIs: []string{"spiffe://test.example/support-ui"}},
	"privacy-ops": {DNS: []string{"privacy-ops.test.example"}},
	"key-admin":   {URIs: []string{"spiffe://test.example/key-admin"}},
	"fulfilment":  {URIs: []string{"spiffe://test.example/fulfilment"}},
	"setup":       {URIs: []string{"spiffe://test.example/setup"}},
	// Signed by the right CA but not in the policy.
	"nobody": {URIs: []string{"spiffe://test.example/nobody"}},
}

func newSecureEnv(t *testing.T) *secureEnv {
	t.Helper()
	e := newEnv(t)
	dir := filepath.Dir(e.dataDir)
	s := &secureEnv{env: e, pki: testpki.New(t, filepath.Join(dir, "pki")), certs: map[string][2]string{},
		policyFile: filepath.Join(dir, "policy.yaml"), clientCache: map[string]*client.Client{}, t: t}
	c, k := s.pki.Issue(t, "server", testpki.Leaf{Server: true, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, DNS: []string{"localhost"}})
	s.serverCert = [2]string{c, k}
	for name, o := range identities {
		c, k := s.pki.Issue(t, name, o)
		s.certs[name] = [2]string{c, k}
	}
	if err := os.WriteFile(s.policyFile, []byte(testPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	key, hash, err := auth.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	s.apiKey = key
	s.cfg = e.config()
	s.cfg.Auth = config.AuthConfig{
		TLS:                auth.TLSFiles{Cert: c, Key: k, ClientCA: s.pki.CAFile},
		APIKeys:            []auth.APIKey{{Name: "dashboard", Hash: hash}},
		PolicyFile:         s.policyFile,
		PolicyPollInterval: -1, // reloads in tests are explicit (the SIGHUP path)
	}
	return s
}

func (s *secureEnv) start(t *testing.T) {
	t.Helper()
	a, err := app.Start(context.Background(), s.cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	s.app = a
	t.Cleanup(func() { a.Stop() })
}

// as returns a client for an identity: a certificate, or "dashboard" (the
// API key over TLS without a certificate).
func (s *secureEnv) as(_ *testing.T, who string) *client.Client {
	t := s.t
	t.Helper()
	if c, ok := s.clientCache[who]; ok {
		return c
	}
	var c *client.Client
	if who == "dashboard" {
		c = dialTLS(t, s.app.Addr(), s.pki.CAFile, "", "", client.WithAPIKey(s.apiKey))
	} else {
		f := s.certs[who]
		c = dialTLS(t, s.app.Addr(), s.pki.CAFile, f[0], f[1])
	}
	s.clientCache[who] = c
	return c
}

var (
	authzValues = map[string]string{"pan": "4111 1111 1111 1111", "email": "jane.doe@example.com", "phone": "+86 138 0013 8000"}
	// What detokenize returns (the normalized value).
	revealed = map[string]string{"pan": "4111111111111111", "email": "jane.doe@example.com", "phone": "+8613800138000"}
)

const blobPlain = "leave the parcel at the back door"

// allowed lists every cell the test policy allows, written out by hand
// (not derived from the policy engine under test).
var allowed = map[string]bool{
	"orders/tokenize/pan": true, "orders/tokenize/email": true,
	"orders/mask/pan": true, "orders/mask/email": true, "orders/mask/phone": true,
	"payments/detokenize/pan/payment": true,
	"support-ui/mask/pan":             true, "support-ui/mask/email": true, "support-ui/mask/phone": true,
	"dashboard/mask/pan": true, "dashboard/mask/email": true, "dashboard/mask/phone": true,
	"privacy-ops/erase":           true,
	"key-admin/admin":             true,
	"fulfilment/encrypt":          true,
	"fulfilment/decrypt/shipping": true,
}

// itemDenied: the call is allowed, the item's kind is not (the kind is
// known only per item), so the item fails with PermissionDenied.
var itemDenied = map[string]bool{
	"payments/detokenize/email/payment": true, "payments/detokenize/phone/payment": true,
}

// TestAuthorizationMatrix runs every role × operation × kind × purpose
// against a real TLS server with real client certificates.
func TestAuthorizationMatrix(t *testing.T) {
	s := newSecureEnv(t)
	s.start(t)
	c := ctx(t)
	setup := s.as(t, "setup")
	tokens := map[string]string{}
	for kind, v := range authzValues {
		tok, err := setup.Tokenize(c, "matrix-subject", client.Field{Kind: kind, Value: v})
		if err != nil {
			t.Fatalf("setup tokenize %s: %v", kind, err)
		}
		tokens[kind] = tok[0]
	}
	blobs, err := setup.Encrypt(c, "matrix-subject", "orders.note", []byte(blobPlain))
	if err != nil {
		t.Fatal(err)
	}
	whos := []string{"orders", "payments", "support-ui", "dashboard", "privacy-ops", "key-admin", "fulfilment", "nobody"}
	kinds := []string{"pan", "email", "phone"}
	purposes := []string{"payment", "shipping", "dsar", ""}
	type cell struct{ who, op, kind, purpose string }
	var cells []cell
	for _, who := range whos {
		for _, op := range []string{"tokenize", "mask"} {
			for _, k := range kinds {
				cells = append(cells, cell{who, op, k, ""})
			}
		}
		for _, k := range kinds {
			for _, p := range purposes {
				cells = append(cells, cell{who, "detokenize", k, p})
			}
		}
		for _, p := range purposes {
			cells = append(cells, cell{who, "decrypt", "", p})
		}
		for _, op := range []string{"encrypt", "erase", "admin"} {
			cells = append(cells, cell{who, op, "", ""})
		}
	}
	seen := map[string]bool{}
	for _, x := range cells {
		key := strings.Join(slicesNonEmpty(x.who, x.op, x.kind, x.purpose), "/")
		seen[key] = true
		t.Run(key, func(t *testing.T) {
			cl := s.as(t, x.who)
			var callErr, itemErr error
			var got string
			switch x.op {
			case "tokenize":
				var toks []string
				toks, callErr = cl.Tokenize(c, "subject-"+x.who, client.Field{Kind: x.kind, Value: authzValues[x.kind]})
				if callErr == nil {
					got = toks[0]
				}
			case "detokenize", "mask":
				var res []client.Result
				if x.op == "mask" {
					res, callErr = cl.Mask(c, tokens[x.kind])
				} else {
					res, callErr = cl.Detokenize(c, x.purpose, tokens[x.kind])
				}
				if callErr == nil {
					got, itemErr = res[0].Value, res[0].Err
				}
			case "encrypt":
				var b [][]byte
				b, callErr = cl.Encrypt(c, "subject-"+x.who, "orders.note", []byte(blobPlain))
				if callErr == nil {
					got = fmt.Sprint(len(b[0]) > 0)
				}
			case "decrypt":
				var res []client.Result
				res, callErr = cl.Decrypt(c, x.purpose, "orders.note", blobs[0])
				if callErr == nil {
					got, itemErr = res[0].Value, res[0].Err
				}
			case "erase":
				subject := "erase-" + x.who
				if _, err := setup.Tokenize(c, subject, client.Field{Kind: "email", Value: authzValues["email"]}); err != nil {
					t.Fatal(err)
				}
				var r client.Receipt
				r, callErr = cl.EraseSubject(c, subject)
				got = r.Subject
			case "admin":
				var st *pb.GetKekStatusResponse
				st, callErr = cl.KeyAdmin().GetKekStatus(c, &pb.GetKekStatusRequest{})
				got = fmt.Sprint(st.GetCurrentVersion())
			}
			switch {
			case allowed[key]:
				if callErr != nil || itemErr != nil {
					t.Fatalf("allowed cell failed: %v / %v", callErr, itemErr)
				}
				checkResult(t, x.op, x.kind, got, tokens)
			case (x.op == "detokenize" || x.op == "decrypt") && x.purpose == "":
				if status.Code(callErr) != codes.InvalidArgument {
					t.Fatalf("reveal without purpose: got %v, want InvalidArgument", callErr)
				}
			case itemDenied[key]:
				if callErr != nil || status.Code(itemErr) != codes.PermissionDenied {
					t.Fatalf("got call %v item %v, want the item denied with PermissionDenied", callErr, itemErr)
				}
				if got != "" {
					t.Fatal("a denied item carries a value")
				}
			default:
				if status.Code(callErr) != codes.PermissionDenied {
					t.Fatalf("got %v (item %v), want PermissionDenied", callErr, itemErr)
				}
			}
		})
	}
	for k := range allowed {
		if !seen[k] {
			t.Errorf("allowed cell %s is not in the matrix", k)
		}
	}
}

func slicesNonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func checkResult(t *testing.T, op, kind, got string, tokens map[string]string) {
	t.Helper()
	switch op {
	case "tokenize":
		if got == "" || got == revealed[kind] {
			t.Fatalf("token %q", got)
		}
	case "detokenize":
		if got != revealed[kind] {
			t.Fatalf("revealed %q, want %q", got, revealed[kind])
		}
	case "mask":
		if !strings.Contains(got, "*") || got == revealed[kind] {
			t.Fatalf("mask %q", got)
		}
	case "decrypt":
		if got != blobPlain {
			t.Fatalf("decrypted %q", got)
		}
	case "encrypt":
		if got != "true" {
			t.Fatal("no blob")
		}
	case "erase":
		if !strings.HasPrefix(got, "erase-") {
			t.Fatalf("receipt for %q", got)
		}
	case "admin":
		if got == "0" {
			t.Fatal("no KEK version")
		}
	}
}

// TestAuthenticationRejected: callers without valid credentials get
// nothing.
func TestAuthenticationRejected(t *testing.T) {
	s := newSecureEnv(t)
	other := testpki.New(t, filepath.Join(filepath.Dir(s.dataDir), "other-pki"))
	wrongCA := [2]string{}
	wrongCA[0], wrongCA[1] = other.Issue(t, "impostor", testpki.Leaf{URIs: []string{"spiffe://test.example/payments"}})
	expired := [2]string{}
	expired[0], expired[1] = s.pki.Issue(t, "expired", testpki.Leaf{URIs: []string{"spiffe://test.example/payments"}, NotAfter: time.Now().Add(-time.Hour)})
	// Spellings of the payments SPIFFE id that URL normalisation used to
	// map onto it (security review item 7).
	upper, fragment := [2]string{}, [2]string{}
	upper[0], upper[1] = s.pki.Issue(t, "upper", testpki.Leaf{RawURIs: []string{"SPIFFE://test.example/payments"}})
	fragment[0], fragment[1] = s.pki.Issue(t, "fragment", testpki.Leaf{RawURIs: []string{"spiffe://test.example/payments#"}})
	s.start(t)
	c := ctx(t)
	tok, err := s.as(t, "setup").Tokenize(c, "s1", client.Field{Kind: "pan", Value: authzValues["pan"]})
	if err != nil {
		t.Fatal(err)
	}
	addr := s.app.Addr()
	cases := []struct {
		name string
		cl   *client.Client
		want codes.Code
	}{
		{"no credentials", dialTLS(t, addr, s.pki.CAFile, "", ""), codes.Unauthenticated},
		{"unknown API key", dialTLS(t, addr, s.pki.CAFile, "", "", client.WithAPIKey("tvk_not-a-key")), codes.Unauthenticated},
		{"certificate and API key", dialTLS(t, addr, s.pki.CAFile, s.certs["payments"][0], s.certs["payments"][1], client.WithAPIKey(s.apiKey)), codes.Unauthenticated},
		{"non-canonical SPIFFE id: upper-case scheme", dialTLS(t, addr, s.pki.CAFile, upper[0], upper[1]), codes.Unauthenticated},
		{"non-canonical SPIFFE id: empty fragment", dialTLS(t, addr, s.pki.CAFile, fragment[0], fragment[1]), codes.Unauthenticated},
		// A certificate that does not verify fails the TLS handshake.
		{"wrong CA", dialTLS(t, addr, s.pki.CAFile, wrongCA[0], wrongCA[1]), codes.Unavailable},
		{"expired certificate", dialTLS(t, addr, s.pki.CAFile, expired[0], expired[1]), codes.Unavailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := tc.cl.Detokenize(c, "payment", tok[0])
			if status.Code(err) != tc.want || res != nil {
				t.Fatalf("got %v, %v; want %v", res, err, tc.want)
			}
		})
	}
	t.Run("plaintext client", func(t *testing.T) {
		cl, err := client.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if _, err := cl.Detokenize(c, "payment", tok[0]); status.Code(err) != codes.Unavailable {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("health needs no credentials", func(t *testing.T) {
		conn := dialTLSRaw(t, addr, s.pki.CAFile)
		resp, err := healthpb.NewHealthClient(conn).Check(c, &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health: %v %v", resp, err)
		}
	})
}

func startApp(t *testing.T, cfg config.Config) (*app.App, error) {
	a, err := app.Start(context.Background(), cfg)
	if err == nil {
		t.Cleanup(func() { a.Stop() })
	}
	return a, err
}
