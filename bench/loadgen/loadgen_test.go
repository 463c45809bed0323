package loadgen_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/tokenvault/tokenvault/bench/echo"
	"github.com/tokenvault/tokenvault/bench/loadgen"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault/format"
)

func TestGeneratedValuesAreValid(t *testing.T) {
	for _, name := range []string{"pan", "ssn", "phone", "email", "bank-account", "national-id", "name", "address", "generic"} {
		t.Run(name, func(t *testing.T) {
			kinds, err := loadgen.ParseKinds(name)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range loadgen.SampleValues(kinds[0], rand.New(rand.NewPCG(1, 1)), 200) {
				if _, err := format.Normalize(kinds[0], v); err != nil {
					t.Fatalf("generated %s value does not normalize: %v", name, err)
				}
			}
		})
	}
	if _, err := loadgen.ParseKinds("iban"); err == nil || !strings.Contains(err.Error(), "-kinds") {
		t.Fatalf("unsupported kind: err = %v, want one naming -kinds", err)
	}
}

func TestParseMix(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    map[loadgen.Op]float64
		wantErr string
	}{
		{in: "tokenize", want: map[loadgen.Op]float64{"tokenize": 1}},
		{in: "tokenize=3, detokenize=1,mask", want: map[loadgen.Op]float64{"tokenize": 3, "detokenize": 1, "mask": 1}},
		{in: "Encrypt=0.5,decrypt=0.5", want: map[loadgen.Op]float64{"encrypt": 0.5, "decrypt": 0.5}},
		{in: "erase", wantErr: `-mix: unknown operation "erase"`},
		{in: "tokenize=-1", wantErr: "-mix: weight"},
		{in: "tokenize=x", wantErr: "-mix: weight"},
		{in: " , ", wantErr: "-mix: empty"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := loadgen.ParseMix(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestProfileValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mod     func(p *loadgen.Profile)
		wantErr string
	}{
		{"ok", func(p *loadgen.Profile) {}, ""},
		{"concurrency", func(p *loadgen.Profile) { p.Concurrency = -1 }, "-c:"},
		{"duration too long", func(p *loadgen.Profile) { p.Duration = 48 * time.Hour }, "-d:"},
		{"negative rate", func(p *loadgen.Profile) { p.Rate = -5 }, "-rate:"},
		{"batch", func(p *loadgen.Profile) { p.Batch = 1001 }, "-batch:"},
		{"mix zero", func(p *loadgen.Profile) { p.Mix = map[loadgen.Op]float64{"tokenize": 0} }, "-mix:"},
		{"mix unknown", func(p *loadgen.Profile) { p.Mix = map[loadgen.Op]float64{"erase": 1} }, "-mix:"},
		{"max requests", func(p *loadgen.Profile) { p.MaxRequests = -1 }, "-max-requests:"},
		{"interval", func(p *loadgen.Profile) { p.Interval = time.Millisecond }, "-interval:"},
		{"kind", func(p *loadgen.Profile) { p.Kinds = []format.Kind{format.IBAN} }, "-kinds:"},
		{"distinct", func(p *loadgen.Profile) { p.Distinct = -1 }, "-distinct:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p loadgen.Profile
			p.SetDefaults()
			tc.mod(&p)
			err := p.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want prefix %q", err, tc.wantErr)
			}
		})
	}
}

func TestDialOptionsRefusesPlaintextKeyOffLoopback(t *testing.T) {
	if _, err := loadgen.DialOptions("10.1.2.3:7300", loadgen.ClientTLS{}, "secret-key"); err == nil || strings.Contains(err.Error(), "secret-key") {
		t.Fatalf("err = %v, want a refusal that does not echo the key", err)
	}
	for _, addr := range []string{"127.0.0.1:7300", "localhost:7300", "[::1]:7300"} {
		if _, err := loadgen.DialOptions(addr, loadgen.ClientTLS{}, "k"); err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
	}
	if _, err := loadgen.DialOptions("10.1.2.3:7300", loadgen.ClientTLS{Enabled: true}, "k"); err != nil {
		t.Fatalf("TLS with a key: %v", err)
	}
	if _, err := loadgen.DialOptions("127.0.0.1:7300", loadgen.ClientTLS{CertFile: "c.pem"}, ""); err == nil {
		t.Fatal("-cert without -key accepted")
	}
}

// echoServer counts calls and remembers the authorization headers seen.
type echoServer struct {
	addr   string
	calls  atomic.Int64
	mu     sync.Mutex
	auth   map[string]bool
	fields []*pb.Field // of the tokenize calls
}

