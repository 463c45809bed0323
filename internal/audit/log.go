package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ErrUnavailable is returned by Write when the log cannot be written (or
// was closed). Callers must then refuse the audited operation: there is
// no unaudited reveal.
var ErrUnavailable = errors.New("audit log unavailable")

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
type Log struct {
	opts   Options
	f      *os.File
	hasher *TokenHasher
	keyID  string
	log    *slog.Logger

	mu     sync.Mutex // guards closed, failed and sends on reqs
	closed bool
	failed error
	reqs   chan *request
	exited chan struct{}

	// Owned by the writer goroutine.
	buf     bytes.Buffer // a group's lines, reused
	seq     uint64
	prev    string
	sinceCP int
	lastCP  time.Time
}

type request struct {
	e    Entry
	done chan error
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
	hasher, err := NewTokenHasher(opts.SigningKey)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o700); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	f, err := os.OpenFile(opts.Path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	l := &Log{opts: opts, f: f, hasher: hasher, log: opts.Logger,
		keyID: KeyID(opts.SigningKey.Public().(ed25519.PublicKey)),
		reqs:  make(chan *request, 256), exited: make(chan struct{}),
		prev: ZeroHash, lastCP: opts.Now()}
	if err := l.recover(); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit log %s: %w", opts.Path, err)
	}
	go l.loop()
	return l, nil
}

// recover finds the last entry to continue the chain from.
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
	if tail[len(tail)-1] != '\n' {
		cut := bytes.LastIndexByte(tail, '\n') + 1 // 0 if no complete line in the tail
		if cut == 0 && n == size {
			// Only a torn first line.
		} else if cut == 0 {
			return errors.New("last line is longer than the maximum; run tokenvault audit verify")
		}
		keep := size - n + int64(cut)
		l.log.Warn("audit log ended in a torn line (crash during a write); cutting it off",
			"path", l.opts.Path, "bytes", size-keep)
		if err := l.f.Truncate(keep); err != nil {
			return err
		}
		if err := l.f.Sync(); err != nil {
			return err
		}
		tail, size = tail[:cut], keep
		if size == 0 {
			return nil
		}
	}
	body := tail[:len(tail)-1]
	last := body[bytes.LastIndexByte(body, '\n')+1:]
	e, err := ParseLine(last)
	if err != nil {
		return fmt.Errorf("last entry: %w; run tokenvault audit verify", err)
	}
	l.seq, l.prev = e.Seq, e.Hash
	if e.Type != TypeCheckpoint {
		// The server stopped without a closing checkpoint (a crash):
		// sign what is there as soon as possible.
		l.sinceCP = 1
	}
	return nil
}

// TokenHash is the keyed hash that stands for token in entries.
func (l *Log) TokenHash(token string) string { return l.hasher.Hash(token) }

// KeyID is the id of the checkpoint signing key.
func (l *Log) KeyID() string { return l.keyID }

// Healthy reports whether writes can succeed (ErrUnavailable if the log
// failed or is closed). Callers use it to refuse an audited operation
// before doing it.
func (l *Log) Healthy() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.healthyLocked()
}

// Write appends e (Type "call" unless set) and returns once it is durable,
// or an error wrapping ErrUnavailable.
func (l *Log) Write(e Entry) error {
	if e.Type == "" {
		e.Type = TypeCall
	}
	r := &request{e: e, done: make(chan error, 1)}
	l.mu.Lock()
	if err := l.healthyLocked(); err != nil {
		l.mu.Unlock()
		l.failure()
		return err
	}
	l.reqs <- r
	l.mu.Unlock()
	err := <-r.done
	if err != nil {
		l.failure()
	}
	return err
}

func (l *Log) failure() {
	if l.opts.OnFailure != nil {
		l.opts.OnFailure()
	}
}

func (l *Log) healthyLocked() error {
	switch {
	case l.failed != nil:
		return fmt.Errorf("%w: %v", ErrUnavailable, l.failed)
	case l.closed:
		return fmt.Errorf("%w: closed", ErrUnavailable)
	}
	return nil
}

