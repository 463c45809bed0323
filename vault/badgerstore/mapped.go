package badgerstore

import (
	"bufio"
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

	"github.com/tokenvault/tokenvault/internal/procmem"
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
// mappedCheckEvery and, once it is above the limit, drops the pages of its
// tables (*.sst) from the process with madvise(MADV_DONTNEED). On a shared
// file mapping that only unmaps: the pages stay in the kernel's page cache,
// so the next read of one is a minor fault, not a disk read. Tables are
// what grows with the data; the memtable and value logs are bounded by
// badger's options and are left alone.
//
// MADV_DONTNEED zeroes private anonymous memory, so it must never reach an
// address badger has unmapped and the Go runtime reused. It is applied only
// to tables an open iterator holds (badger unmaps a table when its last
// reference goes) that were in the tree both before and after the iterator
// was made, so certainly held throughout. A table not known to be held (one
// a compaction is still writing) is left for the next check.
//
// Tried and dropped (BENCHMARKS.md, "Memory"): MADV_PAGEOUT, which evicts
// from the page cache too. For tables, the next compaction read what it had
// just written back from disk (15 GB in the first 150 s of a bulk load);
// for the logs, 346 MB of reads in a 3 M-token load, for no lower peak RSS.

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

// residentFile is this process's RssFile in bytes.
func residentFile() (int64, error) {
	m, err := procmem.Read(0)
	if err != nil {
		return 0, err
	}
	if m.File < 0 {
		return 0, errors.New("badgerstore: no RssFile line in /proc/self/status")
	}
	return m.File, nil
}

// errMappedUnsupported: Options.MappedLimit on a system other than Linux
// (/proc/self/maps, and MADV_DONTNEED's meaning on shared mappings).
var errMappedUnsupported = errors.New("badgerstore: a mapped-file limit needs Linux")

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
			// (no procfs): say so once, and stop.
			s.log.Warn("badgerstore: the mapped-file limit is off from now on", "err", err)
			return
		}
	}
}

// limitMapped drops the store's table pages from the process if its
// RssFile is above limit, and returns the bytes of mappings it covered (0
// if under the limit).
func (s *Store) limitMapped(limit int64) (dropped int64, err error) {
	before, err := residentFile()
	if err != nil || before <= limit {
		return 0, err
	}
	if dropped, err = s.dropTables(); err != nil {
		return dropped, err
	}
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		after, _ := residentFile()
		s.log.Debug("badgerstore: dropped mapped table pages", "rss_file_before", before, "rss_file_after", after, "mapped", dropped)
	}
	return dropped, nil
}

// dropTables drops the pages of the store's tables from the process (see
// the top of this file) and returns how many bytes of mappings it covered.
func (s *Store) dropTables() (int64, error) {
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
		// Only badger's own files are mapped under its directory, and
		// only tables are named NNNNNN.sst.
		id, ok := table.ParseFileID(m.path)
		if !ok || !held[id] {
			continue
		}
		if err := dontNeed(m.start, m.end-m.start); err != nil {
			return n, err
		}
		n += int64(m.end - m.start)
	}
	return n, nil
}