func startEcho(t *testing.T) *echoServer {
	es := &echoServer{auth: map[string]bool{}}
	gs, addr, err := echo.Listen("127.0.0.1:0", grpc.UnaryInterceptor(
		func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			es.calls.Add(1)
			md, _ := metadata.FromIncomingContext(ctx)
			es.mu.Lock()
			for _, v := range md.Get("authorization") {
				es.auth[v] = true
			}
			if tr, ok := req.(*pb.TokenizeRequest); ok {
				es.fields = append(es.fields, tr.GetFields()...)
			}
			es.mu.Unlock()
			return h(ctx, req)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gs.Stop)
	es.addr = addr
	return es
}

func TestRunIsBoundedAndSendsTheAPIKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		rate float64
	}{{"closed-loop", 0}, {"open-loop", 2000}} {
		t.Run(tc.name, func(t *testing.T) {
			es := startEcho(t)
			opts, err := loadgen.DialOptions(es.addr, loadgen.ClientTLS{}, "bench-key")
			if err != nil {
				t.Fatal(err)
			}
			tgt, err := loadgen.NewGRPCTarget("echo", es.addr, 2, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer tgt.Close()
			const maxReq = 300
			p := loadgen.Profile{Concurrency: 4, Rate: tc.rate, Duration: time.Minute, Warmup: 0, MaxRequests: maxReq,
				Mix:   map[loadgen.Op]float64{"tokenize": 1, "detokenize": 1, "mask": 1, "encrypt": 1, "decrypt": 1},
				Batch: 3, Pool: 9, Subjects: 3, Interval: 50 * time.Millisecond}
			res, err := loadgen.Run(context.Background(), tgt, p, loadgen.RunOptions{})
			if err != nil {
				t.Fatal(err)
			}
			setupCalls := int64(2 * 3) // pool of 9 over 3 subjects: 3 tokenize + 3 encrypt calls of 3
			if got := es.calls.Load() - setupCalls; got > maxReq || got <= 0 {
				t.Fatalf("server saw %d load calls, want 1..%d (the cap)", got, maxReq)
			}
			if res.Calls == 0 || res.Calls > maxReq || len(res.Errors) != 0 || res.Items != res.OKCalls*3 {
				t.Fatalf("calls %d ok %d items %d errors %v", res.Calls, res.OKCalls, res.Items, res.Errors)
			}
			for _, op := range loadgen.AllOps {
				if r := res.PerOp[op]; r == nil || r.OKCalls == 0 || r.Latency.P50 <= 0 || r.Latency.P999 < r.Latency.P50 {
					t.Fatalf("%s: %+v", op, r)
				}
			}
			es.mu.Lock()
			defer es.mu.Unlock()
			if len(es.auth) != 1 || !es.auth["Bearer bench-key"] {
				t.Fatalf("authorization headers seen: %v", es.auth)
			}
			// The report renders.
			rep := &loadgen.Report{Tool: "tvbench", Command: "test", Runs: []*loadgen.RunResult{res}}
			var js, text, html bytes.Buffer
			if err := rep.WriteJSON(&js); err != nil || !json.Valid(js.Bytes()) {
				t.Fatalf("JSON: %v", err)
			}
			if err := rep.WriteText(&text); err != nil || !strings.Contains(text.String(), "p99.9 ms") {
				t.Fatalf("text: %v\n%s", err, text.String())
			}
			if err := rep.WriteHTML(&html); err != nil || !strings.Contains(html.String(), "<svg") {
				t.Fatalf("HTML: %v", err)
			}
		})
	}
}