// Close writes a final checkpoint and closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.reqs)
	}
	l.mu.Unlock()
	<-l.exited
	return l.f.Close()
}

// maxGroup bounds how many entries share one write and fsync.
const maxGroup = 256

// maxKeptBuffer bounds the group buffer the writer keeps between groups.
const maxKeptBuffer = 1 << 20

func (l *Log) loop() {
	defer close(l.exited)
	tick := time.NewTicker(max(l.opts.CheckpointInterval/4, time.Millisecond))
	defer tick.Stop()
	for {
		var group []*request
		select {
		case r, ok := <-l.reqs:
			if !ok {
				l.final()
				return
			}
			group = append(group, r)
		gather:
			for len(group) < maxGroup {
				select {
				case r, ok := <-l.reqs:
					if !ok {
						break gather
					}
					group = append(group, r)
				default:
					break gather
				}
			}
		case <-tick.C:
			if l.sinceCP == 0 || l.opts.Now().Sub(l.lastCP) < l.opts.CheckpointInterval {
				continue
			}
		}
		l.commit(group)
	}
}

// final signs whatever the last checkpoint does not cover.
func (l *Log) final() {
	l.mu.Lock()
	failed := l.failed
	l.mu.Unlock()
	if l.sinceCP > 0 && failed == nil {
		l.commit(nil)
	}
}

// commit writes the group (plus a checkpoint when due) in one write and
// one fsync, then answers every request.
func (l *Log) commit(group []*request) {
	l.mu.Lock()
	failed := l.failed
	l.mu.Unlock()
	if failed != nil {
		for _, r := range group {
			r.done <- fmt.Errorf("%w: %v", ErrUnavailable, failed)
		}
		return
	}
	buf := &l.buf
	buf.Reset()
	defer func() {
		if buf.Cap() > maxKeptBuffer {
			l.buf = bytes.Buffer{} // do not keep what one huge group grew
		}
	}()
	now := l.opts.Now().UTC()
	stamp := now.Format(time.RFC3339Nano)
	var err error
	for _, r := range group {
		e := r.e
		e.Seq, e.Time, e.Prev = l.seq+1, stamp, l.prev
		e.KeyID, e.Sig = "", ""
		if e.Type == TypeCheckpoint {
			e.Type = TypeCall // only the writer makes checkpoints
		}
		if err = e.appendLine(buf); err != nil {
			break
		}
		l.seq, l.prev = e.Seq, e.Hash
		l.sinceCP++
	}
	cp := l.sinceCP > 0 && (len(group) == 0 || l.sinceCP >= l.opts.CheckpointEvery || now.Sub(l.lastCP) >= l.opts.CheckpointInterval)
	if err == nil && cp {
		e := Entry{Seq: l.seq + 1, Time: stamp, Type: TypeCheckpoint, KeyID: l.keyID, Prev: l.prev}
		e.Sig = base64.RawStdEncoding.EncodeToString(ed25519.Sign(l.opts.SigningKey, checkpointMessage(&e)))
		if err = e.appendLine(buf); err == nil {
			l.seq, l.prev = e.Seq, e.Hash
			l.sinceCP, l.lastCP = 0, now
			// The server log is a second, independent witness of the
			// chain head (shipped elsewhere, it bounds truncation).
			defer l.log.Info("audit checkpoint", "seq", e.Seq, "hash", e.Hash)
		}
	}
	if err == nil {
		if _, err = l.f.Write(buf.Bytes()); err == nil {
			err = l.f.Sync()
		}
	}
	if err != nil {
		l.log.Error("audit log write failed: audited operations are refused until restart", "path", l.opts.Path, "err", err)
		l.mu.Lock()
		l.failed = err
		l.mu.Unlock()
		err = fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for _, r := range group {
		r.done <- err
	}
}
