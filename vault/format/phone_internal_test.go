package format

import (
	"crypto/rand"
	"maps"
	mrand "math/rand/v2"
	"slices"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// phoneExampleValues returns libphonenumber's example number of every region
// and type that Normalize accepts.
func phoneExampleValues(t *testing.T) []string {
	var xs []string
	for _, region := range slices.Sorted(maps.Keys(phonenumbers.GetSupportedRegions())) {
		for typ := phonenumbers.FIXED_LINE; typ < phonenumbers.UNKNOWN; typ++ {
			n := phonenumbers.GetExampleNumberForType(region, typ)
			if n == nil {
				continue
			}
			v := phonenumbers.Format(n, phonenumbers.E164)
			if c, err := Normalize(Phone, v); err == nil && c == v {
				xs = append(xs, v)
			}
		}
	}
	if len(xs) < 1000 {
		t.Fatalf("only %d example numbers", len(xs))
	}
	return xs
}

// TestPhoneSetMatchesLibrary compares phoneSet, which runs libphonenumber's
// expressions as automata, with the library itself: for shapes with at most
// 4 random digits on every candidate (so the count is checked exactly), for
// the others on 40 random candidates each.
func TestPhoneSetMatchesLibrary(t *testing.T) {
	r := mrand.New(mrand.NewPCG(8, 9))
	exhaustive := 0
	xs := phoneExampleValues(t)
	if testing.Short() {
		xs = xs[:len(xs)/8]
	}
	for _, v := range xs {
		region, typ, ok := phoneInfo(v)
		if !ok {
			continue
		}
		s, self, err := phoneSetOf(v)
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		if !self {
			t.Fatalf("%s is not in its own set", v)
		}
		cc := v[:1+ccLen(v[1:])]
		nsn := []byte(v[len(cc):])
		free := len(nsn) - 2
		in := func() bool {
			got, err := s.contains(string(nsn))
			if err != nil {
				t.Fatal(err)
			}
			r2, t2, ok := phoneInfo(cc + string(nsn))
			if want := ok && r2 == region && t2 == typ; got != want {
				t.Fatalf("%s: set of %s says %v, libphonenumber %v", cc+string(nsn), v, got, want)
			}
			return got
		}
		if free <= 4 {
			exhaustive++
			var n int64
			max := 1
			for range free {
				max *= 10
			}
			for i := range max {
				for j, x := 0, i; j < free; j, x = j+1, x/10 {
					nsn[free-1-j] = byte('0' + x%10)
				}
				if in() {
					n++
				}
			}
			if size, _ := s.size(); size != n {
				t.Fatalf("%s: size %d, libphonenumber accepts %d", v, size, n)
			}
			continue
		}
		for range 40 {
			for j := range free {
				nsn[j] = byte('0' + r.IntN(10))
			}
			in()
		}
	}
	if exhaustive < 5 && !testing.Short() {
		t.Fatalf("only %d shapes checked exhaustively", exhaustive)
	}
}

// TestPhoneTokensValid: every example number that has another valid number
// of its shape gets a checksum-valid token that libphonenumber finds valid,
// in the same region and of the same type, keeping the country code, length
// and last 2 digits; TokenSpace counts the set less the value.
func TestPhoneTokensValid(t *testing.T) {
	xs := phoneExampleValues(t)
	if testing.Short() {
		xs = xs[:len(xs)/8]
	}
	refused := 0
	for _, v := range xs {
		region, typ, ok := phoneInfo(v)
		tok, err := Token(Phone, v, Options{ChecksumValid: true}, rand.Reader)
		n, serr := TokenSpace(Phone, v, Options{ChecksumValid: true})
		if err != nil {
			// Only a number whose shape has no other valid number (or
			// that is not valid as written) is refused.
			if err != errNoValidPhone || serr != errNoValidPhone {
				t.Fatalf("Token(%s): %v; TokenSpace: %v", v, err, serr)
			}
			if ok {
				s, _, _ := phoneSetOf(v)
				if size, _ := s.size(); size != 1 {
					t.Fatalf("Token(%s) refused with %d numbers in its set", v, size)
				}
			}
			refused++
			continue
		}
		r2, t2, ok2 := phoneInfo(tok)
		c := 1 + ccLen(v[1:])
		if !ok2 || r2 != region || t2 != typ || tok[:c] != v[:c] || len(tok) != len(v) || tok[len(tok)-2:] != v[len(v)-2:] || tok == v {
			t.Fatalf("token %s of %s (%s %v): valid %v, %s %v", tok, v, region, typ, ok2, r2, t2)
		}
		if serr != nil || n.Sign() <= 0 {
			t.Fatalf("TokenSpace(%s) = %v, %v", v, n, serr)
		}
	}
	if refused > len(xs)/100 {
		t.Fatalf("%d of %d example numbers refused", refused, len(xs))
	}
}
