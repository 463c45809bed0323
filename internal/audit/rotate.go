package audit

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Rotation.
//
// The log is one chain over many files. The current file (Options.Path)
// is rotated by size, by age or on request (Log.Rotate): the writer ends
// it with a signed checkpoint, renames it to
//
//	<stem>-<seq of its first entry, 20 digits>-<time of its first entry>.jsonl
//
// beside it, and starts a new current file whose first entry (type
// "continue") names that file, its closing checkpoint's seq, and, as its
// prev, the hash of its last entry; a checkpoint follows at once. The seq
// goes on across files. So VerifyDir checks the whole directory as one
// chain: a missing, reordered, renamed or truncated file breaks it.
//
// Everything happens in the writer goroutine, between two groups: no
// entry can be lost, duplicated or land in the wrong file, and writers
// wait only as long as for a checkpoint.
//
// Beside the writer, housekeeping gzips rotated files (Rotation.Compress)
// and applies retention: it deletes the oldest rotated files beyond
// KeepFiles or older than KeepAge, never the current file, never a file
// Shipped says is not shipped yet, and records each deletion in the log
// (an "audit-retention" notice naming the file) before deleting it, so a
// file missing at the start of the chain is accounted for.

// Rotation configures rotation and retention (zero values: off).
type Rotation struct {
	// MaxSize: rotate once the current file holds this many bytes.
	MaxSize int64
	// MaxAge: rotate once the current file's first entry is this old (and
	// the file holds entries other than the log's own).
	MaxAge time.Duration
	// Compress gzips rotated files (".gz" is appended to the name).
	Compress bool
	// KeepFiles: keep at most this many rotated files; KeepAge: delete
	// rotated files closed longer ago than this.
	KeepFiles int
	KeepAge   time.Duration
	// Shipped reports whether the rotated file (its name without ".gz")
	// has been shipped and may be deleted; nil: every file may.
	Shipped func(name string) bool
}

// Stats are the log's counters (for metrics).
type Stats struct {
	BytesWritten   uint64 // bytes appended since Open
	CurrentSize    int64  // bytes in the current file
	Rotations      uint64 // rotations since Open
	RetentionFiles uint64 // rotated files deleted by retention since Open
	// ShippingLag: entries written to the file but not yet accepted by
	// the sink (0 without one); ShipErrors: failed attempts to ship.
	ShippingLag uint64
	ShipErrors  uint64
	// VerifyErrors: histories Open found unverifiable and continued as
	// allowed (Options.AllowUnverified; each is a notice entry too).
	VerifyErrors uint64
	// Syncs: fsyncs of the log file since Open, one per group of entries
	// written together (entries / syncs is the mean group size).
	Syncs uint64
	// DB: the database sink's counters (Options.DB).
	DB DBStats
}

type stats struct {
	bytes, rotations, deleted, verifyErrors atomic.Uint64
	syncs                                   atomic.Uint64
	first                                   atomic.Uint64 // the current file's first seq
	size                                    atomic.Int64
}

// Stats returns the log's counters.
func (l *Log) Stats() Stats {
	st := Stats{BytesWritten: l.stats.bytes.Load(), CurrentSize: l.stats.size.Load(),
		Rotations: l.stats.rotations.Load(), RetentionFiles: l.stats.deleted.Load(), VerifyErrors: l.stats.verifyErrors.Load(),
		Syncs: l.stats.syncs.Load(),
		DB:    l.dbStats()}
	if l.ship != nil {
		st.ShipErrors = l.ship.errors.Load()
		st.ShippingLag = l.ship.queued.Load() - min(l.ship.shipped.Load(), l.ship.queued.Load())
	}
	return st
}

// ErrNotRotatable is returned by Rotate for a log that is not a regular
// file (a pipe, /dev/stdout).
var ErrNotRotatable = errors.New("audit log is not a regular file and cannot be rotated")

