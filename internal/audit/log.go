package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// ErrUnavailable is returned by Write when the log cannot be written (or
// was closed). Callers must then refuse the audited operation: there is
// no unaudited reveal.
var ErrUnavailable = errors.New("audit log unavailable")

// ErrBusy is returned by WriteAsync when the writer's queue is full: the
// caller decides what to do with the entry (the guard counts refusals it
// cannot queue into a summary entry instead of waiting).
var ErrBusy = errors.New("audit log queue full")

// Options configure a Log.
type Options struct {
	// Path of the log file (created if missing, appended to otherwise).
	Path string
	// SigningKey signs checkpoints.
	SigningKey ed25519.PrivateKey
	// CheckpointEvery: a checkpoint after this many entries (default
	// 1000); CheckpointInterval: and at least this often while entries
	// come in (default 1 minute). A checkpoint is also written at Close.
	CheckpointEvery    int
	CheckpointInterval time.Duration
	Logger             *slog.Logger
	Now                func() time.Time
	// OnFailure, if set, is called for every entry that could not be
	// written (for the audit_write_failures_total metric).
	OnFailure func()
	// AllowUnverified lets Open continue a log whose end it cannot verify
	// (see Log.verifyTail) instead of refusing; a notice entry saying so
	// is then the first thing written. For an operator who has checked
	// the log with `tokenvault audit verify` and knows why.
	AllowUnverified bool
	// Rotation: when the current file is rotated, what becomes of
	// rotated files, and which may be deleted (rotate.go).
	Rotation Rotation
	// SubjectHash, if set, replaces every subject id of an entry by its
	// keyed hash before the entry is queued (SubjectHasher.Hash; a
	// failure refuses the entry like an unavailable log).
	SubjectHash func(subject string) (string, error)
	// Sink, if set, gets a copy of every line (ship.go); the log closes
	// it.
	Sink Sink
	// Replica is written into every entry (config replica.id).
	Replica string
	// DB, if set, is where entries are durable first (pgsink.go): each
	// group is written to the database in one statement before the same
	// bytes go to the file, and a write is acknowledged only once both
	// hold it. While the database refuses, Healthy and Write fail with
	// ErrUnavailable; writing resumes when it answers again. The caller
	// closes it after the log.
	DB *DB
}

// Log appends entries durably.
//
// Durability: Write returns only after the entry is written and fsynced.
// Concurrent writers share one write and one fsync (group commit, as in
// vault/badgerstore/group.go): while one group is being synced the next
// one gathers, so throughput scales with concurrency, not with fsync
// latency.
//
// Failure is sticky: after a failed write or sync the file's tail is
// unknown, so every later Write fails with ErrUnavailable until the server
// is restarted (which repairs a torn last line, see Open).
//
// Locking: no lock is held while a writer waits. The queue (reqs) is never
// closed; Close closes quit instead, so a send can race with Close but can
// never panic or block forever: every waiting writer also watches quit or
// exited. (An earlier version held a mutex across the send while the
// writer goroutine needed the same mutex to drain the queue: a full queue
// deadlocked every audited call.)
type Log struct {
	opts   Options
	f      *os.File
	lock   *os.File // held while open (lockLog); nil for a log that is not a regular file
	hasher *TokenHasher
	keyID  string
	log    *slog.Logger

	failed    atomic.Pointer[error] // sticky write failure
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
	reqs      chan *request
	// Close first closes stopping, so that no sender starts waiting any
	// more; then takes sendMu, which every send holds (read-locked) while
	// it puts a request on the queue, so that no send is under way; and
	// only then closes quit, so that the writer's final drain sees every
	// request that was ever accepted.
	stopping chan struct{}
	sendMu   sync.RWMutex
	quit     chan struct{} // closed by Close, after stopping
	exited   chan struct{} // closed when the writer goroutine is done

	// Owned by the writer goroutine.
	buf     bytes.Buffer // a group's lines, reused
	seq     uint64
	prev    string
	sinceCP int
	// sinceCPBytes: the size of the unsigned entries; a checkpoint is due
	// well before Open's read-back bound (maxTailBytes).
	sinceCPBytes int64
	lastCP       time.Time
	notice       *Entry // written first after Open, if set (see recover)
	forceCP      bool   // the next commit ends with a checkpoint
	regular      bool   // the log is a regular file (else: never rotated)
	// The current file (rotate.go): its size, first seq, first entry's
	// time, and how many entries other than the log's own it holds.
	size        int64
	fileFirst   uint64
	fileStart   time.Time
	fileEntries int

	stats stats    // counters for metrics (rotate.go)
	ship  *shipper // nil: no sink

	db     *DB // nil: the file alone (pgsink_log.go)
	dbs    dbState
	dbRows []dbRow // a group's rows, reused

	// Housekeeping (compression, retention) runs beside the writer:
	// hk signals a rotation; Close closes hkStop and waits for hkDone.
	hk     chan struct{}
	hkStop chan struct{}
	hkDone chan struct{}
}

