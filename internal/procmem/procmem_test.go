package procmem

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		status string
		want   Mem
		err    bool
	}{
		{"Name:\ttv\nVmRSS:\t  3048 kB\nRssAnon:\t  1000 kB\nRssFile:\t    2048 kB\nRssShmem:\t0 kB\n", Mem{3048 << 10, 1000 << 10, 2048 << 10}, false},
		{"RssFile:\t0 kB\n", Mem{-1, -1, 0}, false},
		{"VmRSS:\t12 kB\n", Mem{12 << 10, -1, -1}, false},
		{"Name:\ttv\n", Mem{}, true},
		{"", Mem{}, true},
		{"RssFile:\t12 MB\n", Mem{}, true},
		{"RssFile:\t-4 kB\n", Mem{}, true},
		{"VmRSS:\tlots kB\n", Mem{}, true},
	} {
		t.Run(strconv.Quote(tc.status), func(t *testing.T) {
			got, err := Parse(strings.NewReader(tc.status))
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("Parse = %+v, %v; want %+v (error %v)", got, err, tc.want, tc.err)
			}
		})
	}
	if _, err := Parse(strings.NewReader("Name:\ttv\n")); !errors.Is(err, ErrNoLines) {
		t.Fatalf("no lines: %v", err)
	}
}

func TestReadSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/PID/status is Linux's")
	}
	for _, pid := range []int{0, os.Getpid()} {
		m, err := Read(pid)
		if err != nil || m.RSS <= 0 || m.Anon <= 0 || m.File < 0 || m.Anon+m.File > m.RSS+(1<<20) {
			t.Fatalf("Read(%d) = %+v, %v", pid, m, err)
		}
	}
}

// FuzzParse: whatever the input, no panic and no negative reading but -1;
// a status written from a reading parses back to it.
func FuzzParse(f *testing.F) {
	f.Add("VmRSS:\t 10 kB\nRssAnon:\t 4 kB\n", int64(10), int64(4), int64(6))
	f.Add("", int64(0), int64(0), int64(0))
	f.Fuzz(func(t *testing.T, in string, rss, anon, file int64) {
		if m, err := Parse(strings.NewReader(in)); err == nil && (m.RSS < -1 || m.Anon < -1 || m.File < -1) {
			t.Fatalf("%q: %+v", in, m)
		}
		if rss < 0 || anon < 0 || file < 0 || rss > 1<<50 || anon > 1<<50 || file > 1<<50 {
			return
		}
		s := fmt.Sprintf("Name:\ttv\nVmRSS:\t%8d kB\nRssAnon:\t%8d kB\nRssFile:\t%8d kB\n", rss, anon, file)
		want := Mem{rss << 10, anon << 10, file << 10}
		if got, err := Parse(strings.NewReader(s)); err != nil || got != want {
			t.Fatalf("round trip of %+v: %+v, %v", want, got, err)
		}
	})
}
