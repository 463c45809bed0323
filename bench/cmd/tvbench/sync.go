package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// syncCmd measures what one durable sync costs on the disk holding -dir:
// the calling thread's CPU time (user and system) and the wall time per
// append-and-fsync, the audit log's way of syncing a group of entries,
// and per write-into-a-mapping-and-msync, badger's way of syncing its
// write-ahead log. Durable tokenvault calls share one such sync per group
// (tvbench run reports store_syncs_per_call and audit_syncs_per_call), so
// the CPU per sync times the syncs per call is their share of the CPU per
// call. On some virtual machines a sync costs far more CPU than on others
// (BENCHMARKS.md), which no change to tokenvault's code can move.
func syncCmd(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("sync", flag.ContinueOnError)
	dir := fs.String("dir", os.TempDir(), "directory on the disk to measure (use the server's data directory's file system)")
	n := fs.Int("n", 1000, "syncs per method (1..1000000)")
	size := fs.Int("size", 1024, "bytes written before each sync (1..1048576)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *n < 1 || *n > 1_000_000 {
		return fmt.Errorf("-n %d: must be 1..1000000", *n)
	}
	if *size < 1 || *size > 1<<20 {
		return fmt.Errorf("-size %d: must be 1..1048576", *size)
	}
	if int64(*n)*int64(*size) > maxSyncBytes {
		return fmt.Errorf("-n %d × -size %d: at most %d MiB written per method", *n, *size, maxSyncBytes>>20)
	}
	tmp, err := os.MkdirTemp(*dir, "tvbench-sync-")
	if err != nil {
		return fmt.Errorf("-dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(stdout, "tvbench sync — %s, %d syncs of %d bytes each\n", *dir, *n, *size)
	for _, m := range syncMethods {
		r, err := m.run(ctx, filepath.Join(tmp, m.name), *n, *size)
		if err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		fmt.Fprintf(stdout, "  %-22s cpu %6.1f µs (user %.1f, system %.1f)  wall %7.1f µs  per sync\n",
			m.name, us(r.user+r.sys)/float64(*n), us(r.user)/float64(*n), us(r.sys)/float64(*n), us(r.wall)/float64(*n))
	}
	return nil
}

// maxSyncBytes bounds what one method writes (-n × -size), so that a
// typo does not fill the disk.
const maxSyncBytes = 1 << 30

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// syncCost is what n syncs cost the thread that made them.
type syncCost struct{ user, sys, wall time.Duration }

type syncMethod struct {
	name string
	run  func(ctx context.Context, path string, n, size int) (syncCost, error)
}