// Rotate rotates the current file now and returns the rotated file's
// name once the new file has its first entries (or an error; a failure
// after the rename is sticky, like a failed write, and a restart
// continues from the rotated file).
func (l *Log) Rotate(ctx context.Context) (string, error) {
	if !l.regular {
		return "", ErrNotRotatable
	}
	r := &request{rotate: "requested", done: make(chan error, 1)}
	if err := l.do(ctx, r); err != nil {
		return "", err
	}
	return r.rotated, nil // written before done was sent
}

// openFileState reads what rotation needs to know of the current file.
func (l *Log) openFileState() error {
	st, err := l.f.Stat()
	if err != nil {
		return err
	}
	l.regular = st.Mode().IsRegular()
	if !l.regular || st.Size() == 0 {
		return nil
	}
	l.size = st.Size()
	l.stats.size.Store(l.size)
	first, err := bufio.NewReaderSize(io.NewSectionReader(l.f, 0, l.size), 64<<10).ReadSlice('\n')
	if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
		return fmt.Errorf("reading the first line: %w", err)
	}
	e, err := ParseLine(first)
	if err != nil {
		// Verify reports it; rotation only needs a name.
		l.fileFirst, l.fileStart = 1, l.opts.Now()
		return nil
	}
	l.fileFirst = e.Seq
	l.stats.first.Store(e.Seq)
	l.fileStart, _ = time.Parse(time.RFC3339Nano, e.Time)
	l.fileEntries = 1 // age rotation applies to an existing file
	return nil
}

// continueRotated prepares an empty current file to continue the newest
// rotated file, if there is one (a crash between a rotation's rename and
// the new file's first entries, or a current file moved away): it sets
// the chain's head and returns the first entries to commit.
func (l *Log) continueRotated() ([]*request, error) {
	files, err := listRotated(l.opts.Path)
	if err != nil || len(files) == 0 {
		return nil, err
	}
	last := files[len(files)-1]
	path := filepath.Join(filepath.Dir(l.opts.Path), last.name)
	e, err := lastEntry(path)
	if err != nil {
		return nil, fmt.Errorf("the newest rotated file %s: %w", last.name, err)
	}
	pub := l.opts.SigningKey.Public().(ed25519.PublicKey)
	var verr error
	if e.Type != TypeCheckpoint {
		verr = fmt.Errorf("%w: the newest rotated file %s does not end with a checkpoint", ErrUnverifiedHistory, last.name)
	} else if err := verifyCheckpoint(&e, pub, l.keyID); err != nil {
		verr = fmt.Errorf("%w: the newest rotated file %s: %v", ErrUnverifiedHistory, last.name, err)
	}
	if verr != nil && !l.opts.AllowUnverified {
		return nil, fmt.Errorf("%w; run tokenvault audit verify, and start with --audit-allow-unverified only once you know why (the acceptance is itself audited)", verr)
	}
	l.log.Warn("audit log: the current file is missing or empty; continuing the chain of the newest rotated file", "file", last.name)
	l.seq, l.prev = e.Seq, e.Hash
	group := []*request{{own: true, e: Entry{Type: TypeContinue, Op: OpRotate, Reason: "start", File: last.plain, CheckpointSeq: e.Seq}}}
	if verr != nil {
		l.stats.verifyErrors.Add(1)
		group = append(group, &request{e: Entry{Type: TypeNotice, Op: "audit-open", Outcome: "UNVERIFIED",
			Reason: Clip("started with allow_unverified_history: " + verr.Error())}})
	}
	return group, nil
}

// commitAll commits a gathered group, doing the rotations it asks for in
// their place, then rotates if the file has grown past MaxSize.
func (l *Log) commitAll(group []*request) {
	if len(group) == 0 {
		l.commit(nil)
		return
	}
	start := 0
	for i, r := range group {
		if r.rotate == "" {
			continue
		}
		if i > start {
			l.commit(group[start:i])
		}
		var err error
		r.rotated, err = l.rotateFile(r.rotate)
		r.done <- err
		start = i + 1
	}
	if start < len(group) {
		l.commit(group[start:])
	}
	if m := l.opts.Rotation.MaxSize; m > 0 && l.size >= m && l.fileEntries > 0 {
		l.rotateLogged("size")
	}
}

