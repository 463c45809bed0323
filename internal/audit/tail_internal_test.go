package audit

import (
	"bytes"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

func naiveTail(data []byte, maxLines int) ([][]byte, bool) {
	var lines [][]byte
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		lines = append(lines, data[:i+1])
		data = data[i+1:]
	}
	var rev [][]byte
	for i := len(lines) - 1; i >= 0; i-- {
		rev = append(rev, lines[i])
		if isCheckpointLine(lines[i]) || len(rev) >= maxLines {
			return reverse(rev), false
		}
	}
	return reverse(rev), true
}

// TestReadTail compares readTail with a naive forward split: lines across
// block boundaries, longer than a block, one-line files, and lines that
// only contain the checkpoint marker text.
func TestReadTail(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewSource(1))
	sizes := []int{1, 2, 100, 65535, 65536, 65537, 131071, 131072, 200000}
	for iter := 0; iter < 300; iter++ {
		var data []byte
		n := 1 + rng.Intn(6)
		for i := 0; i < n; i++ {
			var l int
			if rng.Intn(2) == 0 {
				l = sizes[rng.Intn(len(sizes))]
			} else {
				l = 1 + rng.Intn(70000)
			}
			body := bytes.Repeat([]byte{'a' + byte(i)}, l-1)
			if rng.Intn(5) == 0 && l > 30 {
				copy(body, `"type":"checkpoint"`)
			}
			data = append(data, body...)
			data = append(data, '\n')
		}
		p := filepath.Join(dir, "f")
		os.WriteFile(p, data, 0o600)
		f, _ := os.Open(p)
		maxLines := 1 + rng.Intn(7)
		got, atStart, err := readTail(f, int64(len(data)), maxLines, 1<<30)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		want, wantStart := naiveTail(data, maxLines)
		if atStart != wantStart || len(got) != len(want) {
			t.Fatalf("iter %d: got %d lines atStart %v, want %d %v", iter, len(got), atStart, len(want), wantStart)
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("iter %d line %d differs (len %d vs %d)", iter, i, len(got[i]), len(want[i]))
			}
		}
	}
}
