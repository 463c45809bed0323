package badgerstore

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

// residentTables sums the Rss of this process's mappings of the tables
// (*.sst) under dir (/proc/self/smaps).
func residentTables(t *testing.T, dir string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var sum int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if m, err := parseMapsLine(line); err == nil { // a mapping's first line; its fields follow
			in = strings.HasPrefix(m.path, dir+"/") && strings.HasSuffix(m.path, ".sst")
			continue
		}
		if rest, ok := strings.CutPrefix(line, "Rss:"); ok && in {
			f := strings.Fields(rest)
			kb, _ := strconv.ParseInt(f[0], 10, 64)
			sum += kb << 10
		}
	}
	return sum
}

// cachedFraction is the fraction of path's pages in the page cache
// (mincore on a fresh mapping of it).
func cachedFraction(t *testing.T, path string) float64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	if fi.Size() == 0 {
		return 1
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(b)
	vec := make([]byte, (len(b)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	in := 0
	for _, v := range vec {
		in += int(v & 1)
	}
	return float64(in) / float64(len(vec))
}

// TestDropMappedTables: above the limit, the pages of a real store's
// tables leave the process (its resident pages of *.sst drop) but stay in
// the page cache, so the next read is not a disk read (with MADV_PAGEOUT,
// the first version, they were evicted and this fails); every record reads
// back; under the limit nothing is dropped.
func TestDropMappedTables(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, sk := openWithKey(t, dir, "ada")
	var tokens []string
	for b := 0; b < 20; b++ {
		recs := make([]vault.Record, 500)
		for i := range recs {
			// Below the value threshold: the records live in the tables.
			recs[i] = vault.Record{Token: fmt.Sprintf("tok-%03d-%04d", b, i), KeyID: sk.ID, Kind: format.Generic,
				Created: sk.Created, Sealed: make([]byte, 600), AADVersion: vault.RecordAADv2}
			tokens = append(tokens, recs[i].Token)
		}
		if err := s.PutRecords(ctx, "ada", sk.ID, recs); err != nil {
			t.Fatal(err)
		}
	}
	// Closing flushes the memtable into a table.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, Options{MappedLimit: 1 << 40}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	read := func() {
		for _, tok := range tokens {
			if _, err := s.Record(ctx, tok); err != nil {
				t.Fatalf("record: %v", err)
			}
		}
	}
	read()
	abs, _ := filepath.Abs(dir)
	tables, _ := filepath.Glob(filepath.Join(abs, "*.sst"))
	if len(tables) == 0 {
		t.Fatal("no table after a close: the test does not test")
	}
	before := residentTables(t, abs)
	if before < 4<<20 {
		t.Fatalf("only %d bytes of the store's files resident after reading ~6 MiB of records", before)
	}
	if dropped, err := s.limitMapped(0); err != nil || dropped == 0 {
		t.Fatalf("limitMapped(0) = %d, %v", dropped, err)
	}
	after := residentTables(t, abs)
	t.Logf("resident: %d bytes before, %d after", before, after)
	if after > before/4 {
		t.Fatalf("resident pages of the store's files: %d before, %d after", before, after)
	}
	for _, p := range tables {
		if c := cachedFraction(t, p); c < 0.9 {
			t.Fatalf("%s: %.0f%% of its pages in the page cache after paging out (want them kept)", filepath.Base(p), 100*c)
		}
	}
	read() // and the records read back
	if dropped, err := s.limitMapped(1 << 40); err != nil || dropped != 0 {
		t.Fatalf("limitMapped under the limit = %d, %v", dropped, err)
	}
}
