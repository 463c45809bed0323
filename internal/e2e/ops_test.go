package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/client"
)

// scrape fetches /metrics and parses it.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p expfmt.TextParser
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return mf
}

// value sums the samples of a family whose labels include want.
func value(mf map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := mf[name]
	if f == nil {
		return -1
	}
	sum := 0.0
next:
	for _, m := range f.GetMetric() {
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetrics: a scenario moves the counters it should.
func TestMetrics(t *testing.T) {
	e := newEnv(t)
	a, c := e.start(t)
	cx := ctx(t)
	if code, _ := httpGet(t, "http://"+a.MetricsAddr()+"/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	if code, body := httpGet(t, "http://"+a.MetricsAddr()+"/readyz"); code != 200 {
		t.Fatalf("/readyz = %d %s", code, body)
	}
	before := scrape(t, a.MetricsAddr())
	if value(before, "tokenvault_tokens_stored", nil) != 0 {
		t.Fatal("a new vault does not report 0 tokens stored")
	}

	toks, err := c.Tokenize(cx, "m1", client.Field{Kind: "pan", Value: "4111111111111111"}, client.Field{Kind: "name", Value: "Ada Lovelace"})
	if err != nil {
		t.Fatal(err)
	}
	c.Detokenize(cx, "p", toks...)
	c.Detokenize(cx, "p", toks[0])
	c.Tokenize(cx, "m1", client.Field{Kind: "pan", Value: "x"}) // InvalidArgument
	if _, err := c.EraseSubject(cx, "m1"); err != nil {
		t.Fatal(err)
	}

	mf := scrape(t, a.MetricsAddr())
	for _, check := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"grpc_server_handled_total", map[string]string{"grpc_method": "Tokenize", "grpc_code": "OK"}, 1},
		{"grpc_server_handled_total", map[string]string{"grpc_method": "Tokenize", "grpc_code": "InvalidArgument"}, 1},
		{"grpc_server_handled_total", map[string]string{"grpc_method": "Detokenize", "grpc_code": "OK"}, 2},
		{"grpc_server_handled_total", map[string]string{"grpc_method": "EraseSubject", "grpc_code": "OK"}, 1},
		{"grpc_server_handling_seconds", map[string]string{"grpc_method": "Detokenize"}, 2},
		{"tokenvault_batch_items", map[string]string{"rpc": "Tokenize"}, 2},
		{"tokenvault_tokens_created_total", nil, 2},
		{"tokenvault_tokens_stored", nil, 0}, // 2 created, 2 erased
		{"tokenvault_erasures_total", nil, 1},
		{"tokenvault_records_purged_total", nil, 2},
		{"tokenvault_dek_cache_hits_total", nil, 3},
		{"tokenvault_dek_cache_evictions_total", nil, 1},
		{"tokenvault_kek_call_duration_seconds", map[string]string{"op": "wrap"}, 1},
	} {
		if got := value(mf, check.name, check.labels); got != check.want {
			t.Errorf("%s%v = %v, want %v", check.name, check.labels, got, check.want)
		}
	}
	for _, name := range []string{"tokenvault_store_lsm_bytes", "tokenvault_store_vlog_bytes", "tokenvault_store_gc_runs_total",
		"tokenvault_store_group_commits_total", "tokenvault_store_group_ops_total", "tokenvault_audit_syncs_total",
		"tokenvault_store_record_cache_hits_total", "tokenvault_store_record_cache_misses_total",
		"tokenvault_audit_write_failures_total", "go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := mf[name]; !ok {
			t.Errorf("metric %s missing", name)
		}
	}
}

// TestGracefulShutdown: stopping under load lets in-flight calls finish,
// and every token that was acknowledged is there after a restart.
func TestGracefulShutdown(t *testing.T) {
	e := newEnv(t)
	a, c := e.start(t)
	cx := ctx(t)
	var mu sync.Mutex
	acked := map[string]string{} // token -> value
	var failures []error
	var wg sync.WaitGroup
	stopAt := make(chan struct{})
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				val := fmt.Sprintf("+1415555%04d", (w*1000+i)%10000)
				toks, err := c.Tokenize(cx, fmt.Sprint("gs-", w), client.Field{Kind: "phone", Value: val})
				mu.Lock()
				if err == nil {
					acked[toks[0]] = val
				} else {
					failures = append(failures, err)
				}
				n := len(acked)
				mu.Unlock()
				if err != nil {
					return
				}
				if n == 200 {
					close(stopAt)
				}
			}
		}()
	}
	<-stopAt
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for _, err := range failures {
		// After the drain, new calls are refused, never half-done.
		if c := status.Code(err); c != codes.Unavailable && c != codes.Canceled {
			t.Fatalf("call failed during shutdown with %v", err)
		}
	}
	_, c2 := e.start(t)
	var tokens []string
	for tok := range acked {
		tokens = append(tokens, tok)
	}
	for i := 0; i < len(tokens); i += 1000 {
		batch := tokens[i:min(i+1000, len(tokens))]
		res, err := c2.Detokenize(context.Background(), "check", batch...)
		if err != nil {
			t.Fatal(err)
		}
		for j, r := range res {
			if r.Err != nil || r.Value != acked[batch[j]] {
				t.Fatalf("acknowledged token lost after shutdown: %v", r.Err)
			}
		}
	}
	t.Logf("%d tokens acknowledged before shutdown, all present after restart", len(acked))
}
