package badgerstore

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tokenvault/tokenvault/vault"
)

// Free-space admission.
//
// Badger writes its write-ahead log (*.mem), value log (*.vlog) and tables
// (*.sst) through memory-mapped files that it first extends with ftruncate:
// the files are sparse, and a page gets its disk block only when it is
// written. On a full filesystem that write cannot fail with ENOSPC; the
// kernel sends SIGBUS instead, which Go cannot recover from, and the
// process dies with "fatal error: fault". So the store never lets badger
// write into space that is not there: every write is admitted only while
// the filesystem keeps a reserve free, sized to what badger may still
// write on its own once writes stop (flushing every memtable to a table,
// and a compaction), and refused with vault.ErrStorageFull below it. A
// refusal comes before the write starts, so nothing is half-written;
// reads need no space and keep working; and the first write after space
// was freed is admitted again (the free space is measured, not latched).

const (
	// spaceRecheck is how long a measured free space is trusted; within it
	// the store subtracts what it admitted. Badger's own writes (flushes,
	// compactions) are seen at the next measurement, and the reserve
	// covers them meanwhile.
	spaceRecheck = 100 * time.Millisecond
	// spaceHysteresis: see check. Larger than the largest request's writes.
	spaceHysteresis = 32 << 20
	// openMargin is what opening a store needs beyond replaying its
	// write-ahead log: a new memtable file's first pages, the manifest,
	// the discard stats, a value-log header.
	openMargin = 16 << 20
	// minGCSpace is what a value-log GC may write (it rewrites the live
	// part of one value-log file before deleting it): run only with that
	// much free above the reserve.
	minGCSpace = valueLogFileSize
	// valueLogFileSize: badger's default is 1 GiB; a smaller file makes a
	// value-log GC write (and need free) less at a time, and lets erased
	// subjects' sealed records leave the disk sooner.
	valueLogFileSize = 256 << 20
)

// DefaultDiskReserve is the reserve with badger's options of this store:
// every memtable flushed to a table, plus one memtable's size more for
// compaction output and the write groups in flight (256 MiB). A compaction
// of a large level 0 can need more: a deployment whose disk is tight
// should alert on free space well before this.
func DefaultDiskReserve() int64 { return (numMemtables + 1) * memTableSize }

// space measures the free space of the store's filesystem and admits
// writes while it stays above the reserve. Safe for concurrent use.
type space struct {
	dir     string
	reserve int64

	mu      sync.Mutex
	free    int64 // last measured, less what was admitted since
	checked time.Time
	full    bool // writes are refused; logged when it changes
	log     *slog.Logger
}

func newSpace(dir string, reserve int64, log *slog.Logger) *space {
	return &space{dir: dir, reserve: reserve, log: log}
}

// admit reserves n bytes for a write, or refuses it with an error that
// wraps vault.ErrStorageFull.
func (s *space) admit(n int64) error {
	if s == nil {
		return nil // in memory
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Measure again when the last measurement is old, or when the write
	// would go below the reserve (the space may have been freed since).
	if time.Since(s.checked) > spaceRecheck || s.free-n < s.reserve {
		if err := s.measure(); err != nil {
			return err
		}
	}
	if s.free-n < s.reserve {
		s.setFull(true)
		return s.errFull()
	}
	if s.free-n >= s.reserve+spaceHysteresis {
		s.setFull(false)
	}
	s.free -= n
	return nil
}

// setFull logs when writes start or stop being refused. Called with s.mu
// held.
func (s *space) setFull(full bool) {
	if full == s.full {
		return
	}
	s.full = full
	if full {
		s.log.Warn("store: disk full: writes are refused until space is freed; reads still work",
			"dir", s.dir, "free_mib", max(s.free, 0)>>20, "reserve_mib", s.reserve>>20)
	} else {
		s.log.Info("store: free space is back: writes are admitted again", "dir", s.dir, "free_mib", s.free>>20)
	}
}

// measure is called with s.mu held.
func (s *space) measure() error {
	free, err := freeBytes(s.dir)
	if err != nil {
		return err
	}
	s.free, s.checked = free, time.Now()
	return nil
}

func (s *space) errFull() error {
	return fmt.Errorf("%w: %s has %d MiB free, the store keeps %d MiB in reserve",
		vault.ErrStorageFull, s.dir, max(s.free, 0)>>20, s.reserve>>20)
}

// check measures the free space now and reports an error wrapping
// vault.ErrStorageFull while the store is full: from a refused write (or
// free space under the reserve) until the free space is spaceHysteresis
// above the reserve, so that health does not flap while the free space
// hovers at the reserve, admitting small writes and refusing large ones.
func (s *space) check() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.measure(); err != nil {
		return err
	}
	switch {
	case s.free < s.reserve:
		s.setFull(true)
	case s.free >= s.reserve+spaceHysteresis:
		s.setFull(false)
	}
	if s.full {
		return s.errFull()
	}
	return nil
}

// above reports whether at least n bytes are free above the reserve.
func (s *space) above(n int64) bool {
	if s == nil {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.measure() != nil {
		return false
	}
	return s.free-n >= s.reserve
}

// StorageFull measures the free space of the store's filesystem and
// reports an error wrapping [vault.ErrStorageFull] while writes are
// refused for lack of it (nil otherwise). Health checks use it.
func (s *Store) StorageFull() error { return s.space.check() }

// checkOpenSpace refuses to open a store in dir when badger could not
// replay its write-ahead log there: replaying writes the log's memtables
// to tables (through mmap, so a full disk would be a SIGBUS, not an
// error). What it needs is the write-ahead log's size plus a margin.
func checkOpenSpace(dir string) error {
	probe := dir
	for {
		if _, err := os.Stat(probe); err == nil {
			break
		}
		parent := filepath.Dir(probe)
		if parent == probe {
			return nil // nothing to measure; badger will report the error
		}
		probe = parent // not created yet: measure where it will be
	}
	free, err := freeBytes(probe)
	if err != nil {
		return err
	}
	need := int64(openMargin)
	if err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".mem") {
			need += allocated(path)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("badgerstore: %s: %w", dir, err)
	}
	if free < need {
		return fmt.Errorf("%w: %s has %d MiB free, opening the store needs at least %d MiB: free space on that filesystem (or move the data directory) and start again",
			vault.ErrStorageFull, dir, free>>20, (need+1<<20-1)>>20)
	}
	return nil
}

// maxWrite bounds what one transaction outside the write group (shreds,
// purges, rights) writes, for the admission estimate: badger's limit for
// one transaction.
func maxWrite(db *badger.DB) int64 { return db.MaxBatchSize() }
