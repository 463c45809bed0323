package vault

import (
	"bufio"
	"bytes"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// TestVolatileKeyLocked: the page holding the in-memory key of volatile
// tokens is locked out of swap (smaps: its mapping has Locked memory), or
// the arena says it could not be (RLIMIT_MEMLOCK).
func TestVolatileKeyLocked(t *testing.T) {
	var logs bytes.Buffer
	a, err := newVolatileArena(VolatileOptions{}, time.Now, slog.New(slog.NewTextHandler(&logs, nil)),
		func() (string, error) { return "aaaaaaaa", nil })
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	if strings.Contains(logs.String(), "could not lock") {
		t.Skipf("mlock refused here: %s", logs.String())
	}
	addr := uint64(uintptr(unsafe.Pointer(&a.cur.key.Bytes()[0])))
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		// A mapping's header is "lo-hi perms …"; its fields ("Locked: 4 kB") follow.
		if lo, hi, ok := strings.Cut(strings.Fields(line)[0], "-"); ok && !strings.Contains(strings.Fields(line)[0], ":") {
			l, err1 := strconv.ParseUint(lo, 16, 64)
			h, err2 := strconv.ParseUint(hi, 16, 64)
			in = err1 == nil && err2 == nil && l <= addr && addr < h
			continue
		}
		if in && strings.HasPrefix(line, "Locked:") {
			if kb, _ := strconv.Atoi(strings.Fields(line)[1]); kb == 0 {
				t.Fatalf("the key's mapping has no locked memory: %s", line)
			}
			return
		}
	}
	t.Fatal("the key's mapping is not in /proc/self/smaps")
}
