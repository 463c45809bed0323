package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenvault/tokenvault/internal/audit"
)

// WatchAudit exports the audit log's counters: bytes written, the current
// file's size, rotations, retention deletions, shipping lag and errors,
// and unverifiable histories continued at start.
func (m *Metrics) WatchAudit(stats func() audit.Stats) {
	gauge := func(name, help string, f func(audit.Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: name, Help: help},
			func() float64 { return f(stats()) })
	}
	counter := func(name, help string, f func(audit.Stats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help},
			func() float64 { return f(stats()) })
	}
	m.Registry.MustRegister(
		counter("audit_bytes_written_total", "Bytes appended to the audit log.", func(s audit.Stats) float64 { return float64(s.BytesWritten) }),
		counter("audit_syncs_total", "fsyncs of the audit log file, one per group of entries written together.", func(s audit.Stats) float64 { return float64(s.Syncs) }),
		gauge("audit_file_bytes", "Size of the current audit log file.", func(s audit.Stats) float64 { return float64(s.CurrentSize) }),
		counter("audit_rotations_total", "Audit log rotations.", func(s audit.Stats) float64 { return float64(s.Rotations) }),
		counter("audit_retention_deleted_files_total", "Rotated audit log files deleted by retention.", func(s audit.Stats) float64 { return float64(s.RetentionFiles) }),
		gauge("audit_shipping_lag_entries", "Audit entries written to the file but not yet shipped (0 without shipping).", func(s audit.Stats) float64 { return float64(s.ShippingLag) }),
		counter("audit_ship_errors_total", "Failed attempts to ship audit lines (retried).", func(s audit.Stats) float64 { return float64(s.ShipErrors) }),
		counter("audit_db_write_errors_total", "Failed writes of audit groups to the database sink (audited calls are refused meanwhile).", func(s audit.Stats) float64 { return float64(s.DB.WriteErrors) }),
		counter("audit_db_batches_total", "Groups of audit entries written to the database sink, one statement each.", func(s audit.Stats) float64 { return float64(s.DB.Batches) }),
		counter("audit_db_rows_total", "Audit rows written to the database sink (rows / batches: the mean batch size).", func(s audit.Stats) float64 { return float64(s.DB.Rows) }),
		gauge("audit_db_last_batch_rows", "Rows in the last group written to the database sink.", func(s audit.Stats) float64 { return float64(s.DB.LastBatch) }),
		gauge("audit_db_lag_seconds", "How long the audit database has been refusing writes (0 while it answers).", func(s audit.Stats) float64 { return s.DB.Lag.Seconds() }),
		counter("audit_verify_errors_total", "Audit histories that did not verify at start and were continued as allowed (allow_unverified_history).", func(s audit.Stats) float64 { return float64(s.VerifyErrors) }),
	)
}