type request struct {
	e    Entry
	done chan error // nil: asynchronous, nobody waits
	// own: an entry of the log itself (a continue entry), whose type the
	// writer keeps; rotate: not an entry but a request to rotate now.
	own     bool
	rotate  string
	rotated string // the rotated file's name, set before done is sent
}

// ErrInUse: another process has the audit log open (Open).
var ErrInUse = errors.New("in use by another process")

// lockLog keeps a second process off the log at path while this one has
// it open: two servers appending to one file (two data directories whose
// audit logs default to one place, as a restored directory beside the live
// one) would each continue the chain from their own last entry, and the
// log would never verify again. The lock is a file beside the log,
// path+".lock", so that it stays put while the log rotates. A log that is
// not a regular file (a character device such as /dev/stdout, a pipe) is
// not locked: it is not read back, so there is no chain in it to break.
func lockLog(path string) (*os.File, error) {
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		return nil, nil
	}
	lock, err := lockFile(path + ".lock")
	if errors.Is(err, ErrInUse) {
		return nil, fmt.Errorf("audit log %s: %w (which holds the lock %s): give each server its own audit log (auth.audit.path, serve --audit-log)", path, err, path+".lock")
	}
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return lock, nil
}

func closeLock(f *os.File) {
	if f != nil {
		f.Close()
	}
}

