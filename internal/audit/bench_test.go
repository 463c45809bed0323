package audit_test

import (
	"context"
	"path/filepath"
	"testing"
)

// BenchmarkWrite measures durable appends (write + fsync) from concurrent
// callers; group commit shares one fsync between them.
func BenchmarkWrite(b *testing.B) {
	l := open(b, filepath.Join(b.TempDir(), "audit.jsonl"), newKey(b), 1000)
	defer l.Close()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		e := entry(1)
		for pb.Next() {
			if err := l.Write(context.Background(), e); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
