package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The PostgreSQL store's connection pool and change listener (see
// vault/pgstore), read at scrape time.

// PoolStats is the connection pool's state (from pgxpool.Stat).
type PoolStats struct {
	Total, Idle, Acquired, Constructing, Max int32
	// Acquires counts connections taken from the pool; Waits those that
	// had to wait for one (none idle), WaitTime their total wait.
	Acquires, Waits int64
	WaitTime        time.Duration
}

// ListenerStats is the change listener's state.
type ListenerStats struct {
	Enabled, Connected     bool
	LastNotification       time.Time // zero: none yet
	Notifications, Resyncs int64
	Lag                    int64
}

var (
	poolConnsDesc     = prometheus.NewDesc(ns+"_store_pool_connections", "Connections of the store's pool, by state (total, idle, acquired, constructing).", []string{"state"}, nil)
	poolMaxDesc       = prometheus.NewDesc(ns+"_store_pool_max_connections", "The pool's bound (store.postgres.max_conns).", nil, nil)
	poolAcquiresDesc  = prometheus.NewDesc(ns+"_store_pool_acquires_total", "Connections taken from the pool.", nil, nil)
	poolWaitsDesc     = prometheus.NewDesc(ns+"_store_pool_acquire_waits_total", "Acquires that waited for a connection (none idle): a pool too small, or a slow database.", nil, nil)
	poolWaitTimeDesc  = prometheus.NewDesc(ns+"_store_pool_acquire_wait_seconds_total", "Time acquires spent waiting for a connection.", nil, nil)
	lstConnectedDesc  = prometheus.NewDesc(ns+"_store_listener_connected", "1 while the change listener is connected and LISTENing; 0 while it reconnects or the database has no notifications (keys then leave caches at their TTL; correctness does not depend on it).", nil, nil)
	lstAgeDesc        = prometheus.NewDesc(ns+"_store_listener_last_notification_age_seconds", "Time since the change listener last heard a change (absent before the first).", nil, nil)
	lstNotesDesc      = prometheus.NewDesc(ns+"_store_listener_notifications_total", "Change notifications heard.", nil, nil)
	lstResyncsDesc    = prometheus.NewDesc(ns+"_store_listener_resyncs_total", "Whole-cache drops for changes the listener may have missed (reconnects, gaps).", nil, nil)
	lstLagDesc        = prometheus.NewDesc(ns+"_store_listener_lag_changes", "Changes counted in the database but not yet heard, at the listener's last poll.", nil, nil)
	postgresStoreDesc = []*prometheus.Desc{poolConnsDesc, poolMaxDesc, poolAcquiresDesc, poolWaitsDesc, poolWaitTimeDesc,
		lstConnectedDesc, lstAgeDesc, lstNotesDesc, lstResyncsDesc, lstLagDesc}
)

type postgresCollector struct {
	pool     func() PoolStats
	listener func() ListenerStats
	now      func() time.Time
}

func (c postgresCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range postgresStoreDesc {
		ch <- d
	}
}

func (c postgresCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.pool()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	for state, n := range map[string]int32{"total": p.Total, "idle": p.Idle, "acquired": p.Acquired, "constructing": p.Constructing} {
		gauge(poolConnsDesc, float64(n), state)
	}
	gauge(poolMaxDesc, float64(p.Max))
	counter(poolAcquiresDesc, float64(p.Acquires))
	counter(poolWaitsDesc, float64(p.Waits))
	counter(poolWaitTimeDesc, p.WaitTime.Seconds())
	l := c.listener()
	connected := 0.0
	if l.Connected {
		connected = 1
	}
	gauge(lstConnectedDesc, connected)
	if !l.LastNotification.IsZero() {
		gauge(lstAgeDesc, c.now().Sub(l.LastNotification).Seconds())
	}
	counter(lstNotesDesc, float64(l.Notifications))
	counter(lstResyncsDesc, float64(l.Resyncs))
	gauge(lstLagDesc, float64(l.Lag))
}

// WatchPostgres exports the PostgreSQL store's pool and change listener.
func (m *Metrics) WatchPostgres(pool func() PoolStats, listener func() ListenerStats) {
	m.Registry.MustRegister(postgresCollector{pool: pool, listener: listener, now: time.Now})
}
