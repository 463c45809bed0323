// Package metrics exposes tokenvault's Prometheus metrics and the HTTP
// observability endpoints (/metrics, /healthz, /readyz).
//
// gRPC request counts by RPC and code and latency histograms are the
// standard grpc_server_* metrics, counted by interceptors that resolve
// each method's counters once ([GRPCMetrics]); the rest are read from the
// domain's counters ([vault.Vault.Stats]) and the store at scrape time, so
// the request path carries no metrics code beyond the interceptors and two
// small hooks (KEK calls, batch sizes). No label ever holds a value, token
// or subject id.
package metrics

import (
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/tokenvault/tokenvault/crypto/kek"
	"github.com/tokenvault/tokenvault/vault"
)

const ns = "tokenvault"

// Metrics holds the registry and the instruments that are not read from
// elsewhere at scrape time.
type Metrics struct {
	Registry *prometheus.Registry
	GRPC     *GRPCMetrics

	batch *prometheus.HistogramVec
	// batchByRPC holds batch's children for the RPCs that report batch
	// sizes, resolved once: WithLabelValues on every call hashes the label
	// under a lock.
	batchByRPC  map[string]prometheus.Observer
	kekLatency  *prometheus.HistogramVec
	kekErrors   *prometheus.CounterVec
	gcRuns      prometheus.Counter
	gcRewrites  prometheus.Counter
	gcErrors    prometheus.Counter
	auditErrors prometheus.Counter
}

// New registers the Go runtime, process and gRPC server metrics and
// tokenvault's own instruments.
func New() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		GRPC:     NewGRPCMetrics([]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}),
		batch: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "batch_items", Help: "Items per batch request, by RPC.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000},
		}, []string{"rpc"}),
		kekLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "kek_call_duration_seconds", Help: "Latency of key-encryption key provider calls.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12),
		}, []string{"op"}),
		kekErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "kek_errors_total", Help: "Failed key-encryption key provider calls, by reason.",
		}, []string{"op", "reason"}),
		gcRuns:      prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "store_gc_runs_total", Help: "Value-log GC runs."}),
		gcRewrites:  prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "store_gc_rewrites_total", Help: "Value-log files rewritten by GC."}),
		gcErrors:    prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "store_gc_errors_total", Help: "Failed value-log GC runs."}),
		auditErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "audit_write_failures_total", Help: "Audit log writes that failed."}),
	}
	m.batchByRPC = map[string]prometheus.Observer{}
	for _, rpc := range batchRPCs {
		m.batchByRPC[rpc] = m.batch.WithLabelValues(rpc)
	}
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.GRPC, m.batch, m.kekLatency, m.kekErrors, m.gcRuns, m.gcRewrites, m.gcErrors, m.auditErrors)
	return m
}

// ServerOptions are the interceptors to install on the gRPC server.
func (m *Metrics) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(m.GRPC.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(m.GRPC.StreamServerInterceptor()),
	}
}

// batchRPCs are the RPCs that report their batch sizes (grpcserver's
// observeBatch calls); another name still works, through the slower path.
var batchRPCs = []string{"Tokenize", "Detokenize", "Mask", "Encrypt", "Decrypt"}

// ObserveBatch records a batch request's size.
func (m *Metrics) ObserveBatch(rpc string, n int) {
	o, ok := m.batchByRPC[rpc]
	if !ok {
		o = m.batch.WithLabelValues(rpc)
	}
	o.Observe(float64(n))
}

// ObserveKEK records one KEK call (the vault's OnKEK hook).
func (m *Metrics) ObserveKEK(op string, d time.Duration, err error) {
	m.kekLatency.WithLabelValues(op).Observe(d.Seconds())
	if err == nil {
		return
	}
	reason := "other"
	switch {
	case errors.Is(err, kek.ErrUnavailable):
		reason = "unavailable"
	case errors.Is(err, kek.ErrInvalidWrapped):
		reason = "invalid_wrapped"
	}
	m.kekErrors.WithLabelValues(op, reason).Inc()
}

// ObserveGC records one maintenance GC run.
func (m *Metrics) ObserveGC(rewrites int, err error) {
	m.gcRuns.Inc()
	m.gcRewrites.Add(float64(rewrites))
	if err != nil {
		m.gcErrors.Inc()
	}
}

// AuditWriteFailed counts a failed audit write.
func (m *Metrics) AuditWriteFailed() { m.auditErrors.Inc() }

