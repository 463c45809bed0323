package loadgen

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

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
// remote servers sample RSS on the server host instead).
func readRSS(pid int) (memSample, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memSample{}, err
	}
	defer f.Close()
	var m memSample
	var seen int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &m.RSS
		case "RssAnon":
			dst = &m.Anon
		case "RssFile":
			dst = &m.File
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return memSample{}, fmt.Errorf("/proc/%d/status %s: %w", pid, k, err)
		}
		*dst = kb << 10
		seen++
	}
	if m.RSS == 0 && seen == 0 {
		return memSample{}, errors.New("no VmRSS line")
	}
	return m, sc.Err()
}