// rotateIfOld rotates a current file older than MaxAge (from the ticker).
func (l *Log) rotateIfOld() {
	if m := l.opts.Rotation.MaxAge; m > 0 && l.fileEntries > 0 && l.opts.Now().Sub(l.fileStart) >= m {
		l.rotateLogged("age")
	}
}

func (l *Log) rotateLogged(why string) {
	if _, err := l.rotateFile(why); err != nil {
		l.log.Error("audit log rotation failed", "reason", why, "err", err)
	}
}

// wrote accounts for a committed group of size bytes, whose first entry
// has seq first, written at now.
func (l *Log) wrote(group []*request, size int, first uint64, now time.Time) {
	if l.size == 0 {
		l.fileFirst, l.fileStart = first, now
		l.stats.first.Store(first)
	}
	l.size += int64(size)
	for _, r := range group {
		if !r.own {
			l.fileEntries++
		}
	}
	l.stats.bytes.Add(uint64(size))
	l.stats.size.Store(l.size)
}

// rotateFile closes the current file with a checkpoint, renames it and
// starts the next one. Writer goroutine only.
func (l *Log) rotateFile(why string) (string, error) {
	if !l.regular {
		return "", ErrNotRotatable
	}
	if p := l.failed.Load(); p != nil {
		return "", fmt.Errorf("%w: %v", ErrUnavailable, *p)
	}
	if l.db != nil && (l.dbs.unsure || l.dbs.down.Load()) {
		// Not while the database refuses: the new file's continue entry
		// could not be written, and a renamed file without it is sticky.
		return "", fmt.Errorf("%w: the audit database does not answer; not rotating", ErrUnavailable)
	}
	if l.sinceCP > 0 {
		// The closing checkpoint (a refusing database leaves the file as
		// it was: not rotated).
		if err := l.commit(nil); err != nil {
			return "", err
		}
	}
	dir := filepath.Dir(l.opts.Path)
	name := rotatedName(l.opts.Path, l.fileFirst, l.fileStart)
	if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
		return "", fmt.Errorf("audit: rotating: %s already exists", name)
	}
	if err := os.Rename(l.opts.Path, filepath.Join(dir, name)); err != nil {
		// Nothing changed: the log goes on in the same file.
		return "", fmt.Errorf("audit: rotating: %w", err)
	}
	// From here on a failure leaves the rotated file as the chain's end:
	// sticky, and the next start continues from it (continueRotated).
	l.f.Close() // synced with the checkpoint above
	f, err := os.OpenFile(l.opts.Path, os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		l.setFailed(err)
		return "", fmt.Errorf("%w: rotating: %v", ErrUnavailable, err)
	}
	cpSeq := l.seq
	l.f, l.size, l.fileEntries = f, 0, 0
	l.sinceCP, l.forceCP = 1, true // the new file's first checkpoint follows its continue entry
	if err := l.commit([]*request{{own: true, e: Entry{Type: TypeContinue, Op: OpRotate, Reason: why, File: name, CheckpointSeq: cpSeq}}}); err != nil {
		// A new file without its continue entry must not take entries
		// (a refusing database included): sticky.
		l.setFailed(err)
		return "", err
	}
	if err := syncDir(dir); err != nil {
		l.setFailed(err)
		return "", fmt.Errorf("%w: rotating: %v", ErrUnavailable, err)
	}
	l.stats.rotations.Add(1)
	l.log.Info("audit log rotated", "reason", why, "rotated", name, "seq", l.seq)
	select {
	case l.hk <- struct{}{}:
	default:
	}
	return name, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// rotatedFile is a rotated file found beside the current one.
type rotatedFile struct {
	name  string // as on disk
	plain string // without ".gz": the name continue entries use
	seq   uint64 // its first entry's
	gz    bool
}

