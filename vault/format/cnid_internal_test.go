package format

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// TestCNRegionsTable checks the embedded table against the list it was made
// from (testdata/gbt2260-2020.txt): every code is in it, the codes of a
// province are sorted and unique, and every province of the list is there.
func TestCNRegionsTable(t *testing.T) {
	b, err := os.ReadFile("testdata/gbt2260-2020.txt")
	if err != nil {
		t.Fatal(err)
	}
	list := map[string]bool{}
	provinces := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" && l[0] != '#' {
			list[l] = true
			provinces[l[:2]] = true
		}
	}
	total := 0
	for p, regions := range cnRegions {
		if len(regions)%4 != 0 || len(regions) == 0 {
			t.Fatalf("province %s: %d digits", p, len(regions))
		}
		var codes []string
		for i := 0; i < len(regions); i += 4 {
			codes = append(codes, p+regions[i:i+4])
		}
		if !slices.IsSorted(codes) || len(slices.Compact(slices.Clone(codes))) != len(codes) {
			t.Fatalf("province %s: codes not sorted and unique", p)
		}
		for _, c := range codes {
			if !list[c] {
				t.Fatalf("%s is not in the GB/T 2260 list", c)
			}
			if !cnRegion(c + "19491231002X") {
				t.Fatalf("cnRegion(%s) = false", c)
			}
		}
		total += len(codes)
	}
	if len(cnRegions) != len(provinces) || total != 2625 {
		t.Fatalf("%d provinces (list: %d), %d codes", len(cnRegions), len(provinces), total)
	}
	if cnRegion("110103" + "19491231002X") { // Chongwen, merged into Dongcheng in 2010
		t.Fatal("cnRegion accepts an abolished code")
	}
}