// Open opens (or creates) the log at opts.Path and continues its chain.
// A last line without its newline (a write torn by a crash, never
// acknowledged to anyone because its fsync had not returned) is cut off
// with a warning; any other unreadable tail is an error.
func Open(opts Options) (*Log, error) {
	if opts.CheckpointEvery <= 0 {
		opts.CheckpointEvery = 1000
	}
	if opts.CheckpointInterval <= 0 {
		opts.CheckpointInterval = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if len(opts.SigningKey) != ed25519.PrivateKeySize {
		return nil, errors.New("audit: no signing key")
	}
	if opts.DB != nil && opts.SubjectHash == nil {
		// The table is shared and indexed by subject: it holds keyed
		// hashes only, never a subject id.
		return nil, errors.New("audit: the database sink needs Options.SubjectHash")
	}
	hasher, err := NewTokenHasher(opts.SigningKey)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o700); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	lock, err := lockLog(opts.Path)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(opts.Path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		closeLock(lock)
		return nil, fmt.Errorf("audit log: %w", err)
	}
	l := &Log{opts: opts, f: f, lock: lock, hasher: hasher, log: opts.Logger, db: opts.DB,
		keyID: KeyID(opts.SigningKey.Public().(ed25519.PublicKey)),
		reqs:  make(chan *request, queueSize), stopping: make(chan struct{}), quit: make(chan struct{}), exited: make(chan struct{}),
		prev: ZeroHash, lastCP: opts.Now(),
		hk: make(chan struct{}, 1), hkStop: make(chan struct{}), hkDone: make(chan struct{})}
	fail := func(err error) (*Log, error) {
		if l.ship != nil {
			l.ship.close()
		} else if opts.Sink != nil {
			opts.Sink.Close()
		}
		f.Close()
		closeLock(lock)
		return nil, fmt.Errorf("audit log %s: %w", opts.Path, err)
	}
	if err := l.recover(); err != nil {
		return fail(err)
	}
	if err := l.openFileState(); err != nil {
		return fail(err)
	}
	var cont []*request // a new current file's first entries after a rotated one
	if l.seq == 0 && l.regular {
		if cont, err = l.continueRotated(); err != nil {
			return fail(err)
		}
	}
	if l.db != nil {
		if cont, err = l.dbContinue(cont); err != nil {
			return fail(err)
		}
	}
	if opts.Sink != nil {
		// Before anything new is written: what a stop left unshipped
		// goes first.
		if err := l.startShipping(); err != nil {
			return fail(err)
		}
	}
	if cont != nil {
		l.sinceCP, l.forceCP = 1, true
		l.commit(cont)
		if err := l.Healthy(); err != nil {
			return fail(fmt.Errorf("continuing the rotated file: %w", err))
		}
	}
	if l.notice != nil {
		// Written (and signed, sinceCP > 0) before any other entry.
		l.reqs <- &request{e: *l.notice}
		l.notice = nil
	}
	if l.seq == 0 {
		if l.regular {
			// A new log starts with a signed checkpoint (seq 1, over the
			// zero hash), so that a log without any checkpoint is always
			// one whose checkpoints were removed, never a crash in the
			// first minute of a new installation (Open refuses those).
			l.sinceCP = 1
			l.commit(nil)
			l.sinceCP = 0
			if err := l.Healthy(); err != nil {
				return fail(fmt.Errorf("writing its first checkpoint: %w", err))
			}
		}
	}
	go l.loop()
	go l.housekeeping()
	return l, nil
}

// recover finds the last entry to continue the chain from, after checking
// that what the server is about to sign really continues its own signed
// history (see verifyTail).
func (l *Log) recover() error {
	st, err := l.f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	if size == 0 || !st.Mode().IsRegular() {
		return nil
	}
	n := min(size, MaxLine+1)
	tail := make([]byte, n)
	if _, err := l.f.ReadAt(tail, size-n); err != nil && err != io.EOF {
		return err
	}
	var torn int64 // bytes of a torn last line, cut off once verified
	if tail[len(tail)-1] != '\n' {
		cut := bytes.LastIndexByte(tail, '\n') + 1 // 0 if no complete line in the tail
		if cut == 0 && n == size {
			// Only a torn first line.
		} else if cut == 0 {
			return errors.New("last line is longer than the maximum; run tokenvault audit verify")
		}
		keep := size - n + int64(cut)
		torn = size - keep
		tail, size = tail[:cut], keep
	}
	var e Entry
	var ut unsignedTail
	if size > 0 {
		body := tail[:len(tail)-1]
		last := body[bytes.LastIndexByte(body, '\n')+1:]
		if e, err = ParseLine(last); err != nil {
			return fmt.Errorf("last entry: %w; run tokenvault audit verify", err)
		}
		if e.Type == TypeContinue && len(last) == len(body) {
			// A rotation's new file whose first checkpoint was torn by a
			// crash: nothing but the continue entry, never acknowledged
			// to anyone. Start the file again (continueRotated).
			l.log.Warn("audit log: a new file holds only its continue entry (crash during a rotation); starting it again", "path", l.opts.Path)
			if err := l.f.Truncate(0); err != nil {
				return err
			}
			return l.f.Sync()
		}
		// Verified before anything is changed: a refused Open leaves the
		// file as it found it.
		if ut, err = l.verifyTail(size); err != nil {
			if !l.opts.AllowUnverified {
				return fmt.Errorf("%w; run tokenvault audit verify, and start with --audit-allow-unverified only once you know why (the acceptance is itself audited)", err)
			}
			// The operator accepted a history the server cannot vouch
			// for: say so in the log itself, inside the chain and under
			// the next checkpoint, so that no one mistakes it for a
			// verified one.
			l.log.Warn("audit log: starting on a history that does not verify, as allowed by configuration", "path", l.opts.Path, "err", err)
			l.stats.verifyErrors.Add(1)
			l.notice = &Entry{Type: TypeNotice, Op: "audit-open", Outcome: "UNVERIFIED",
				Reason: Clip("started with allow_unverified_history: " + err.Error())}
		}
	}
	if torn > 0 {
		l.log.Warn("audit log ended in a torn line (crash during a write); cutting it off",
			"path", l.opts.Path, "bytes", torn)
		if err := l.f.Truncate(size); err != nil {
			return err
		}
		if err := l.f.Sync(); err != nil {
			return err
		}
	}
	if size == 0 {
		return nil
	}
	l.seq, l.prev = e.Seq, e.Hash
	if e.Type != TypeCheckpoint {
		// The server stopped without a closing checkpoint (a crash): count
		// what is unsigned as it is, and sign it with the first group or
		// tick, so that crash after crash never piles up more unsigned
		// entries than the next start accepts.
		l.sinceCP, l.sinceCPBytes = max(ut.entries, 1), ut.bytes
		l.lastCP = time.Time{}
	}
	return nil
}

