package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/errinfo"
	"github.com/tokenvault/tokenvault/internal/app"
	"github.com/tokenvault/tokenvault/internal/auth"
	"github.com/tokenvault/tokenvault/internal/config"
	"github.com/tokenvault/tokenvault/internal/testpki"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault/format"
)

// Card security codes across replicas (issue 17): two real servers on one
// real PostgreSQL database, each listing both in volatile.peers. A reveal
// that reaches the replica that does not hold the code is forwarded to the
// holder over the replicas' own authenticated channel.

// peersPolicy: checkout reveals codes; the replicas' identity may only
// forward.
const peersPolicy = `version: 1
identities:
  - api_key: checkout
    roles: [checkout]
  - api_key: replica
    roles: [replica]
  - uri: spiffe://test.example/replica
    roles: [replica]
  - api_key: pan-reader
    roles: [pan-reader]
roles:
  checkout:
    - operations: [tokenize, mask, erase, restrict]
    - operations: [detokenize]
      purposes: [payment]
  pan-reader:
    - operations: [detokenize]
      kinds: [pan]
      purposes: [payment]
  replica:
    - operations: [volatile-forward]
      purposes: ["*"]
`

// replicaPair is replicas a and b of one vault.
type replicaPair struct {
	t        *testing.T
	cfg      [2]config.Config
	app      [2]*app.App
	cl       [2]*client.Client // as checkout
	keys     map[string]string // identity → API key
	auditLog [2]string
	pki      *testpki.CA // nil: plaintext on loopback, forwards with an API key
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// newReplicaPair starts the pair; with mtls, over TLS with the replicas
// forwarding under a client certificate, else in plaintext on loopback
// with an API key.
func newReplicaPair(t *testing.T, mtls bool) *replicaPair {
	t.Helper()
	ea := newPostgresEnv(t)
	eb := newEnv(t)
	eb.pgDSN, eb.keysDir = ea.pgDSN, ea.keysDir // one database, the same keys
	dir := t.TempDir()
	p := &replicaPair{t: t, keys: map[string]string{}}
	var apiKeys []auth.APIKey
	for _, name := range []string{"checkout", "replica", "pan-reader"} {
		key, hash, err := auth.NewAPIKey()
		if err != nil {
			t.Fatal(err)
		}
		p.keys[name] = key
		apiKeys = append(apiKeys, auth.APIKey{Name: name, Hash: hash})
	}
	policy, keyFile := filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "replica.key")
	if err := os.WriteFile(policy, []byte(peersPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte(p.keys["replica"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var serverTLS auth.TLSFiles
	if mtls {
		p.pki = testpki.New(t, filepath.Join(dir, "pki"))
		c, k := p.pki.Issue(t, "server", testpki.Leaf{Server: true, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
		serverTLS = auth.TLSFiles{Cert: c, Key: k, ClientCA: p.pki.CAFile}
	}
	addrs := [2]string{freeAddr(t), freeAddr(t)}
	peers := []config.VolatilePeer{{ReplicaID: "replica-a", Address: addrs[0]}, {ReplicaID: "replica-b", Address: addrs[1]}}
	for i, e := range []*env{ea, eb} {
		cfg := e.config()
		cfg.Listen = addrs[i]
		cfg.Replica.ID = peers[i].ReplicaID
		cfg.Auth = config.AuthConfig{TLS: serverTLS, APIKeys: apiKeys, PolicyFile: policy, PolicyPollInterval: -1}
		cfg.Auth.Audit.Path = filepath.Join(dir, fmt.Sprintf("audit-%d", i), "audit.jsonl")
		cfg.Volatile.Peers = peers
		if mtls {
			c, k := p.pki.Issue(t, "replica", testpki.Leaf{URIs: []string{"spiffe://test.example/replica"}})
			cfg.Volatile.Forward = config.VolatileForwardConfig{CAFile: p.pki.CAFile, CertFile: c, KeyFile: k}
		} else {
			cfg.Volatile.Forward.APIKeyFile = keyFile
		}
		p.cfg[i], p.auditLog[i] = cfg, cfg.Auth.Audit.Path
		p.start(i)
	}
	return p
}

// start (re)starts replica i and its checkout client.
func (p *replicaPair) start(i int) {
	t := p.t
	t.Helper()
	a, err := app.Start(t.Context(), p.cfg[i])
	if err != nil {
		t.Fatalf("start replica %d: %v", i, err)
	}
	var c *client.Client
	if p.pki != nil {
		c = dialTLS(t, a.Addr(), p.pki.CAFile, "", "", client.WithAPIKey(p.keys["checkout"]))
	} else if c, err = client.Dial(a.Addr(), client.WithAPIKey(p.keys["checkout"])); err != nil {
		t.Fatal(err)
	}
	p.app[i], p.cl[i] = a, c
	t.Cleanup(func() { c.Close(); a.Stop() })
}

// card tokenizes a card with a security code on replica i.
func (p *replicaPair) card(t *testing.T, i int, subject, code string) string {
	t.Helper()
	toks, err := p.cl[i].TokenizeCard(ctx(t), subject, client.Card{Number: "4111 1111 1111 1111", SecurityCode: code})
	if err != nil {
		t.Fatal(err)
	}
	holder, _ := format.VolatileHolder(toks.SecurityCode)
	if want := config.HolderIDOf(p.cfg[i].Replica.ID); holder != want {
		t.Fatalf("holder id %q, want %q (derived from replica.id)", holder, want)
	}
	return toks.SecurityCode
}

func (p *replicaPair) reveal(t *testing.T, i int, tok string) client.Result {
	t.Helper()
	res, err := p.cl[i].Detokenize(ctx(t), "payment", tok)
	if err != nil {
		t.Fatal(err)
	}
	return res[0]
}

// metric reads one sample of replica i's /metrics.
func (p *replicaPair) metric(t *testing.T, i int, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + p.app[i].MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

func reasonOf(err error) string {
	var ce *client.Error
	if errors.As(err, &ce) {
		return ce.Reason
	}
	return ""
}

func TestVolatileAcrossReplicas(t *testing.T) {
	p := newReplicaPair(t, false)

	t.Run("reveal through the other replica burns it", func(t *testing.T) {
		tok := p.card(t, 0, "shopper", "737")
		if r := p.reveal(t, 1, tok); r.Err != nil || r.Value != "737" || r.Kind != "card-security-code" {
			t.Fatalf("reveal via b: %+v", r)
		}
		for i := range 2 {
			if r := p.reveal(t, i, tok); !errors.Is(r.Err, client.ErrNotFound) {
				t.Fatalf("second reveal via %d: %+v", i, r)
			}
		}
		// The other way round, and Mask through the non-holder.
		tok = p.card(t, 1, "shopper", "4242")
		if m, err := p.cl[0].Mask(ctx(t), tok); err != nil || m[0].Err != nil || m[0].Value != format.SecurityCodeMask {
			t.Fatalf("mask via a: %+v %v", m, err)
		}
		if r := p.reveal(t, 0, tok); r.Err != nil || r.Value != "4242" {
			t.Fatalf("reveal via a: %+v", r)
		}
		if got := p.metric(t, 1, "tokenvault_volatile_forwards_sent_total"); got != "2" {
			t.Errorf("b forwards sent = %q, want 2", got)
		}
		if got := p.metric(t, 0, "tokenvault_volatile_forwards_received_total"); got != "2" {
			t.Errorf("a forwards received = %q, want 2", got)
		}
	})

	t.Run("the holder audits the forward with the original caller", func(t *testing.T) {
		tok := p.card(t, 0, "audited", "318")
		if r := p.reveal(t, 1, tok); r.Err != nil {
			t.Fatal(r.Err)
		}
		b, err := os.ReadFile(p.auditLog[0])
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, `"op":"volatile-forward"`) && strings.Contains(line, `"outcome":"OK"`) &&
				strings.Contains(line, `"caller":"api_key:replica"`) && strings.Contains(line, `"origin_caller":"api_key:checkout"`) &&
				strings.Contains(line, `"origin_replica":"replica-b"`) && strings.Contains(line, `"purpose":"payment"`) {
				found = true
			}
		}
		if !found {
			t.Fatalf("no audit entry of the forward naming both callers in a's log:\n%s", b)
		}
		// The forwarder audits its caller's Detokenize as usual.
		bb, err := os.ReadFile(p.auditLog[1])
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(bb), `"caller":"api_key:checkout"`) || !strings.Contains(string(bb), `"op":"detokenize"`) {
			t.Fatalf("b's log has no Detokenize entry of checkout")
		}
		for _, log := range [][]byte{b, bb} {
			// The code as a word in any field a value could reach: a raw
			// search for `318"` also matched the tail of a hash, a
			// signature or a peer port (it failed CI once).
			if strings.Contains(string(log), tok) || auditHasCode(t, log, "318") {
				t.Fatal("an audit log holds the token or the code")
			}
		}
	})

	t.Run("concurrent reveals through both replicas: exactly one wins", func(t *testing.T) {
		for round := range 10 {
			tok := p.card(t, round%2, "racer", "555")
			var wg sync.WaitGroup
			var mu sync.Mutex
			wins, gone := 0, 0
			for g := range 6 {
				// Even rounds through both replicas; odd ones all through
				// the non-holder, so that only forwards race.
				via := g % 2
				if round%2 == 1 {
					via = 1 - round%2
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					res, err := p.cl[via].Detokenize(ctx(t), "payment", tok)
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err != nil:
						t.Error(err)
					case res[0].Err == nil && res[0].Value == "555":
						wins++
					case errors.Is(res[0].Err, client.ErrNotFound):
						gone++
					default:
						t.Errorf("reveal: %+v", res[0])
					}
				}()
			}
			wg.Wait()
			if wins != 1 || gone != 5 {
				t.Fatalf("round %d: %d reveals got the code, %d NOT_FOUND; want 1 and 5", round, wins, gone)
			}
		}
	})

	t.Run("erasure through the other replica stops the reveal", func(t *testing.T) {
		tok := p.card(t, 0, "leaving", "999")
		if _, err := p.cl[1].EraseSubject(ctx(t), "leaving"); err != nil {
			t.Fatal(err)
		}
		if r := p.reveal(t, 1, tok); !errors.Is(r.Err, client.ErrErased) {
			t.Fatalf("reveal via b after erasure: %+v", r)
		}
		// The holder dropped it on that reveal.
		if r := p.reveal(t, 0, tok); r.Err == nil {
			t.Fatalf("reveal via a after erasure: %+v", r)
		}
	})

	t.Run("a restriction through either replica holds the code back without using it", func(t *testing.T) {
		tok := p.card(t, 0, "paused", "135")
		if _, err := p.cl[0].Restrict(ctx(t), "paused"); err != nil {
			t.Fatal(err)
		}
		if r := p.reveal(t, 1, tok); !errors.Is(r.Err, client.ErrFailedPrecondition) || !strings.Contains(r.Err.Error(), "restricted") {
			t.Fatalf("reveal via b of a restricted subject's code: %+v", r)
		}
		if err := p.cl[1].Unrestrict(ctx(t), "paused"); err != nil {
			t.Fatal(err)
		}
		if r := p.reveal(t, 1, tok); r.Err != nil || r.Value != "135" {
			t.Fatalf("reveal via b after the restriction: %+v", r)
		}
	})

	t.Run("the forwarding replica checks its caller's kinds first", func(t *testing.T) {
		tok := p.card(t, 0, "shopper", "975")
		pr, err := client.Dial(p.app[1].Addr(), client.WithAPIKey(p.keys["pan-reader"]))
		if err != nil {
			t.Fatal(err)
		}
		defer pr.Close()
		res, err := pr.Detokenize(ctx(t), "payment", tok)
		if err != nil || !errors.Is(res[0].Err, client.ErrPermissionDenied) {
			t.Fatalf("pan-reader reveals a code via b: %+v %v", res, err)
		}
		// Refused before the holder was asked: the code is still there.
		if r := p.reveal(t, 1, tok); r.Err != nil || r.Value != "975" {
			t.Fatalf("reveal after the refusal: %+v", r)
		}
	})

	t.Run("a forward from an identity without volatile-forward is refused", func(t *testing.T) {
		tok := p.card(t, 0, "shopper", "246")
		conn, err := grpc.NewClient(p.app[0].Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(client.APIKeyCredentials(p.keys["checkout"])))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = pb.NewReplicaPeerClient(conn).RevealVolatile(ctx(t), &pb.RevealVolatileRequest{Token: tok, Purpose: "payment",
			OriginalCaller: "api_key:checkout", FromReplica: "replica-b"})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("forward as checkout: %v", err)
		}
		if strings.Contains(status.Convert(err).Message(), tok) {
			t.Fatal("the refusal names the token")
		}
		// Refused before the vault: the code is still there.
		if r := p.reveal(t, 1, tok); r.Err != nil || r.Value != "246" {
			t.Fatalf("reveal via b after the refused forward: %+v", r)
		}
	})

	t.Run("a forwarded request the holder cannot use is refused naming its field", func(t *testing.T) {
		conn, err := grpc.NewClient(p.app[0].Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(client.APIKeyCredentials(p.keys["replica"])))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		pc := pb.NewReplicaPeerClient(conn)
		for _, bad := range []struct {
			req   *pb.RevealVolatileRequest
			code  codes.Code
			field string
		}{
			{&pb.RevealVolatileRequest{Token: "tok_notvolatile", Purpose: "payment"}, codes.InvalidArgument, "token"},
			{&pb.RevealVolatileRequest{Token: p.card(t, 0, "s", "123"), Purpose: " "}, codes.InvalidArgument, "purpose"},
			{&pb.RevealVolatileRequest{Token: format.VolatilePrefix + config.HolderIDOf("replica-b") + "_" + strings.Repeat("a", 26), Purpose: "payment"}, codes.NotFound, "token"},
		} {
			_, err := pc.RevealVolatile(ctx(t), bad.req)
			if status.Code(err) != bad.code || badRequestField(err) != bad.field {
				t.Errorf("%v: %v (field %q), want %v naming %s", bad.req, err, badRequestField(err), bad.code, bad.field)
			}
		}
	})

	t.Run("holder stopped: UNAVAILABLE naming the replica; restarted: NOT_FOUND", func(t *testing.T) {
		tok := p.card(t, 0, "shopper", "808")
		p.cl[0].Close()
		if err := p.app[0].Stop(); err != nil {
			t.Fatal(err)
		}
		r := p.reveal(t, 1, tok)
		if !errors.Is(r.Err, client.ErrVolatileHolderUnavailable) || status.Code(r.Err) != codes.Unavailable ||
			reasonOf(r.Err) != errinfo.VolatileHolderUnavailable {
			t.Fatalf("reveal via b with a stopped: %+v", r)
		}
		msg := status.Convert(r.Err).Message()
		if !strings.Contains(msg, `"replica-a"`) || !strings.HasPrefix(msg, "tokens[0]: ") || strings.Contains(msg, tok) {
			t.Fatalf("message %q: want the field and the replica, never the token", msg)
		}
		if got := p.metric(t, 1, "tokenvault_volatile_forwards_failed_total"); got != "1" {
			t.Errorf("b forwards failed = %q, want 1", got)
		}
		// A restart drops the codes; the holder id stays (replica.id).
		p.start(0)
		deadline := time.Now().Add(10 * time.Second)
		for {
			r = p.reveal(t, 1, tok)
			if !errors.Is(r.Err, client.ErrVolatileHolderUnavailable) || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond) // b's connection backs off after the outage
		}
		if !errors.Is(r.Err, client.ErrNotFound) {
			t.Fatalf("reveal via b after a restarted: %+v", r)
		}
	})
}

// badRequestField is the field a status's BadRequest names.
func badRequestField(err error) string {
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			return br.GetFieldViolations()[0].GetField()
		}
	}
	return ""
}

