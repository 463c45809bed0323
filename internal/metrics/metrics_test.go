package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tokenvault/tokenvault/crypto/kek"
	"github.com/tokenvault/tokenvault/internal/metrics"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
	"github.com/tokenvault/tokenvault/vault/format"
)

// gather returns the registry's families by name.
func gather(t *testing.T, m *metrics.Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// sample is the value of the family's sample whose labels are exactly
// labels (a histogram's sample count); -1 if there is none.
func sample(mf map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	for _, m := range mf[name].GetMetric() {
		var got []string
		for _, l := range m.GetLabel() {
			got = append(got, l.GetName()+"="+l.GetValue())
		}
		if strings.Join(got, ",") != strings.Join(labels, ",") {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

func TestObserve(t *testing.T) {
	m := metrics.New()
	m.ObserveKEK("wrap", time.Millisecond, nil)
	m.ObserveKEK("unwrap", time.Millisecond, fmt.Errorf("hcvault: %w", kek.ErrUnavailable))
	m.ObserveKEK("unwrap", time.Millisecond, kek.ErrInvalidWrapped)
	m.ObserveKEK("unwrap", time.Millisecond, errors.New("something else"))
	m.ObserveKEK("unwrap", time.Millisecond, kek.ErrUnavailable)
	m.ObserveBatch("Tokenize", 3)
	m.ObserveBatch("Tokenize", 1000)
	m.ObserveBatch("Detokenize", 1)
	m.ObserveGC(2, nil)
	m.ObserveGC(0, errors.New("gc failed"))
	m.ObserveGC(0, nil)
	m.AuditWriteFailed()
	m.AuditWriteFailed()

	mf := gather(t, m)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"tokenvault_kek_call_duration_seconds", []string{"op=wrap"}, 1},
		{"tokenvault_kek_call_duration_seconds", []string{"op=unwrap"}, 4}, // failed calls have a latency too
		{"tokenvault_kek_errors_total", []string{"op=unwrap", "reason=unavailable"}, 2},
		{"tokenvault_kek_errors_total", []string{"op=unwrap", "reason=invalid_wrapped"}, 1},
		{"tokenvault_kek_errors_total", []string{"op=unwrap", "reason=other"}, 1},
		{"tokenvault_kek_errors_total", []string{"op=wrap", "reason=other"}, -1}, // a success is no error
		{"tokenvault_batch_items", []string{"rpc=Tokenize"}, 2},
		{"tokenvault_batch_items", []string{"rpc=Detokenize"}, 1},
		{"tokenvault_store_gc_runs_total", nil, 3},
		{"tokenvault_store_gc_rewrites_total", nil, 2},
		{"tokenvault_store_gc_errors_total", nil, 1},
		{"tokenvault_audit_write_failures_total", nil, 2},
	} {
		if got := sample(mf, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// The largest batch falls in the top bucket (the server's limit).
	var top uint64
	for _, m := range mf["tokenvault_batch_items"].GetMetric() {
		if m.GetLabel()[0].GetValue() == "Tokenize" {
			b := m.GetHistogram().GetBucket()
			top = b[len(b)-1].GetCumulativeCount() - b[len(b)-2].GetCumulativeCount()
		}
	}
	if top != 1 {
		t.Errorf("batch of 1000 in the top bucket: %d", top)
	}
}

// TestLabels: no label can carry a value, token or subject id: every label
// of tokenvault's own metrics is one of a fixed few, whose values are
// names chosen by the code.
func TestLabels(t *testing.T) {
	m := metrics.New()
	m.ObserveKEK("unwrap", time.Millisecond, errors.New("4111111111111111"))
	m.ObserveBatch("Tokenize", 1)
	allowed := map[string]bool{"op": true, "reason": true, "rpc": true}
	for name, f := range gather(t, m) {
		if !strings.HasPrefix(name, "tokenvault_") {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if !allowed[l.GetName()] || strings.Contains(l.GetValue(), "4111") {
					t.Errorf("%s has label %s=%q", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
}

func TestHandler(t *testing.T) {
	m := metrics.New()
	m.AuditWriteFailed()
	var readyErr error
	srv := httptest.NewServer(m.Handler(func() error { return readyErr }))
	defer srv.Close()
	get := func(method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct {
		method, path string
		ready        error
		code         int
		body         string
	}{
		{"GET", "/healthz", nil, 200, "ok\n"},
		{"GET", "/healthz", errors.New("down"), 200, "ok\n"}, // up, even when not ready
		{"GET", "/readyz", nil, 200, "ready\n"},
		{"GET", "/readyz", errors.New("key-encryption key provider unavailable"), 503, "not ready: key-encryption key provider unavailable\n"},
		{"GET", "/metrics", nil, 200, "tokenvault_audit_write_failures_total 1\n"},
		{"POST", "/metrics", nil, 405, ""},
		{"GET", "/debug/pprof/", nil, 404, ""},
	} {
		readyErr = c.ready
		code, body := get(c.method, c.path)
		if code != c.code || !strings.Contains(body, c.body) {
			t.Errorf("%s %s (ready: %v) = %d %q, want %d with %q", c.method, c.path, c.ready, code, body, c.code, c.body)
		}
	}
}

// TestServerOptions: the interceptors count a real gRPC server's calls,
// unary and streaming, by service, method and code.
func TestServerOptions(t *testing.T) {
	m := metrics.New()
	gs := grpc.NewServer(m.ServerOptions()...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	m.GRPC.InitializeMetrics(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	defer gs.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.such.Service"}) // NotFound
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}

	mf := gather(t, m)
	svc := "grpc_service=grpc.health.v1.Health"
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"grpc_server_started_total", []string{"grpc_method=Check", svc, "grpc_type=unary"}, 2},
		{"grpc_server_handled_total", []string{"grpc_code=OK", "grpc_method=Check", svc, "grpc_type=unary"}, 1},
		{"grpc_server_handled_total", []string{"grpc_code=NotFound", "grpc_method=Check", svc, "grpc_type=unary"}, 1},
		{"grpc_server_handling_seconds", []string{"grpc_method=Check", svc, "grpc_type=unary"}, 2},
		{"grpc_server_started_total", []string{"grpc_method=Watch", svc, "grpc_type=server_stream"}, 1},
		{"grpc_server_msg_sent_total", []string{"grpc_method=Watch", svc, "grpc_type=server_stream"}, 1},
		// Initialized before any call: a dashboard sees zeroes, not gaps.
		{"grpc_server_handled_total", []string{"grpc_code=Unavailable", "grpc_method=List", svc, "grpc_type=unary"}, 0},
	} {
		if got := sample(mf, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, name := range []string{"go_goroutines", "process_open_fds"} {
		if mf[name] == nil {
			t.Errorf("%s missing", name)
		}
	}
}

// TestWatchStoreSize: the size gauges read a real badger store at scrape
// time.
func TestWatchStoreSize(t *testing.T) {
	store, err := badgerstore.Open(t.TempDir(), badgerstore.Options{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var sz metrics.Sizer = store // the badger store reports its size
	m := metrics.New()
	m.WatchStoreSize(sz)
	mf := gather(t, m)
	lsm, vlog := sz.Size()
	if got := sample(mf, "tokenvault_store_lsm_bytes"); got != float64(lsm) {
		t.Errorf("lsm bytes %v, store says %d", got, lsm)
	}
	if got := sample(mf, "tokenvault_store_vlog_bytes"); got != float64(vlog) {
		t.Errorf("vlog bytes %v, store says %d", got, vlog)
	}
}

// TestWatchGroupCommits: the group-commit counters read the store at
// scrape time; one subject key created is one op of one group.
func TestWatchGroupCommits(t *testing.T) {
	store, err := badgerstore.Open(t.TempDir(), badgerstore.Options{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	m := metrics.New()
	m.WatchGroupCommits(store.GroupCommits)
	sk := vault.SubjectKey{Wrapped: make([]byte, 64), Created: time.Now().UTC()}
	sk.ID[0] = 1
	if _, err := store.CreateSubjectKey(context.Background(), "ada", sk); err != nil {
		t.Fatal(err)
	}
	mf := gather(t, m)
	groups, ops := store.GroupCommits()
	if groups != 1 || ops != 1 {
		t.Fatalf("store says %d groups, %d ops after one key", groups, ops)
	}
	if got := sample(mf, "tokenvault_store_group_commits_total"); got != 1 {
		t.Errorf("group commits %v, want 1", got)
	}
	if got := sample(mf, "tokenvault_store_group_ops_total"); got != 1 {
		t.Errorf("group ops %v, want 1", got)
	}
}

// TestWatchRecordCache: the record cache's counters read the store at
// scrape time; a record read twice is one miss, then one hit.
func TestWatchRecordCache(t *testing.T) {
	store, err := badgerstore.Open(t.TempDir(), badgerstore.Options{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	m := metrics.New()
	m.WatchRecordCache(store.RecordCache)
	ctx := context.Background()
	sk := vault.SubjectKey{Wrapped: make([]byte, 64), Created: time.Now().UTC()}
	sk.ID[0] = 1
	if _, err := store.CreateSubjectKey(ctx, "ada", sk); err != nil {
		t.Fatal(err)
	}
	rec := vault.Record{Token: "tok-1", KeyID: sk.ID, Kind: format.Generic, Created: time.Now().UTC(),
		Sealed: make([]byte, 40), AADVersion: vault.RecordAADv2}
	if err := store.PutRecords(ctx, "ada", sk.ID, []vault.Record{rec}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := store.Record(ctx, rec.Token); err != nil {
			t.Fatal(err)
		}
	}
	mf := gather(t, m)
	if got := sample(mf, "tokenvault_store_record_cache_hits_total"); got != 1 {
		t.Errorf("record cache hits %v, want 1", got)
	}
	if got := sample(mf, "tokenvault_store_record_cache_misses_total"); got != 1 {
		t.Errorf("record cache misses %v, want 1", got)
	}
}