// unsignedTail is what follows the last checkpoint.
type unsignedTail struct {
	entries int
	bytes   int64
}

// ErrUnverifiedHistory is wrapped by Open's error when the end of an
// existing log is not covered by a valid checkpoint of this log's key.
var ErrUnverifiedHistory = errors.New("audit log history does not verify")

// maxTailBytes bounds how much of the log Open reads back to find the last
// checkpoint.
const maxTailBytes = 64 << 20

// verifyTail checks the end of the log before the server signs anything
// after it. The next checkpoint signs the chain head, so without this
// check someone who can write the file while the server is stopped could
// delete entries, drop the checkpoints, re-chain the rest, and have the
// server sign the forged history on restart. Required: the lines after the
// last checkpoint chain to it, there are no more of them than the writer
// ever leaves unsigned (CheckpointEvery plus one group: a crash between a
// group and its checkpoint), and the checkpoint's signature is valid under
// this log's key; a log with no checkpoint at all is refused. Lines before the
// last checkpoint are protected by its signature; `tokenvault audit
// verify` checks them all.
func (l *Log) verifyTail(size int64) (unsignedTail, error) {
	var ut unsignedTail
	maxUnsigned := l.opts.CheckpointEvery + maxGroup
	lines, atStart, err := readTail(l.f, size, maxUnsigned+1, maxTailBytes)
	if err != nil {
		return ut, err
	}
	entries := make([]Entry, len(lines))
	for i, ln := range lines {
		if entries[i], err = ParseLine(ln); err != nil {
			return ut, fmt.Errorf("%w: %d lines from the end: %w", ErrUnverifiedHistory, len(lines)-i, err)
		}
	}
	first := entries[0]
	switch {
	case first.Type == TypeCheckpoint:
		if err := verifyCheckpoint(&first, l.opts.SigningKey.Public().(ed25519.PublicKey), l.keyID); err != nil {
			return ut, fmt.Errorf("%w: the last checkpoint (seq %d): %v", ErrUnverifiedHistory, first.Seq, err)
		}
	case atStart:
		// A log only ever lacks a checkpoint if the server crashed before
		// its first one (within checkpoint_interval of a new log); from the
		// file alone that cannot be told from checkpoints that were
		// removed, so the operator decides.
		return ut, fmt.Errorf("%w: the log has no checkpoint at all (removed, or a crash before the first one)", ErrUnverifiedHistory)
	default:
		return ut, fmt.Errorf("%w: more than %d entries since the last signed checkpoint; the writer never leaves that many unsigned", ErrUnverifiedHistory, maxUnsigned)
	}
	for i := 1; i < len(entries); i++ {
		e, prev := entries[i], entries[i-1]
		if e.Seq != prev.Seq+1 || e.Prev != prev.Hash {
			return ut, fmt.Errorf("%w: entry %d does not chain to the one before", ErrUnverifiedHistory, e.Seq)
		}
		// The same rules as Verify: what the server signs next must be
		// what `audit verify` accepts.
		if err := checkUnsigned(&e); err != nil {
			return ut, fmt.Errorf("%w: entry %d: %v", ErrUnverifiedHistory, e.Seq, err)
		}
		ut.entries++
		ut.bytes += int64(len(lines[i]))
	}
	return ut, nil
}