// TestSeveralAddresses: calls go round robin over every -addr address,
// and the server CPU and RSS of the run are reported.
func TestSeveralAddresses(t *testing.T) {
	a, b := startEcho(t), startEcho(t)
	opts, err := loadgen.DialOptions(a.addr, loadgen.ClientTLS{}, "")
	if err != nil {
		t.Fatal(err)
	}
	tgt, err := loadgen.NewGRPCTarget("echo", a.addr+","+b.addr, 1, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.Close()
	const maxReq = 400
	p := loadgen.Profile{Concurrency: 1, Duration: time.Minute, MaxRequests: maxReq,
		Mix: map[loadgen.Op]float64{"tokenize": 1}, Batch: 2, Pool: 1, Subjects: 3, Interval: 20 * time.Millisecond}
	served := loadgen.Counter{Name: "served", Read: func(context.Context) (float64, error) {
		return float64(a.calls.Load() + b.calls.Load()), nil
	}}
	broken := loadgen.Counter{Name: "broken", Read: func(context.Context) (float64, error) {
		return 0, errors.New("no such metric")
	}}
	res, err := loadgen.Run(context.Background(), tgt, p, loadgen.RunOptions{RSSPid: os.Getpid(),
		CPU: []loadgen.CPUSource{loadgen.ProcCPU(os.Getpid())}, DBCPU: []loadgen.CPUSource{loadgen.ProcTreeCPU(os.Getpid())},
		Counters: []loadgen.Counter{served, broken}})
	if err != nil {
		t.Fatal(err)
	}
	// The servers' own count of calls, differenced over the window, per
	// call of the window: 1, but for the calls made before the first read
	// (one worker, no warm-up: a slow scheduler lets a few through) and
	// the one in flight at the last. The bounds check the plumbing (before
	// and after, divided by the window's calls), not the timing.
	if got, ok := res.Extra["served_per_call"]; !ok || got < 0.8 || got > 1.01 {
		t.Fatalf("served_per_call %v (%v)", got, ok)
	}
	if _, ok := res.Extra["broken_per_call"]; ok {
		t.Fatalf("a counter that cannot be read has a figure: %v", res.Extra)
	}
	// One worker, so only round robin can spread the calls: exactly half each.
	if na, nb := a.calls.Load(), b.calls.Load(); na != maxReq/2 || nb != maxReq/2 {
		t.Fatalf("calls per address: %d, %d; want %d each", na, nb, maxReq/2)
	}
	if c := res.ServerCPU; c == nil || c.Error != "" || len(c.Sources) != 1 || c.PerItemUS*2 != c.PerCallUS && c.Seconds > 0 {
		t.Fatalf("server CPU: %+v", c)
	}
	// The tree of this process includes its own CPU: never less (but for
	// the float sums of tick counts read at other instants: a tick's
	// tolerance, 10 ms).
	if c := res.DBCPU; c == nil || c.Error != "" || len(c.Sources) != 1 || c.Seconds < res.ServerCPU.Seconds-0.011 {
		t.Fatalf("database CPU: %+v (server CPU %+v)", c, res.ServerCPU)
	}
	if res.MaxRSSBytes <= 0 || res.MaxRSSAnonBytes <= 0 {
		t.Fatalf("RSS not sampled: %d / %d", res.MaxRSSBytes, res.MaxRSSAnonBytes)
	}
	var svg, csv bytes.Buffer
	if err := res.WriteRSSSVG(&svg); err != nil || !strings.Contains(svg.String(), "<polyline") || !strings.Contains(svg.String(), "RssAnon") {
		t.Fatalf("SVG: %v\n%s", err, svg.String())
	}
	if err := res.WriteRSSCSV(&csv); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(csv.String()), "\n")
	if len(lines) < 2 || lines[0] != "t_s,items_ok_total,vm_rss_bytes,rss_anon_bytes,rss_file_bytes" {
		t.Fatalf("CSV:\n%s", csv.String())
	}
}

// TestTokenizeValues: -deterministic sets every field's mode, and
// -distinct draws the values from that many fixed ones per kind (the same
// in every run), where by default each value is fresh.
func TestTokenizeValues(t *testing.T) {
	run := func(t *testing.T, det bool, distinct int) []*pb.Field {
		es := startEcho(t)
		opts, err := loadgen.DialOptions(es.addr, loadgen.ClientTLS{}, "")
		if err != nil {
			t.Fatal(err)
		}
		tgt, err := loadgen.NewGRPCTarget("echo", es.addr, 1, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer tgt.Close()
		p := loadgen.Profile{Concurrency: 2, Duration: time.Minute, MaxRequests: 100, Mix: map[loadgen.Op]float64{"tokenize": 1},
			Batch: 10, Pool: 1, Subjects: 2, Kinds: []format.Kind{format.PAN, format.Email}, Interval: 50 * time.Millisecond,
			Deterministic: det, Distinct: distinct}
		if _, err := loadgen.Run(context.Background(), tgt, p, loadgen.RunOptions{}); err != nil {
			t.Fatal(err)
		}
		es.mu.Lock()
		defer es.mu.Unlock()
		if len(es.fields) < 1000 {
			t.Fatalf("%d fields sent, want at least 1000", len(es.fields))
		}
		return es.fields
	}
	values := func(fs []*pb.Field) map[pb.Kind]map[string]bool {
		out := map[pb.Kind]map[string]bool{}
		for _, f := range fs {
			if out[f.GetKind()] == nil {
				out[f.GetKind()] = map[string]bool{}
			}
			out[f.GetKind()][f.GetValue()] = true
		}
		return out
	}
	modes := func(fs []*pb.Field) map[pb.TokenMode]int {
		out := map[pb.TokenMode]int{}
		for _, f := range fs {
			out[f.GetOptions().GetMode()]++
		}
		return out
	}

	def := run(t, false, 0)
	if m := modes(def); len(m) != 1 || m[pb.TokenMode_TOKEN_MODE_UNSPECIFIED] == 0 {
		t.Fatalf("default modes: %v", m)
	}
	for k, vs := range values(def) {
		if len(vs) < 400 {
			t.Fatalf("default: %d distinct %v values, want nearly every one fresh", len(vs), k)
		}
	}
	det := run(t, true, 3)
	if m := modes(det); len(m) != 1 || m[pb.TokenMode_TOKEN_MODE_DETERMINISTIC] == 0 {
		t.Fatalf("-deterministic modes: %v", m)
	}
	got := values(det)
	if len(got) != 2 {
		t.Fatalf("-distinct 3: kinds %v", got)
	}
	for k, vs := range got {
		if len(vs) != 3 {
			t.Fatalf("-distinct 3: %d distinct %v values, want 3", len(vs), k)
		}
	}
	for k, vs := range values(run(t, true, 3)) {
		for v := range vs {
			if !got[k][v] {
				t.Fatalf("-distinct: a second run drew another %v value", k)
			}
		}
	}
}
