package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"log/syslog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Shipping.
//
// With Options.Sink set, every line the writer appends to the file is
// also handed, byte for byte and in chain order, to the sink (stdout for a
// log shipper, syslog/journald), so the copy keeps the chain and the
// signatures and verifies off-host with the public key alone
// (`tokenvault audit verify --pubkey audit-signing.key.pub shipped.jsonl`).
//
// The copy is made after the group is durable in the file, by a goroutine
// of its own with a bounded queue: a slow sink does not slow a write
// until the queue is full, and then the writer waits (backpressure, never
// a line missing from the copy). A failed Ship is retried every second.
//
// "Shipped": the seq of the last line the sink accepted is kept in
// <path>.shipped (rewritten at most once a second and at Close). A
// rotated file is shipped once its last entry is; retention deletes only
// shipped files. After a crash, the next Open ships again what follows
// the saved seq (so a copy may repeat up to a second of lines; Verify
// skips repeated lines that match). With no sink, every file counts as
// shipped. When shipping is first enabled (no state file), what the log
// held before counts as shipped: it was never meant to be.

// Sink receives a copy of every line of the log. It is also where a
// second store of the log plugs in (a database sink across replicas, in
// a later change): such a sink must be durable before a reveal's result
// leaves, so it would be called in the writer's commit, not through this
// asynchronous copy.
type Sink interface {
	// Ship writes whole lines (each ending in a newline), in chain order.
	// An error is retried with the same lines.
	Ship(lines []byte) error
	Close() error
}

// NewWriterSink ships to w (os.Stdout: JSON lines for a log shipper).
func NewWriterSink(w io.Writer) Sink { return writerSink{w} }

type writerSink struct{ w io.Writer }

func (s writerSink) Ship(lines []byte) error { _, err := s.w.Write(lines); return err }
func (s writerSink) Close() error            { return nil }

// DialSyslog ships to syslog, one message per line (facility auth,
// severity info, the given tag): network and address as in log/syslog
// ("" and "": the local syslog socket, which journald serves). Each
// message is the line itself, so a collector's message field is the line.
func DialSyslog(network, address, tag string) (Sink, error) {
	w, err := syslog.Dial(network, address, syslog.LOG_AUTH|syslog.LOG_INFO, tag)
	if err != nil {
		return nil, fmt.Errorf("audit syslog: %w", err)
	}
	return syslogSink{w}, nil
}

type syslogSink struct{ w *syslog.Writer }

func (s syslogSink) Ship(lines []byte) error {
	for len(lines) > 0 {
		i := bytes.IndexByte(lines, '\n') + 1
		if _, err := s.w.Write(lines[:i]); err != nil {
			return err
		}
		lines = lines[i:]
	}
	return nil
}

func (s syslogSink) Close() error { return s.w.Close() }

// shipQueue bounds the groups waiting for the sink.
const shipQueue = 1024

// shipCloseBound bounds how long Close retries a failing sink; what is
// left is shipped at the next start.
const shipCloseBound = 10 * time.Second

type shipper struct {
	sink      Sink
	log       *slog.Logger
	statePath string
	ch        chan shipChunk
	done      chan struct{}
	closing   atomic.Bool
	queued    atomic.Uint64 // seq of the last line queued
	shipped   atomic.Uint64 // seq of the last line the sink accepted
	errors    atomic.Uint64 // failed Ship calls
	saved     uint64        // shipper goroutine only
	savedAt   time.Time
}

type shipChunk struct {
	lines []byte
	last  uint64
}

func shipStatePath(path string) string { return path + ".shipped" }