// verifyCheckpoint checks a checkpoint's key id and signature (Verify and
// Open share it).
func verifyCheckpoint(e *Entry, pub ed25519.PublicKey, keyID string) error {
	if e.KeyID != keyID {
		return fmt.Errorf("checkpoint signed by key %s, not by the given public key (%s)", Clip(e.KeyID), keyID)
	}
	sig, err := base64.RawStdEncoding.DecodeString(e.Sig)
	if err != nil || !ed25519.Verify(pub, checkpointMessage(e), sig) {
		return errors.New("checkpoint signature is invalid (the chain was rewritten)")
	}
	return nil
}

// checkUnsigned checks an entry that is not a checkpoint: a known type and
// no signature (Verify and Open share it).
func checkUnsigned(e *Entry) error {
	switch e.Type {
	case TypeCall, TypeRefusals, TypeNotice, TypeContinue:
		if e.Sig != "" || e.KeyID != "" {
			return fmt.Errorf("a %s entry carries a signature", e.Type)
		}
		return nil
	case TypeCheckpoint:
		return errors.New("a checkpoint after the last checkpoint")
	default:
		return fmt.Errorf("unknown entry type %q", Clip(e.Type))
	}
}

// readTail returns the complete lines at the end of f (whose size is size
// and whose last byte is a newline), oldest first, going back to the last
// checkpoint line (included), or to the start of the file (atStart), or
// until maxLines lines were collected, whichever comes first. It reads
// backwards in blocks and at most maxBytes in all.
func readTail(f *os.File, size int64, maxLines int, maxBytes int64) (lines [][]byte, atStart bool, err error) {
	const block = 64 << 10
	var rest []byte // the end of a line that starts before pos
	pos := size
	var rev [][]byte // lines, newest first
	for {
		if size-pos >= maxBytes {
			return nil, false, fmt.Errorf("%w: no checkpoint in the last %d bytes", ErrUnverifiedHistory, maxBytes)
		}
		n := min(pos, block)
		chunk := make([]byte, n, n+int64(len(rest)))
		if _, err := f.ReadAt(chunk, pos-n); err != nil && err != io.EOF {
			return nil, false, err
		}
		pos -= n
		data := append(chunk, rest...)
		start := 0
		if pos > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 { // one line longer than the data so far
				rest = data
				continue
			}
			start, rest = i+1, data[:i+1]
		} else {
			rest = nil
		}
		complete := data[start:]
		for len(complete) > 0 {
			body := complete[:len(complete)-1] // without its newline
			j := bytes.LastIndexByte(body, '\n') + 1
			ln := complete[j:]
			complete = complete[:j]
			rev = append(rev, ln)
			if isCheckpointLine(ln) || len(rev) >= maxLines {
				return reverse(rev), false, nil
			}
		}
		if pos == 0 {
			return reverse(rev), true, nil
		}
	}
}

