package metrics_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/tokenvault/tokenvault/internal/audit"
	"github.com/tokenvault/tokenvault/internal/metrics"
)

func TestWatchAudit(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := audit.Open(audit.Options{Path: path, SigningKey: key, Sink: audit.NewWriterSink(io.Discard),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	m.WatchAudit(l.Stats)
	for range 3 {
		if err := l.Write(context.Background(), audit.Entry{Op: "detokenize", Outcome: "OK"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	mf := gather(t, m)
	written := sample(mf, "tokenvault_audit_bytes_written_total")
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"tokenvault_audit_bytes_written_total", written > float64(st.Size())},
		{"tokenvault_audit_file_bytes", sample(mf, "tokenvault_audit_file_bytes") == float64(st.Size())},
		{"tokenvault_audit_rotations_total", sample(mf, "tokenvault_audit_rotations_total") == 1},
		// Three writes one after the other: three groups, each synced
		// (plus the rotation's and Close's checkpoints).
		{"tokenvault_audit_syncs_total", sample(mf, "tokenvault_audit_syncs_total") >= 3},
		{"tokenvault_audit_shipping_lag_entries", sample(mf, "tokenvault_audit_shipping_lag_entries") == 0},
		{"tokenvault_audit_ship_errors_total", sample(mf, "tokenvault_audit_ship_errors_total") == 0},
		{"tokenvault_audit_verify_errors_total", sample(mf, "tokenvault_audit_verify_errors_total") == 0},
		{"tokenvault_audit_retention_deleted_files_total", sample(mf, "tokenvault_audit_retention_deleted_files_total") == 0},
	} {
		if !c.ok {
			t.Errorf("%s: %v", c.name, sample(mf, c.name))
		}
	}
}
