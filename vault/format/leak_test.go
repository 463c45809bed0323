package format_test

import (
	mrand "math/rand/v2"
	"strings"
	"testing"
	"unicode"

	"github.com/tokenvault/tokenvault/vault/format"
)

// numeralClasses holds every rune of the three Unicode numeral categories:
// decimal digits (Nd: 7 ٣ ７ 𝟙), letter numerals (Nl: Ⅳ 〇 ⅰ) and other
// numerals (No: ½ ² ⑦ ⒈).
var numeralClasses = map[string][]rune{
	"Nd": tableRunes(unicode.Nd),
	"Nl": tableRunes(unicode.Nl),
	"No": tableRunes(unicode.No),
}

var numeralClassNames = []string{"Nd", "Nl", "No"}

func tableRunes(t *unicode.RangeTable) []rune {
	var rs []rune
	for _, r := range t.R16 {
		for c := rune(r.Lo); c <= rune(r.Hi); c += rune(r.Stride) {
			rs = append(rs, c)
		}
	}
	for _, r := range t.R32 {
		for c := rune(r.Lo); c <= rune(r.Hi); c += rune(r.Stride) {
			rs = append(rs, c)
		}
	}
	return rs
}

// randomNumeral returns a random numeral of a random class, and the class.
func randomNumeral(r *mrand.Rand) (rune, string) {
	c := pick(r, numeralClassNames)
	return pick(r, numeralClasses[c]), c
}

// keptNumerals returns, per rune of the canonical value v, whether the
// documented rule (FORMATS.md) keeps that rune in the token (mask false) or
// in the mask (mask true). Only numerals matter: the test changes no other
// rune.
func keptNumerals(k format.Kind, v string, mask bool) []bool {
	rs := []rune(v)
	kept := make([]bool, len(rs))
	keep := func(from, to int) {
		for i := max(from, 0); i < min(to, len(rs)); i++ {
			kept[i] = true
		}
	}
	n := len(rs)
	switch k {
	case format.PAN: // first 6 and last 4, in both
		keep(0, 6)
		keep(n-4, n)
	case format.SSN, format.BankAccount: // last 4 (the serial), in both
		keep(n-4, n)
	case format.CNResidentID: // the province (first 2), in both
		keep(0, 2)
	case format.Phone: // '+', country code and last 2, in both
		keep(0, 1+len(phoneCC(v)))
		keep(n-2, n)
	case format.Email: // the domain in both; the mask also shows the first character
		keep(strings.LastIndexByte(v, '@'), n)
		if mask {
			keep(0, 1)
		}
	case format.IBAN: // the country (letters); the mask also shows the last 4
		if mask {
			keep(n-4, n)
		}
	case format.NationalID: // the mask shows the last 2 letters or digits
		if mask {
			for i, shown := n-1, 0; i >= 0 && shown < 2; i-- {
				if unicode.IsLetter(rs[i]) || unicode.IsNumber(rs[i]) {
					kept[i] = true
					shown++
				}
			}
		}
	case format.CardExpiry: // the mask shows month and year; the token nothing
		if mask {
			keep(0, n)
		}
	}
	// address, name, generic, card-security-code: no numeral is kept.
	return kept
}

// asciiOnly reports the kinds whose values are ASCII by definition, so
// only ASCII digits can stand in for a numeral.
var asciiOnly = map[format.Kind]bool{
	format.PAN: true, format.SSN: true, format.CNResidentID: true, format.NationalID: true,
	format.Phone: true, format.Email: true, format.IBAN: true, format.BankAccount: true,
	format.CardSecurityCode: true, format.CardExpiry: true,
}

// repairCheck recomputes the check character of the kinds that have one,
// so that a value with a changed digit is valid again. The check position
// is never a kept one, so the repaired value still differs from the
// original only where nothing is kept.
func repairCheck(k format.Kind, v string) string {
	switch k {
	case format.CNResidentID:
		return v[:17] + string(cnCheck(v))
	case format.IBAN:
		check := 98 - ibanMod97(v[:2]+"00"+v[4:])
		return v[:2] + string([]byte{'0' + byte(check/10), '0' + byte(check%10)}) + v[4:]
	}
	return v
}

