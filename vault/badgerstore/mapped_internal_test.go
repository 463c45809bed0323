package badgerstore

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParseMapsLine(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       mapping
		err        bool
	}{
		{"shared table", "7f3a1c000000-7f3a1e000000 rw-s 00000000 fd:01 1048602                    /var/lib/tv/data/000012.sst",
			mapping{0x7f3a1c000000, 0x7f3a1e000000, true, "/var/lib/tv/data/000012.sst"}, false},
		{"private binary", "00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/tokenvault",
			mapping{0x400000, 0x452000, false, "/usr/bin/tokenvault"}, false},
		{"anonymous", "7ffd1a8e0000-7ffd1a901000 rw-p 00000000 00:00 0", mapping{0x7ffd1a8e0000, 0x7ffd1a901000, false, ""}, false},
		{"pseudo path", "7ffd1a9fe000-7ffd1aa00000 r-xp 00000000 00:00 0                          [vdso]",
			mapping{0x7ffd1a9fe000, 0x7ffd1aa00000, false, "[vdso]"}, false},
		{"space in path, deleted", "7f00-8f00 r--s 00001000 fd:01 77 /data/my dir/000001.vlog (deleted)",
			mapping{0x7f00, 0x8f00, true, "/data/my dir/000001.vlog (deleted)"}, false},
		{"empty", "", mapping{}, true},
		{"no range", "7f00 rw-s 0 fd:01 1 /x", mapping{}, true},
		{"bad start", "zz-8f00 rw-s 0 fd:01 1 /x", mapping{}, true},
		{"end before start", "8f00-7f00 rw-s 0 fd:01 1 /x", mapping{}, true},
		{"short perms", "7f00-8f00 rw 0 fd:01 1 /x", mapping{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMapsLine(tc.line)
			if tc.err {
				if !errors.Is(err, errMapsLine) {
					t.Fatalf("err = %v, want errMapsLine", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseMapsLine = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestMappedUnder(t *testing.T) {
	maps := strings.Join([]string{
		"00400000-00452000 r-xp 00000000 08:02 1 /usr/bin/tokenvault",
		"1000-2000 rw-s 00000000 fd:01 2 /data/tv/000001.sst",
		"2000-3000 rw-p 00000000 fd:01 3 /data/tv/000002.sst",       // private: never
		"3000-4000 rw-s 00000000 fd:01 4 /data/tv-other/000003.sst", // a sibling with the same prefix
		"4000-5000 rw-s 00000000 fd:01 5 /data/tv/sub/00005.mem (deleted)",
		"5000-5000 rw-s 00000000 fd:01 6 /data/tv/empty.vlog",
		"garbage line",
		"6000-7000 rw-s 00000000 fd:01 7 /data/000004.sst",
		"7000-8000 rw-s 00000000 00:00 0 [shm]",
	}, "\n")
	got, err := mappedUnder(strings.NewReader(maps), "/data/tv/")
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, m := range got {
		paths = append(paths, m.path)
	}
	want := "/data/tv/000001.sst|/data/tv/sub/00005.mem (deleted)"
	if strings.Join(paths, "|") != want {
		t.Fatalf("mappedUnder = %q, want %q", paths, want)
	}
}

// FuzzParseMapsLine: whatever the line, no panic; a line formatted from a
// mapping parses back to it.
func FuzzParseMapsLine(f *testing.F) {
	f.Add("7f3a1c000000-7f3a1e000000 rw-s 00000000 fd:01 1048602   /var/lib/tv/data/000012.sst", uint64(1), uint64(2), true, "/a b/c")
	f.Add("", uint64(0), uint64(0), false, "")
	f.Fuzz(func(t *testing.T, line string, start, size uint64, shared bool, path string) {
		if m, err := parseMapsLine(line); err == nil && m.end < m.start {
			t.Fatalf("parsed an inverted range from %q", line)
		}
		if start > ^uint64(0)-size || strings.ContainsAny(path, "\n") || strings.TrimLeft(path, " ") != path {
			return
		}
		want := mapping{start: start, end: start + size, shared: shared, path: path}
		perms := "rw-p"
		if shared {
			perms = "rw-s"
		}
		line = fmt.Sprintf("%x-%x %s 00000000 fd:01 42     %s", want.start, want.end, perms, want.path)
		if path == "" {
			line = fmt.Sprintf("%x-%x %s 00000000 00:00 0", want.start, want.end, perms)
		}
		got, err := parseMapsLine(line)
		if err != nil || got != want {
			t.Fatalf("round trip of %+v through %q: %+v, %v", want, line, got, err)
		}
	})
}