// isCheckpointLine is a cheap pre-test (the caller parses every line).
func isCheckpointLine(ln []byte) bool {
	return bytes.Contains(ln, []byte(`"type":"`+TypeCheckpoint+`"`))
}

func reverse(rev [][]byte) [][]byte {
	out := make([][]byte, len(rev))
	for i, ln := range rev {
		out[len(rev)-1-i] = ln
	}
	return out
}

// TokenHash is the keyed hash that stands for token in entries.
func (l *Log) TokenHash(token string) string { return l.hasher.Hash(token) }

// KeyID is the id of the checkpoint signing key.
func (l *Log) KeyID() string { return l.keyID }

// Healthy reports whether writes can succeed (ErrUnavailable if the log
// failed or is closed). Callers use it to refuse an audited operation
// before doing it. It takes no lock and never blocks.
func (l *Log) Healthy() error {
	if p := l.failed.Load(); p != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, *p)
	}
	if l.closed.Load() {
		return fmt.Errorf("%w: closed", ErrUnavailable)
	}
	if l.dbs.down.Load() {
		return fmt.Errorf("%w: the audit database does not answer", ErrUnavailable)
	}
	return nil
}

// Write appends e (Type "call" unless set) and returns once it is durable,
// or an error wrapping ErrUnavailable, or, if ctx ends first, an error
// wrapping ctx.Err(). A caller that gives up must treat the entry as not
// written (and so not hand out what it audits); the entry may still be
// written later, which errs on the side of the record.
func (l *Log) Write(ctx context.Context, e Entry) error {
	return l.do(ctx, &request{e: e, done: make(chan error, 1)})
}

// do submits r and waits for its answer.
func (l *Log) do(ctx context.Context, r *request) error {
	if err := l.submit(ctx, r); err != nil {
		return err
	}
	var err error
	select {
	case err = <-r.done:
	case <-ctx.Done():
		return fmt.Errorf("audit: waiting for the entry to be written: %w", ctx.Err())
	case <-l.exited:
		// The writer answers every request it took before exiting; one it
		// never took stays unanswered.
		select {
		case err = <-r.done:
		default:
			err = fmt.Errorf("%w: closed", ErrUnavailable)
		}
	}
	if err != nil {
		l.failure()
	}
	return err
}

// WriteAsync queues e without waiting for it to be durable, and without
// blocking: ErrBusy if the queue is full, ErrUnavailable if the log failed
// or is closed. For entries that record a refusal (nothing was revealed or
// changed, so nothing waits on them); an entry queued before Close is
// written before Close returns.
func (l *Log) WriteAsync(e Entry) error {
	if err := l.Healthy(); err != nil {
		l.failure()
		return err
	}
	if e.Type == "" {
		e.Type = TypeCall
	}
	if err := l.hashSubjects(&e); err != nil {
		l.failure()
		return err
	}
	compact(&e)
	l.sendMu.RLock()
	defer l.sendMu.RUnlock()
	select {
	case <-l.stopping:
		return fmt.Errorf("%w: closed", ErrUnavailable)
	default:
	}
	select {
	case l.reqs <- &request{e: e}:
		return nil
	default:
		return ErrBusy
	}
}

// submit queues r, waiting for room at most until ctx ends or the log is
// closed.
func (l *Log) submit(ctx context.Context, r *request) error {
	if r.e.Type == "" {
		r.e.Type = TypeCall
	}
	if err := l.hashSubjects(&r.e); err != nil {
		l.failure()
		return err
	}
	compact(&r.e)
	if err := l.Healthy(); err != nil {
		l.failure()
		return err
	}
	l.sendMu.RLock()
	defer l.sendMu.RUnlock()
	select {
	case <-l.stopping:
		l.failure()
		return fmt.Errorf("%w: closed", ErrUnavailable)
	default:
	}
	select {
	case l.reqs <- r:
		return nil
	case <-l.stopping:
		l.failure()
		return fmt.Errorf("%w: closed", ErrUnavailable)
	case <-ctx.Done():
		return fmt.Errorf("audit: waiting for room in the queue: %w", ctx.Err())
	}
}