// TestForwardBadRequest: a forwarded request the holder cannot use is
// refused naming its field.

// TestVolatileAcrossReplicasMTLS: the replicas' channel over TLS, the
// forwarding replica identified by its client certificate.
func TestVolatileAcrossReplicasMTLS(t *testing.T) {
	p := newReplicaPair(t, true)
	tok := p.card(t, 1, "shopper", "737")
	if r := p.reveal(t, 0, tok); r.Err != nil || r.Value != "737" {
		t.Fatalf("reveal via a: %+v", r)
	}
	if r := p.reveal(t, 1, tok); !errors.Is(r.Err, client.ErrNotFound) {
		t.Fatalf("second reveal via b: %+v", r)
	}
	b, err := os.ReadFile(p.auditLog[1])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"caller":"spiffe://test.example/replica","auth":"mtls"`) || !strings.Contains(string(b), `"origin_replica":"replica-a"`) {
		t.Fatalf("b's log has no forward by the replica's certificate:\n%s", b)
	}
}

// auditStructural are the audit entry fields that hold hashes, times,
// addresses, file names and counters: where a short code's digits turn up
// by chance, and where no caller's text goes.
var auditStructural = map[string]bool{"seq": true, "time": true, "since": true, "prev": true, "sig": true,
	"peer": true, "token": true, "subject_hash": true, "key_id": true, "cp_seq": true, "count": true,
	"items_omitted": true, "file": true}

// auditHasCode reports whether an audit log's entries hold code as a word
// of its own (not inside a longer run of letters and digits) in any other
// field, at any depth, in a string or a number.
func auditHasCode(t *testing.T, log []byte, code string) bool {
	t.Helper()
	word := regexp.MustCompile(`(^|[^0-9A-Za-z])` + regexp.QuoteMeta(code) + `([^0-9A-Za-z]|$)`)
	var walk func(key string, x any) bool
	walk = func(key string, x any) bool {
		switch x := x.(type) {
		case string:
			return !auditStructural[key] && word.MatchString(x)
		case float64:
			return !auditStructural[key] && word.MatchString(strconv.FormatFloat(x, 'f', -1, 64))
		case []any:
			for _, e := range x {
				if walk(key, e) {
					return true
				}
			}
		case map[string]any:
			for k, e := range x {
				if walk(k, e) {
					return true
				}
			}
		}
		return false
	}
	for _, line := range strings.Split(strings.TrimSpace(string(log)), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit line is not JSON: %v", err)
		}
		if walk("", e) {
			return true
		}
	}
	return false
}

// TestAuditHasCode: the leak check above finds the code in any field a
// caller's text or a value could reach, at any depth, and not as the tail
// of a hash, a port, a time or a counter.
func TestAuditHasCode(t *testing.T) {
	for _, tc := range []struct {
		log  string
		want bool
	}{
		{`{"op":"detokenize","items":[{"outcome":"OK","value":"318"}]}`, true},
		{`{"reason":"318"}` + "\n" + `{"op":"x"}`, true},
		{`{"reason":"invalid security code 318"}`, true},
		{`{"reason":"peer answered: value \"318\" refused"}`, true},
		{`{"items":[{"context":"cvc=318"}]}`, true},
		{`{"value":318}`, true},
		{`{"peer":"127.0.0.1:40318","prev":"ab318","items":[{"token":"c0ffee318"}],"seq":318}`, false},
		{`{"time":"2026-12-01T21:16:12.000318Z","since":"2026-12-01T21:16:12.318Z","file":"audit.318.log","count":318}`, false},
		{`{"reason":"code 3180 or 1318 or x318"}`, false},
	} {
		if got := auditHasCode(t, []byte(tc.log), "318"); got != tc.want {
			t.Errorf("auditHasCode(%s) = %v, want %v", tc.log, got, tc.want)
		}
	}
}
