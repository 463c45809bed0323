// Package testfs has file helpers for tests: copying a testdata tree (a
// data directory, keys) into a temporary directory before a test opens or
// migrates it.
package testfs

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// CopyTree copies src into a new temporary directory and returns it.
// Directories are made 0700 and files 0600: git keeps no file modes but
// the executable bit, and tokenvault refuses key files others can read.
func CopyTree(t testing.TB, src string) string {
	t.Helper()
	dir := t.TempDir()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dir, rel), 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// Grep reports which files under dir contain needle (the byte searches
// of data directories for subject ids and key bytes).
func Grep(t testing.TB, dir string, needle []byte) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, needle) {
			hits = append(hits, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}