func (l *Log) failure() {
	if l.opts.OnFailure != nil {
		l.opts.OnFailure()
	}
}

func (l *Log) setFailed(err error) { l.failed.CompareAndSwap(nil, &err) }

// Close writes what is queued and a final checkpoint, and closes the file.
// Writers still waiting get ErrUnavailable. Calling it again returns the
// first call's result.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		// Housekeeping writes retention entries: stop it while the log
		// still takes them.
		close(l.hkStop)
		<-l.hkDone
		l.closed.Store(true)
		close(l.stopping)
		l.sendMu.Lock() // every send under way has finished
		close(l.quit)
		l.sendMu.Unlock()
		<-l.exited
		var failed, shipErr error
		if p := l.failed.Load(); p != nil {
			failed = fmt.Errorf("%w: %v", ErrUnavailable, *p)
		}
		if l.ship != nil {
			shipErr = l.ship.close()
		}
		l.closeErr = errors.Join(failed, l.f.Close(), shipErr)
		closeLock(l.lock) // after the last write
	})
	return l.closeErr
}

// queueSize is how many entries can wait for the writer; a writer that
// finds it full waits (Write, bounded by its context) or is told so
// (WriteAsync).
const queueSize = 1024

// maxGroup bounds how many entries share one write and fsync.
const maxGroup = 256

// maxKeptBuffer bounds the group buffer the writer keeps between groups.
const maxKeptBuffer = 1 << 20

func (l *Log) loop() {
	defer close(l.exited)
	tick := time.NewTicker(max(l.opts.CheckpointInterval/4, time.Millisecond))
	defer tick.Stop()
	var retry <-chan time.Time // polls a database that refused a write
	if l.db != nil {
		t := time.NewTicker(dbRetry)
		defer t.Stop()
		retry = t.C
	}
	for {
		var group []*request
		select {
		case <-retry:
			if l.dbs.unsure && l.failed.Load() == nil {
				l.dbResync() // counted and logged; Healthy says the rest
			}
			continue
		case r := <-l.reqs:
			group = l.gather(append(group, r))
		case <-l.quit:
			// Write what was queued before Close, then sign it all.
			for {
				group = l.gather(group[:0])
				if len(group) == 0 {
					break
				}
				l.commitAll(group)
			}
			if l.sinceCP > 0 && l.failed.Load() == nil {
				l.commit(nil)
			}
			return
		case <-tick.C:
			l.rotateIfOld()
			if l.sinceCP == 0 || l.opts.Now().Sub(l.lastCP) < l.opts.CheckpointInterval {
				continue
			}
		}
		l.commitAll(group)
	}
}

// gather adds whatever is queued right now to group, up to maxGroup.
func (l *Log) gather(group []*request) []*request {
	for len(group) < maxGroup {
		select {
		case r := <-l.reqs:
			group = append(group, r)
		default:
			return group
		}
	}
	return group
}

// dbRetry: how often the writer asks a database that refused a write
// whether it answers again.
const dbRetry = 200 * time.Millisecond

