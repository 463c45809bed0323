package audit

import (
	"bufio"
	"compress/gzip"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// FileReport is VerifyDir's finding for one file.
type FileReport struct {
	Name   string // as on disk
	Report        // this file's lines; LastHash and LastCheckpoint: the chain's
	Err    error  // nil: the file verified (and continues the one before)
}

// DirReport is VerifyDir's finding for a directory.
type DirReport struct {
	Files []FileReport // oldest first; the current file last
	// Chain: the whole chain (Entries: its last seq).
	Chain Report
	// Continues: the (deleted) file the oldest file continues.
	Continues string
}

// ErrNoLog is returned by VerifyDir for a directory that holds no log.
var ErrNoLog = errors.New("no audit log in the directory")

// VerifyDir verifies the log in dir, rotated files and the current file,
// as one chain (see Verify for what one file's check covers, and rotate.go
// for the layout). It checks every file even after a failure and reports
// each; the error is the first failure. Detected besides: a missing,
// reordered, renamed or truncated rotated file, and a missing oldest file
// that retention did not record as deleted.
//
// The log is found by the rotated files' names; a directory with only a
// current file (a log written before rotation) needs one *.jsonl file.
func VerifyDir(dir string, pub ed25519.PublicKey) (DirReport, error) {
	current, err := findCurrent(dir)
	if err != nil {
		return DirReport{}, err
	}
	files, err := listRotated(current)
	if err != nil {
		return DirReport{}, err
	}
	var rep DirReport
	c := newChain(pub)
	var firstErr error
	add := func(name string, closed bool) {
		fr := FileReport{Name: name}
		r, err := openLogFile(filepath.Join(dir, name))
		if err == nil {
			fr.Report, err = c.file(r, strings.TrimSuffix(name, ".gz"), closed)
			r.Close()
			if err != nil && !errors.Is(err, ErrTampered) {
				err = fmt.Errorf("%w: %v", ErrTampered, err) // a damaged gzip stream
			}
		}
		if err != nil {
			fr.Err = fmt.Errorf("%s: %w", name, err)
			firstErr = cmpOr(firstErr, fr.Err)
			// Go on from what this file claims to end with, so that
			// the files after it are still checked against each other.
			c.last = strings.TrimSuffix(name, ".gz")
		}
		rep.Files = append(rep.Files, fr)
	}
	for _, f := range files {
		add(f.name, true)
	}
	if _, err := os.Lstat(current); err == nil {
		add(filepath.Base(current), false)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return rep, err
	} else if len(files) > 0 {
		firstErr = cmpOr(firstErr, fmt.Errorf("%w: the current file %s is missing", ErrTampered, filepath.Base(current)))
	}
	rep.Chain, rep.Continues = c.rep, c.continues
	if c.continues != "" && !c.deleted[c.continues] && firstErr == nil {
		firstErr = fmt.Errorf("%w: the oldest file continues %s, which is missing and which retention did not record as deleted", ErrTampered, Clip(c.continues))
	}
	return rep, firstErr
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// findCurrent finds the current file of the log in dir.
func findCurrent(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var names, plain []string
	seen := map[string]bool{}
	for _, de := range ents {
		if stem, ext, _, ok := parseRotated(de.Name()); ok {
			if !seen[stem+ext] {
				seen[stem+ext] = true
				names = append(names, stem+ext)
			}
		} else if strings.HasSuffix(de.Name(), ".jsonl") && !strings.HasSuffix(de.Name(), ".tmp") && de.Type().IsRegular() {
			plain = append(plain, de.Name())
		}
	}
	switch {
	case len(names) == 1:
		return filepath.Join(dir, names[0]), nil
	case len(names) > 1:
		return "", fmt.Errorf("%s holds rotated files of several logs (%s): verify each file", dir, strings.Join(names, ", "))
	case len(plain) == 1:
		return filepath.Join(dir, plain[0]), nil
	case len(plain) > 1:
		return "", fmt.Errorf("%s holds several logs (%s): verify each file", dir, strings.Join(plain, ", "))
	}
	return "", fmt.Errorf("%w %s", ErrNoLog, dir)
}

// Scan calls fn for every entry of the log in dir (rotated files oldest
// first, then the current file) until fn returns false. Lines are parsed
// (ParseLine: canonical, hash matching) but the chain is not checked:
// that is VerifyDir's job. For reading trails, not for trusting them.
func Scan(dir string, fn func(file string, e Entry) bool) error {
	current, err := findCurrent(dir)
	if err != nil {
		return err
	}
	return scanLog(current, fn)
}

func scanFile(path string, fn func(Entry) bool) (bool, error) {
	r, err := openLogFile(path)
	if err != nil {
		return false, err
	}
	defer r.Close()
	br := bufio.NewReaderSize(r, 64<<10)
	for line := 1; ; line++ {
		b, err := readLine(br)
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("line %d: %w", line, err)
		}
		e, err := ParseLine(b)
		if err != nil {
			return false, fmt.Errorf("line %d: %w", line, err)
		}
		if !fn(e) {
			return false, nil
		}
	}
}

// Gunzip reads a gzipped (rotated) log file.
func Gunzip(r io.Reader) (io.Reader, error) {
	z, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("%w: not a valid gzip file: %v", ErrTampered, err)
	}
	return z, nil
}
