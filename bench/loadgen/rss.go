package loadgen

import "github.com/tokenvault/tokenvault/internal/procmem"

// memSample is one reading of a process's resident memory: the total and
// its two halves that behave differently in tokenvault — anonymous memory
// (Go heap, badger's caches; what GOMEMLIMIT bounds) and file-backed pages
// (badger's memory-mapped tables and value log; the kernel drops them
// under pressure).
type memSample struct {
	RSS, Anon, File int64
}

// readRSS reads a process's resident memory from /proc (Linux only; the
// load generator and the server must share the machine for this, so for
// remote servers sample RSS on the server host instead). A line the
// kernel does not print reads as 0.
func readRSS(pid int) (memSample, error) {
	m, err := procmem.Read(pid)
	if err != nil {
		return memSample{}, err
	}
	return memSample{RSS: max(m.RSS, 0), Anon: max(m.Anon, 0), File: max(m.File, 0)}, nil
}
