package badgerstore

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/table"
)

// Badger reads and writes its tables, value log and memtable logs through
// shared memory mappings. Every page of them it has touched stays mapped
// into the process, and counts in its resident set (RssFile), until the
// kernel needs the memory: a bulk load of 10 M tokens leaves ~1.8 GiB of
// them (BENCHMARKS.md, "Memory"), more than the machine the service is
// sized for. The pages are clean or written back, so the kernel can drop
// them at any time; it only does so under memory pressure, and a container
// or a monitor sees a process that grows with its data until then.
//
// With Options.MappedLimit the store checks its RssFile every
// mappedCheckEvery and, once it is above the limit, drops its mappings of
// the data directory's pages (madvise; Linux):
//
//   - Tables (*.sst) with MADV_DONTNEED: the pages leave the process but
//     stay in the kernel's page cache, so a later read is a minor fault, not
//     a disk read. (MADV_PAGEOUT evicts them from the cache too: a first
//     version used it for everything, and compactions then read the tables
//     they had just written back from disk, 15 GB in the first 150 s of a
//     bulk load.) MADV_DONTNEED zeroes private anonymous memory, so it must
//     never reach an address badger has unmapped and the Go runtime reused:
//     it is applied only to tables that an open iterator holds (badger
//     unmaps a table when its last reference goes) and that were in the
//     tree both before and after the iterator was made, so certainly held.
//     A table not known to be held (one a compaction is still writing) is
//     left for the next check.
//   - Everything else (memtable logs *.mem, value logs *.vlog) with
//     MADV_PAGEOUT: those pages are written, not read back (a log is read
//     only on replay, and by the value-log GC), so evicting them costs few
//     reads; and on whatever the runtime may have mapped at a stale
//     address, MADV_PAGEOUT only reclaims (does nothing without swap).

// mapping is one line of /proc/self/maps that the limiter may page out.
type mapping struct {
	start, end uint64
	shared     bool
	path       string
}

// errMapsLine is wrapped by parseMapsLine's errors (the line itself is not
// quoted: paths are the data directory's, harmless, but the error has no
// use for them).
var errMapsLine = errors.New("badgerstore: malformed /proc/self/maps line")

// parseMapsLine parses one line of /proc/PID/maps:
//
//	start-end perms offset dev inode [path]
//
// with hex addresses, perms like "rw-s" (s: shared, p: private) and a path
// that may contain spaces (and ends in " (deleted)" once the file is gone).
func parseMapsLine(line string) (mapping, error) {
	var m mapping
	fields := strings.SplitN(line, " ", 6)
	if len(fields) < 5 {
		return m, fmt.Errorf("%w: %d fields", errMapsLine, len(fields))
	}
	lo, hi, ok := strings.Cut(fields[0], "-")
	if !ok {
		return m, fmt.Errorf("%w: no address range", errMapsLine)
	}
	var err error
	if m.start, err = strconv.ParseUint(lo, 16, 64); err != nil {
		return m, fmt.Errorf("%w: start address", errMapsLine)
	}
	if m.end, err = strconv.ParseUint(hi, 16, 64); err != nil || m.end < m.start {
		return m, fmt.Errorf("%w: end address", errMapsLine)
	}
	if len(fields[1]) != 4 {
		return m, fmt.Errorf("%w: permissions", errMapsLine)
	}
	m.shared = fields[1][3] == 's'
	if len(fields) == 6 {
		// The kernel pads the inode column with spaces before the path.
		m.path = strings.TrimLeft(fields[5], " ")
	}
	return m, nil
}

// mappedUnder returns the shared file mappings of r (a /proc/PID/maps)
// whose files are in dir or below it. Lines that do not parse are skipped:
// the format is the kernel's, and a limiter that stops over one odd line
// would stop limiting.
func mappedUnder(r io.Reader, dir string) ([]mapping, error) {
	dir = filepath.Clean(dir)
	var out []mapping
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		m, err := parseMapsLine(sc.Text())
		if err != nil || !m.shared || m.end == m.start || !filepath.IsAbs(m.path) {
			continue
		}
		rel, err := filepath.Rel(dir, filepath.Clean(strings.TrimSuffix(m.path, " (deleted)")))
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			continue
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// rssFile reads the RssFile line of r (a /proc/PID/status), in bytes.
func rssFile(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("RssFile:"))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) != 2 || f[1] != "kB" {
			return 0, errors.New("badgerstore: malformed RssFile line")
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 {
			return 0, errors.New("badgerstore: malformed RssFile value")
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("badgerstore: no RssFile line")
}

// errMappedUnsupported: Options.MappedLimit on a system without
// MADV_PAGEOUT (anything but Linux).
var errMappedUnsupported = errors.New("badgerstore: a mapped-file limit needs Linux (madvise MADV_PAGEOUT)")

// mappedCheckEvery is how often the limiter reads RssFile: a read of
// /proc/self/status (~10 µs), cheap enough to do four times a second, and
// often enough that a bulk load, whose compactions write tables at up to
// ~100 MiB/s through the mappings, passes the limit by tens of MiB at most.
const mappedCheckEvery = 250 * time.Millisecond

// limitMappedEvery runs limitMapped every interval until Close.
func (s *Store) limitMappedEvery(every time.Duration, limit int64) {
	defer s.limiter.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
		}
		if _, err := s.limitMapped(limit); err != nil {
			// Reading /proc or madvise failing once fails every time
			// (no procfs, an old kernel): say so once, and stop.
			s.log.Warn("badgerstore: the mapped-file limit is off from now on", "err", err)
			return
		}
	}
}

// limitMapped pages out the store's file mappings if the process's
// RssFile is above limit, and returns the RssFile it saw and, if it paged
// out, the bytes of mappings it covered.
func (s *Store) limitMapped(limit int64) (paged int64, err error) {
	before, err := residentFile()
	if err != nil || before <= limit {
		return 0, err
	}
	paged, err = s.pageOut()
	if err != nil {
		return paged, err
	}
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		after, _ := residentFile()
		s.log.Debug("badgerstore: paged out mapped files", "rss_file_before", before, "rss_file_after", after, "mapped", paged)
	}
	return paged, nil
}

// pageOut drops the store's mappings of its data directory's files from
// the process (see the top of this file) and returns how many bytes of
// mappings it covered.
func (s *Store) pageOut() (int64, error) {
	// Hold every table of the tree while the maps are read and advised.
	before := s.db.Tables()
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	it := txn.NewIterator(badger.IteratorOptions{})
	defer it.Close()
	held := make(map[uint64]bool, len(before))
	for _, t := range before {
		held[t.ID] = false
	}
	for _, t := range s.db.Tables() {
		if _, ok := held[t.ID]; ok {
			held[t.ID] = true
		}
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	ms, err := mappedUnder(f, s.dir)
	f.Close()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, m := range ms {
		advice := advisePageOut
		if id, ok := table.ParseFileID(filepath.Base(m.path)); ok && strings.HasSuffix(m.path, ".sst") {
			if !held[id] {
				// Being written by a compaction, or just replaced: not
				// held, so no MADV_DONTNEED; and MADV_PAGEOUT would make
				// the next compaction read it from disk. The next check
				// finds it in the tree.
				continue
			}
			advice = adviseDontNeed
		}
		gone, err := madvise(m.start, m.end-m.start, advice)
		if err != nil {
			return n, err
		}
		if !gone {
			n += int64(m.end - m.start)
		}
	}
	return n, nil
}
