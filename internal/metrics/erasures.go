package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenvault/tokenvault/vault"
)

// Erasure-event backlog per consumer (vault/erasures.go), read from the
// store on each scrape (the store is the truth across servers).
var (
	eventsPendingDesc = prometheus.NewDesc(ns+"_erasure_events_pending",
		"Erasure events a consumer has not acknowledged yet.", []string{"consumer"}, nil)
	eventsOldestDesc = prometheus.NewDesc(ns+"_erasure_events_oldest_pending_age_seconds",
		"Age of the oldest erasure event a consumer has not acknowledged (0: none pending).", []string{"consumer"}, nil)
)

type erasureCollector struct {
	backlog func(context.Context) (map[string]vault.ConsumerBacklog, error)
	now     func() time.Time
}

func (c erasureCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- eventsPendingDesc
	ch <- eventsOldestDesc
}

func (c erasureCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := c.backlog(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(eventsPendingDesc, err)
		return
	}
	for consumer, cb := range b {
		age := 0.0
		if cb.Pending > 0 {
			age = c.now().Sub(cb.Oldest).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(eventsPendingDesc, prometheus.GaugeValue, float64(cb.Pending), consumer)
		ch <- prometheus.MustNewConstMetric(eventsOldestDesc, prometheus.GaugeValue, age, consumer)
	}
}

// WatchErasures exports the erasure-event backlog of every consumer.
func (m *Metrics) WatchErasures(backlog func(context.Context) (map[string]vault.ConsumerBacklog, error)) {
	m.Registry.MustRegister(erasureCollector{backlog: backlog, now: time.Now})
}
