// Package procmem reads a Linux process's resident memory from
// /proc/PID/status: the total (VmRSS) and its anonymous (RssAnon) and
// file-backed (RssFile) parts. The badger store uses RssFile to bound its
// mapped files' pages; tvbench samples all three for its RSS charts.
package procmem

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Mem is one reading, in bytes. A field is -1 if the kernel printed no
// such line (RssAnon and RssFile exist since Linux 4.5).
type Mem struct {
	RSS, Anon, File int64
}

// ErrNoLines: the input had none of the three lines.
var ErrNoLines = errors.New("procmem: no VmRSS, RssAnon or RssFile line")

// Parse reads VmRSS, RssAnon and RssFile from r, a /proc/PID/status. A
// value that is not a non-negative number of kB is an error.
func Parse(r io.Reader) (Mem, error) {
	m := Mem{RSS: -1, Anon: -1, File: -1}
	seen := false
	sc := bufio.NewScanner(r)
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
		if err != nil || kb < 0 || kb > 1<<50 {
			return Mem{}, fmt.Errorf("procmem: %s: not a number of kB", k)
		}
		*dst, seen = kb<<10, true
	}
	if err := sc.Err(); err != nil {
		return Mem{}, err
	}
	if !seen {
		return Mem{}, ErrNoLines
	}
	return m, nil
}

// Read reads /proc/PID/status; pid 0 is this process (/proc/self).
func Read(pid int) (Mem, error) {
	path := "/proc/self/status"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	f, err := os.Open(path)
	if err != nil {
		return Mem{}, err
	}
	defer f.Close()
	return Parse(f)
}