// withNumerals inserts or substitutes random numerals of every class into
// v and returns the result if it is still a canonical value of k (only
// address and generic accept non-ASCII numerals; name accepts none).
func withNumerals(r *mrand.Rand, k format.Kind, v string, seen map[string]int) string {
	rs := []rune(v)
	var classes []string
	for range 1 + r.IntN(4) {
		c, class := randomNumeral(r)
		classes = append(classes, class)
		i := r.IntN(len(rs) + 1)
		if i < len(rs) && unicode.IsNumber(rs[i]) {
			rs[i] = c
		} else {
			rs = append(rs[:i], append([]rune{c}, rs[i:]...)...)
		}
	}
	w := string(rs)
	if c, err := format.Normalize(k, w); err != nil || c != w {
		return v
	}
	for _, class := range classes {
		seen[class]++
	}
	return w
}

// TestNumeralsNotLeaked checks, for every kind and for random values with
// numerals of every Unicode class (Nd, Nl, No), that neither the token nor
// the mask reveals a numeral the documented rule does not keep:
//
//   - no token or mask contains a non-ASCII numeral (no kind keeps one: the
//     kinds that keep digits accept only ASCII digits);
//   - changing one numeral of the value that the rule does not keep changes
//     neither the mask nor, for the same random stream, the token. So the
//     token and mask carry no information about that numeral at all, which
//     also rules out a digit that is merely copied or transformed.
func TestNumeralsNotLeaked(t *testing.T) {
	n := 2000
	if testing.Short() {
		n = 200
	}
	for _, k := range format.Kinds() {
		t.Run(k.String(), func(t *testing.T) {
			r := mrand.New(mrand.NewPCG(11, uint64(k)))
			seen := map[string]int{}
			mutations := 0
			for range n {
				v := generators[k](r)
				if r.IntN(2) == 0 {
					v = withNumerals(r, k, v, seen)
				}
				m := format.Mask(k, v)
				if leaked := nonASCIINumeral(m); leaked != 0 {
					t.Fatalf("Mask(%q) = %q keeps the numeral %q", v, m, leaked)
				}
				seed := [32]byte{byte(k), byte(len(v)), byte(r.Uint32())}
				for _, opts := range []format.Options{{}, {ChecksumValid: true}} {
					tok, err := format.Token(k, v, opts, mrand.NewChaCha8(seed))
					if opts.ChecksumValid && !canBeValid(t, k, v) {
						continue // refused; TestTokenProperties checks the error
					}
					if err != nil {
						t.Fatalf("Token(%q): %v", v, err)
					}
					if leaked := nonASCIINumeral(tok); leaked != 0 {
						t.Fatalf("Token(%q) = %q keeps the numeral %q", v, tok, leaked)
					}
				}
				for _, mask := range []bool{false, true} {
					w, ok := mutateNumeral(r, k, v, keptNumerals(k, v, mask))
					if !ok {
						continue
					}
					mutations++
					if mask {
						if mw := format.Mask(k, w); mw != m {
							t.Fatalf("Mask(%q) = %q but Mask(%q) = %q: the mask shows a numeral the rule hides", v, m, w, mw)
						}
						continue
					}
					for _, opts := range []format.Options{{}, {ChecksumValid: true}} {
						if opts.ChecksumValid && (!canBeValid(t, k, v) || !canBeValid(t, k, w) || !sameValidity(k, v, w)) {
							continue
						}
						tv, err1 := format.Token(k, v, opts, mrand.NewChaCha8(seed))
						tw, err2 := format.Token(k, w, opts, mrand.NewChaCha8(seed))
						if err1 != nil || err2 != nil {
							t.Fatalf("Token: %v, %v", err1, err2)
						}
						// Token redraws when it draws its own value, so the
						// two differ exactly when the first draw was v or w.
						if tv != tw && tw != v && tv != w {
							t.Fatalf("same random stream: Token(%q) = %q but Token(%q) = %q: the token depends on a numeral the rule does not keep", v, tv, w, tw)
						}
					}
				}
			}
			if mutations < n/4 && k != format.Name {
				t.Fatalf("only %d of %d values had a numeral to change", mutations, 2*n)
			}
			if k == format.Address || k == format.Generic {
				for _, c := range numeralClassNames {
					if seen[c] < 50 {
						t.Errorf("only %d values with %s numerals were tested", seen[c], c)
					}
				}
			}
		})
	}
}