const rotatedTime = "20060102T150405Z"

// splitName splits the current file's name into stem and extension
// ("audit.jsonl": "audit", ".jsonl").
func splitName(path string) (stem, ext string) {
	base := filepath.Base(path)
	if ext = filepath.Ext(base); ext == base {
		ext = "" // ".audit" is a name, not an extension
	}
	return strings.TrimSuffix(base, ext), ext
}

func rotatedName(path string, first uint64, start time.Time) string {
	stem, ext := splitName(path)
	return fmt.Sprintf("%s-%020d-%s%s", stem, first, start.UTC().Format(rotatedTime), ext)
}

// rotatedRE: stem, seq, time, extension, ".gz". The extension is lazy so
// that a compressed file of a log without one ("audit-…Z.gz") is read as
// compressed (a log whose own extension is ".gz" is not supported).
var rotatedRE = regexp.MustCompile(`(?s)^(.*)-([0-9]{20})-([0-9]{8}T[0-9]{6}Z)(\.[^.]*)??(\.gz)?$`)

// parseRotated parses a rotated file's name; ok is false for other names.
func parseRotated(name string) (stem, ext string, f rotatedFile, ok bool) {
	m := rotatedRE.FindStringSubmatch(name)
	if m == nil {
		return "", "", f, false
	}
	seq, err := strconv.ParseUint(m[2], 10, 64)
	if err != nil {
		return "", "", f, false
	}
	return m[1], m[4], rotatedFile{name: name, plain: strings.TrimSuffix(name, ".gz"), seq: seq, gz: m[5] != ""}, true
}

// listRotated lists the rotated files of the log at path, oldest first.
// A file present both plain and gzipped (a crash during compression) is
// listed once, gzipped: the ".gz" is renamed into place only when complete.
func listRotated(path string) ([]rotatedFile, error) {
	ents, err := os.ReadDir(filepath.Dir(path))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	stem, ext := splitName(path)
	byPlain := map[string]rotatedFile{}
	for _, de := range ents {
		s, x, f, ok := parseRotated(de.Name())
		if !ok || s != stem || x != ext || !de.Type().IsRegular() {
			continue
		}
		if old, dup := byPlain[f.plain]; dup && old.gz {
			continue
		}
		byPlain[f.plain] = f
	}
	out := make([]rotatedFile, 0, len(byPlain))
	for _, f := range byPlain {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b rotatedFile) int { return strings.Compare(a.plain, b.plain) })
	return out, nil
}

// HasHistory reports whether the log at path holds entries: a non-empty
// current file or any rotated file. (A new signing key is created only
// for a log without history.)
func HasHistory(path string) (bool, error) {
	st, err := os.Stat(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if err == nil && st.Mode().IsRegular() && st.Size() > 0 {
		return true, nil
	}
	files, err := listRotated(path)
	return len(files) > 0, err
}

// openLogFile opens a (rotated) log file for reading, gunzipping a ".gz".
func openLogFile(path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(path, ".gz") {
		return f, nil
	}
	z, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s: not a valid gzip file: %v", ErrTampered, filepath.Base(path), err)
	}
	return struct {
		io.Reader
		io.Closer
	}{z, f}, nil
}

// lastEntry reads a file through and returns its last entry.
func lastEntry(path string) (Entry, error) {
	r, err := openLogFile(path)
	if err != nil {
		return Entry{}, err
	}
	defer r.Close()
	br := bufio.NewReaderSize(r, 64<<10)
	var last []byte
	for {
		b, err := readLine(br)
		if err == io.EOF {
			break
		}
		if err != nil {
			return Entry{}, err
		}
		last = b
	}
	if last == nil {
		return Entry{}, errors.New("empty")
	}
	return ParseLine(last)
}