// commit writes the group (plus a checkpoint when due) in one write and
// one fsync (with Options.DB: first one database statement), then answers
// every request with the result it returns.
func (l *Log) commit(group []*request) error {
	if p := l.failed.Load(); p != nil {
		err := fmt.Errorf("%w: %v", ErrUnavailable, *p)
		l.answer(group, err)
		return err
	}
	if l.db != nil && l.dbs.unsure {
		if err := l.dbResync(); err != nil {
			err = fmt.Errorf("%w: the audit database: %v", ErrUnavailable, err)
			l.answer(group, err)
			return err
		}
	}
	empty := len(group) == 0
	if l.needsDBStart(group) {
		group = append([]*request{l.dbStartNotice()}, group...)
	}
	saved := l.chainState()
	rows := l.dbRows[:0]
	buf := &l.buf
	buf.Reset()
	defer func() {
		if buf.Cap() > maxKeptBuffer {
			l.buf = bytes.Buffer{} // do not keep what one huge group grew
		}
	}()
	now := l.opts.Now().UTC()
	stamp := now.Truncate(time.Microsecond).Format(time.RFC3339Nano) // finer is noise
	firstSeq := l.seq + 1
	var err error
	for _, r := range group {
		e := r.e
		e.Seq, e.Time, e.Prev, e.Replica = l.seq+1, stamp, l.prev, l.opts.Replica
		e.KeyID, e.Sig = "", ""
		if !r.own && (e.Type == TypeCheckpoint || e.Type == TypeContinue) {
			e.Type = TypeCall // only the writer makes checkpoints and continue entries
		}
		start := buf.Len()
		if err = e.appendLine(buf); err != nil {
			break
		}
		if l.db != nil {
			rows = append(rows, rowOf(&e, start, buf.Len()-1))
		}
		l.seq, l.prev = e.Seq, e.Hash
		l.sinceCP++
		l.sinceCPBytes += int64(buf.Len() - start)
	}
	cp := l.sinceCP > 0 && (empty || l.forceCP || l.sinceCP >= l.opts.CheckpointEvery ||
		l.sinceCPBytes >= maxTailBytes/2 || now.Sub(l.lastCP) >= l.opts.CheckpointInterval)
	if err == nil && cp {
		e := Entry{Seq: l.seq + 1, Time: stamp, Type: TypeCheckpoint, Replica: l.opts.Replica, KeyID: l.keyID, Prev: l.prev}
		e.Sig = base64.RawStdEncoding.EncodeToString(ed25519.Sign(l.opts.SigningKey, checkpointMessage(&e)))
		start := buf.Len()
		if err = e.appendLine(buf); err == nil {
			if l.db != nil {
				rows = append(rows, rowOf(&e, start, buf.Len()-1))
			}
			l.seq, l.prev = e.Seq, e.Hash
			l.sinceCP, l.sinceCPBytes, l.lastCP, l.forceCP = 0, 0, now, false
			// The server log is a second, independent witness of the
			// chain head (shipped elsewhere, it bounds truncation).
			defer func(seq uint64, hash string) {
				if err == nil {
					l.log.Info("audit checkpoint", "seq", seq, "hash", hash)
				}
			}(e.Seq, e.Hash)
		}
	}
	l.dbRows = rows
	if err == nil && l.db != nil {
		// The database first: it is where the entry is durable for the
		// whole trail. A refusal undoes the group (the file never sees
		// it) and is not sticky: the next group retries.
		if err = l.dbInsert(now, rows, buf.Bytes(), saved, firstSeq); err != nil {
			err = fmt.Errorf("%w: the audit database: %v", ErrUnavailable, err)
			l.answer(group, err)
			return err
		}
	}
	if err == nil {
		if _, err = l.f.Write(buf.Bytes()); err == nil {
			if err = l.f.Sync(); err == nil {
				l.stats.syncs.Add(1)
			}
		}
	}
	if err == nil {
		l.wrote(group, buf.Len(), firstSeq, now)
		if l.ship != nil {
			l.ship.queue(buf.Bytes(), l.seq)
		}
	}
	if err != nil {
		l.log.Error("audit log write failed: audited operations are refused until restart", "path", l.opts.Path, "err", err)
		l.setFailed(err)
		err = fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	l.answer(group, err)
	return err
}

// answer tells every waiting writer of the group its result (done has room
// for one: the writer never blocks here). An asynchronous entry that
// failed has no one to tell: it is counted (OnFailure) instead.
func (l *Log) answer(group []*request, err error) {
	for _, r := range group {
		switch {
		case r.done != nil:
			r.done <- err
		case err != nil:
			l.failure()
		}
	}
}