// mutateNumeral changes one numeral of v that kept does not mark and
// returns the changed value, if it is canonical.
func mutateNumeral(r *mrand.Rand, k format.Kind, v string, kept []bool) (string, bool) {
	rs := []rune(v)
	var free []int
	for i, c := range rs {
		if unicode.IsNumber(c) && !kept[i] {
			free = append(free, i)
		}
	}
	if len(free) == 0 {
		return "", false
	}
	i := pick(r, free)
	old := rs[i]
	for rs[i] == old {
		if asciiOnly[k] || r.IntN(2) == 0 {
			rs[i] = '0' + rune(r.IntN(10))
		} else {
			rs[i], _ = randomNumeral(r)
		}
	}
	w := repairCheck(k, string(rs))
	if c, err := format.Normalize(k, w); err != nil || c != w || w == v {
		return "", false // e.g. an SSN area of 000, or a date that does not exist
	}
	return w, true
}

func nonASCIINumeral(s string) rune {
	for _, c := range s {
		if c > unicode.MaxASCII && unicode.IsNumber(c) {
			return c
		}
	}
	return 0
}

// TestNumeralsScrambled pins the documented rule with examples: every
// numeral, whatever its class, becomes a random ASCII digit in tokens and a
// '*' in masks, and counts towards the 4 letters or digits.
func TestNumeralsScrambled(t *testing.T) {
	for _, c := range []struct {
		kind        format.Kind
		value, mask string
	}{
		{format.Generic, "½⑦Ⅳ²", "****"},
		{format.Generic, "Floor ² room ⑦", "***** * **** *"},
		{format.Generic, "٣٤ 〇ⅰ", "** **"},
		{format.Address, "Flat ½\n10 Downing St", "**** *\n** ******* **"},
		{format.Address, "Ⅳ Rue de l'E\u0301glise", "* *** ** *'******"},
	} {
		t.Run(c.kind.String()+"/"+c.value, func(t *testing.T) {
			if got, err := format.Normalize(c.kind, c.value); err != nil || got != c.value {
				t.Fatalf("Normalize = %q, %v", got, err)
			}
			if got := format.Mask(c.kind, c.value); got != c.mask {
				t.Errorf("Mask = %q, want %q", got, c.mask)
			}
			tok, err := format.Token(c.kind, c.value, format.Options{}, mrand.NewChaCha8([32]byte{}))
			if err != nil {
				t.Fatal(err)
			}
			vr := []rune(c.value)
			if c.kind == format.Address {
				vr = []rune(strings.ReplaceAll(c.value, "\u0301", "")) // marks after a letter are dropped
			}
			tr := []rune(tok)
			if len(tr) != len(vr) {
				t.Fatalf("token %q has %d runes, want %d", tok, len(tr), len(vr))
			}
			for i, d := range tr {
				if unicode.IsNumber(vr[i]) && (d < '0' || d > '9') {
					t.Errorf("token %q: numeral %q became %q, want an ASCII digit", tok, vr[i], d)
				}
			}
		})
	}
	// Name accepts no numeral of any class.
	for _, class := range numeralClassNames {
		for _, c := range numeralClasses[class][:20] {
			if _, err := format.Normalize(format.Name, "Anna "+string(c)); err == nil {
				t.Errorf("name with the %s numeral %q accepted", class, c)
			}
		}
	}
}

// sameValidity reports whether v and w keep the same things in a
// checksum-valid token: for a phone number also the region and the number
// type that libphonenumber gives it (FORMATS.md), which hidden digits decide.
func sameValidity(k format.Kind, v, w string) bool {
	if k != format.Phone {
		return true
	}
	rv, tv, _ := phoneValid(v)
	rw, tw, _ := phoneValid(w)
	return rv == rw && tv == tw
}