// housekeeping compresses rotated files and applies retention after each
// rotation (and once at Open).
func (l *Log) housekeeping() {
	defer close(l.hkDone)
	if !l.regular {
		return
	}
	for {
		l.compressRotated()
		l.applyRetention()
		select {
		case <-l.hk:
		case <-l.hkStop:
			// A rotation just before Close gets its pass (the log
			// still takes the retention entries).
			select {
			case <-l.hk:
				l.compressRotated()
				l.applyRetention()
			default:
			}
			return
		}
	}
}

func (l *Log) compressRotated() {
	if !l.opts.Rotation.Compress {
		return
	}
	files, err := listRotated(l.opts.Path)
	if err != nil {
		l.log.Error("audit log: listing rotated files", "err", err)
		return
	}
	dir := filepath.Dir(l.opts.Path)
	for _, f := range files {
		plain := filepath.Join(dir, f.plain)
		if f.gz {
			// A plain copy left by a crash after the rename.
			if err := os.Remove(plain); err == nil {
				syncDir(dir)
			}
			continue
		}
		if err := gzipFile(plain); err != nil {
			l.log.Error("audit log: compressing a rotated file", "file", f.plain, "err", err)
			return
		}
	}
}

// gzipFile writes path+".gz" (through a temporary file, synced, renamed
// into place, with path's modification time) and removes path.
func gzipFile(path string) error {
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	tmp := path + ".gz.tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	z := gzip.NewWriter(out)
	_, err = io.Copy(z, in)
	if err == nil {
		err = z.Close()
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chtimes(tmp, st.ModTime(), st.ModTime())
	}
	if err == nil {
		err = os.Rename(tmp, path+".gz")
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return err
	}
	return os.Remove(path)
}

// applyRetention deletes the oldest rotated files beyond KeepFiles or
// older than KeepAge, oldest first, stopping at the first file to keep
// (so what remains is always the chain's contiguous end) or not shipped.
func (l *Log) applyRetention() {
	ro := l.opts.Rotation
	if ro.KeepFiles <= 0 && ro.KeepAge <= 0 {
		return
	}
	files, err := listRotated(l.opts.Path)
	if err != nil {
		l.log.Error("audit log: listing rotated files", "err", err)
		return
	}
	dir := filepath.Dir(l.opts.Path)
	now := l.opts.Now()
	for i, f := range files {
		path := filepath.Join(dir, f.name)
		why := ""
		if ro.KeepFiles > 0 && len(files)-i > ro.KeepFiles {
			why = fmt.Sprintf("more than %d rotated files", ro.KeepFiles)
		} else if st, err := os.Stat(path); err == nil && ro.KeepAge > 0 && now.Sub(st.ModTime()) > ro.KeepAge {
			why = fmt.Sprintf("closed more than %s ago", ro.KeepAge)
		}
		if why == "" {
			return
		}
		next := l.stats.first.Load()
		if i+1 < len(files) {
			next = files[i+1].seq
		}
		if !l.shippedFile(next) || ro.Shipped != nil && !ro.Shipped(f.plain) {
			l.log.Warn("audit log retention: keeping a rotated file not shipped yet", "file", f.plain)
			return
		}
		// The record first: a crash between the two leaves a file the
		// log says was deleted (deleted again next time), never a
		// deletion without its record.
		ctx, cancel := context.WithTimeout(context.Background(), auditWriteTimeout)
		err := l.Write(ctx, Entry{Type: TypeNotice, Op: OpRetention, Outcome: "DELETED", File: f.plain, Reason: "retention: " + why})
		cancel()
		if err != nil {
			l.log.Error("audit log retention: cannot record the deletion; keeping the file", "file", f.plain, "err", err)
			return
		}
		if err := os.Remove(path); err != nil {
			l.log.Error("audit log retention: deleting a rotated file", "file", f.name, "err", err)
			return
		}
		syncDir(dir)
		l.stats.deleted.Add(1)
		l.log.Info("audit log retention: deleted a rotated file", "file", f.name, "reason", why)
	}
}

// auditWriteTimeout bounds the wait for the log's own entries.
const auditWriteTimeout = 30 * time.Second