// startShipping starts the shipper and queues what a crash left unshipped.
// The log's head (l.seq) is what Open found.
func (l *Log) startShipping() error {
	s := &shipper{sink: l.opts.Sink, log: l.log, statePath: shipStatePath(l.opts.Path),
		ch: make(chan shipChunk, shipQueue), done: make(chan struct{})}
	from := l.seq
	b, err := os.ReadFile(s.statePath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Shipping is new: nothing before it was to be shipped.
	case err != nil:
		return fmt.Errorf("shipping state: %w", err)
	default:
		n, perr := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if perr != nil {
			return fmt.Errorf("shipping state %s: %w", s.statePath, perr)
		}
		from = min(n, l.seq)
	}
	s.shipped.Store(from)
	s.queued.Store(from)
	l.ship = s
	// Written now, so that a crash before the first save is not taken
	// for shipping that was just turned on. Before the loop: saved is the
	// loop's.
	if err := s.write(from); err != nil {
		return fmt.Errorf("shipping state: %w", err)
	}
	go s.loop()
	if from == l.seq {
		return nil
	}
	// Ship again what follows the saved seq, from the files.
	l.log.Warn("audit shipping: shipping the entries a stop left unshipped", "from", from+1, "to", l.seq)
	return scanLog(l.opts.Path, func(_ string, e Entry) bool {
		if e.Seq > from && e.Seq <= l.seq {
			if line, err := e.Line(); err == nil {
				s.queue(line, e.Seq)
			}
		}
		return e.Seq < l.seq
	})
}

// queue hands a group's lines (copied) to the shipper; it waits while the
// queue is full.
func (s *shipper) queue(lines []byte, last uint64) {
	s.ch <- shipChunk{lines: bytes.Clone(lines), last: last}
	s.queued.Store(last)
}

func (s *shipper) loop() {
	defer close(s.done)
	for c := range s.ch {
		var deadline time.Time
		for {
			err := s.sink.Ship(c.lines)
			if err == nil {
				break
			}
			s.errors.Add(1)
			if s.closing.Load() {
				if deadline.IsZero() {
					deadline = time.Now().Add(shipCloseBound)
				} else if time.Now().After(deadline) {
					s.log.Error("audit shipping: giving up at shutdown; the next start ships the rest", "from", s.shipped.Load()+1, "err", err)
					for range s.ch { // drain, so Close can go on
					}
					return
				}
			}
			s.log.Error("audit shipping failed; retrying (audited calls wait once the queue is full)", "err", err)
			time.Sleep(time.Second)
		}
		s.shipped.Store(c.last)
		if time.Since(s.savedAt) >= time.Second {
			if err := s.save(); err != nil {
				s.log.Error("audit shipping: saving the state", "err", err)
			}
		}
	}
}

// save writes the shipped seq (through a temporary file, renamed: a
// crash leaves the old value, which only makes retention more careful).
func (s *shipper) save() error {
	s.savedAt = time.Now()
	if n := s.shipped.Load(); n != s.saved {
		return s.write(n)
	}
	return nil
}

func (s *shipper) write(n uint64) error {
	tmp := s.statePath + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatUint(n, 10)+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.statePath); err != nil {
		return err
	}
	s.saved = n
	return nil
}

// close ships what is queued (bounded if the sink fails), saves the state
// and closes the sink. After the writer has exited.
func (s *shipper) close() error {
	s.closing.Store(true)
	close(s.ch)
	<-s.done
	return errors.Join(s.save(), s.sink.Close())
}

// shippedFile reports whether the rotated file whose successor starts at
// seq next has been shipped.
func (l *Log) shippedFile(next uint64) bool {
	return l.ship == nil || l.ship.shipped.Load() >= next-1
}

// scanLog is Scan for the log whose current file is path.
func scanLog(path string, fn func(file string, e Entry) bool) error {
	files, err := listRotated(path)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	names := make([]string, 0, len(files)+1)
	for _, f := range files {
		names = append(names, f.name)
	}
	if _, err := os.Lstat(path); err == nil {
		names = append(names, filepath.Base(path))
	}
	for _, name := range names {
		more, err := scanFile(filepath.Join(dir, name), func(e Entry) bool { return fn(name, e) })
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if !more {
			return nil
		}
	}
	return nil
}