// WatchVault exports the domain's counters.
func (m *Metrics) WatchVault(v *vault.Vault) {
	gauge := func(name, help string, f func(vault.Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: name, Help: help},
			func() float64 { return f(v.Stats()) })
	}
	counter := func(name, help string, f func(vault.Stats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help},
			func() float64 { return f(v.Stats()) })
	}
	m.Registry.MustRegister(
		gauge("tokens_stored", "Token records in the store (-1: not counted, or tokens_counting is 1).", func(s vault.Stats) float64 { return float64(s.TokensStored) }),
		gauge("tokens_counting", "1 while the stored tokens are being counted (in the background after a start), else 0.", func(s vault.Stats) float64 {
			if s.TokensCounting {
				return 1
			}
			return 0
		}),
		counter("tokens_created_total", "Tokens created.", func(s vault.Stats) float64 { return float64(s.TokensCreated) }),
		counter("erasures_total", "Subjects erased (crypto-shredded).", func(s vault.Stats) float64 { return float64(s.Erasures) }),
		counter("records_purged_total", "Token records removed by erasures.", func(s vault.Stats) float64 { return float64(s.RecordsPurged) }),
		gauge("dek_cache_entries", "Subjects whose keys are cached.", func(s vault.Stats) float64 { return float64(s.CacheEntries) }),
		counter("dek_cache_hits_total", "Subject key cache hits.", func(s vault.Stats) float64 { return float64(s.CacheHits) }),
		counter("dek_cache_misses_total", "Subject key cache misses (the KEK had to unwrap).", func(s vault.Stats) float64 { return float64(s.CacheMisses) }),
		counter("dek_cache_evictions_total", "Subject keys evicted (and zeroed) from the cache.", func(s vault.Stats) float64 { return float64(s.CacheEvicted) }),
		// Volatile tokens (card security codes, held only in memory): counts only.
		gauge("volatile_tokens_live", "Volatile tokens held in this process's memory (a restart drops them all).", func(s vault.Stats) float64 { return float64(s.Volatile.Live) }),
		counter("volatile_tokens_created_total", "Volatile tokens created.", func(s vault.Stats) float64 { return float64(s.Volatile.Created) }),
		counter("volatile_reveals_total", "Reveals of volatile tokens served.", func(s vault.Stats) float64 { return float64(s.Volatile.Revealed) }),
		counter("volatile_tokens_burned_total", "Volatile tokens dropped after their last reveal.", func(s vault.Stats) float64 { return float64(s.Volatile.Burned) }),
		counter("volatile_tokens_expired_total", "Volatile tokens dropped at the end of their lifetime.", func(s vault.Stats) float64 { return float64(s.Volatile.Expired) }),
		counter("volatile_tokens_erased_total", "Volatile tokens dropped by the erasure of their subject.", func(s vault.Stats) float64 { return float64(s.Volatile.Erased) }),
		counter("volatile_tokens_refused_total", "Volatile tokens refused at the cap (volatile.max_tokens).", func(s vault.Stats) float64 { return float64(s.Volatile.Refused) }),
		counter("volatile_reveals_elsewhere_total", "Reveals of volatile tokens this process does not hold: another replica's, or dropped by a restart.", func(s vault.Stats) float64 { return float64(s.Volatile.Elsewhere) }),
		counter("volatile_forwards_sent_total", "Reveals of volatile tokens forwarded to the replica holding them (volatile.peers).", func(s vault.Stats) float64 { return float64(s.Volatile.ForwardsSent) }),
		counter("volatile_forwards_received_total", "Forwarded reveals of volatile tokens received from other replicas.", func(s vault.Stats) float64 { return float64(s.Volatile.ForwardsReceived) }),
		counter("volatile_forwards_failed_total", "Forwarded reveals that got no answer: the holder unreachable or refusing the forward.", func(s vault.Stats) float64 { return float64(s.Volatile.ForwardsFailed) }),
	)
}

// Sizer is a store that reports its on-disk size.
type Sizer interface{ Size() (lsm, vlog int64) }

// WatchStoreSize exports the store's size.
func (m *Metrics) WatchStoreSize(s Sizer) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "store_lsm_bytes", Help: "Size of the store's LSM tree."},
		func() float64 { l, _ := s.Size(); return float64(l) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "store_vlog_bytes", Help: "Size of the store's value log."},
			func() float64 { _, v := s.Size(); return float64(v) }))
}

// WatchGroupCommits exports the embedded store's group commits: how many
// durable write groups it committed, and how many writes they carried.
// Each group is one sync of the write-ahead log (none if all its ops were
// refused, which is rare), so ops / groups is the mean group size: the
// number of writes that share one sync's cost.
func (m *Metrics) WatchGroupCommits(f func() (groups, ops int64)) {
	m.Registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "store_group_commits_total",
			Help: "Durable write groups the embedded store committed: one transaction each, synced once in badger's write-ahead log (a group in which every op was refused writes and syncs nothing)."},
			func() float64 { g, _ := f(); return float64(g) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "store_group_ops_total",
			Help: "Ops (tokenize calls, subject keys, ...) carried by those groups, refused ones included: ops / commits is the mean group size."},
			func() float64 { _, o := f(); return float64(o) }))
}

// WatchRecordCache exports the embedded store's record cache: the reads
// of a record (a reveal's, mostly) it answered without a badger read, and
// those it did not.
func (m *Metrics) WatchRecordCache(f func() (hits, misses int64)) {
	m.Registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "store_record_cache_hits_total",
			Help: "Reads of one record that the embedded store's cache of recently read record encodings answered."},
			func() float64 { h, _ := f(); return float64(h) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "store_record_cache_misses_total",
			Help: "Reads of one record that the cache did not answer: the token filter or badger did (found or not)."},
			func() float64 { _, mi := f(); return float64(mi) }))
}

// WatchDiskFull exports whether the store refuses writes for lack of
// free space (1) or not (0).
func (m *Metrics) WatchDiskFull(full func() bool) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "store_disk_full",
		Help: "1 while the store refuses writes because its disk is full (reads still work), 0 otherwise."},
		func() float64 {
			if full() {
				return 1
			}
			return 0
		}))
}

// Handler serves /metrics, /healthz (the process is up) and /readyz (ready
// reports nil when the store and the KEK provider are usable).
func (m *Metrics) Handler(ready func() error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("not ready: " + err.Error() + "\n"))
			return
		}
		w.Write([]byte("ready\n"))
	})
	return mux
}
