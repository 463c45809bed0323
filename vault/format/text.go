package format

import (
	"strings"
	"unicode"
)

// Text kinds: national-id, address, name and generic.

const (
	nationalIDMaxBytes = 64
	addressMaxBytes    = 1024
	nameMaxBytes       = 256
	// minRandom is the least number of letters and numerals a free-form
	// value must have, so that its token space is at least 10^4.
	minRandom = 4
	// nameMinLetters is the least number of letters in a name token.
	nameMinLetters = 6
)

// isAlnum reports letters and numerals. Numerals are all of Unicode
// category N, not just the decimal digits (Nd): the letter numerals (Nl:
// Ⅳ, 〇) and other numerals (No: ½, ², ⑦) carry numbers as well, and a
// house number written "½" or "Ⅳ" must not survive in a token or mask.
func isAlnum(r rune) bool { return unicode.IsLetter(r) || unicode.IsNumber(r) }

// isJoiner reports ZWNJ and ZWJ, which Persian and Indic names need.
func isJoiner(r rune) bool { return r == '\u200c' || r == '\u200d' }

// isDropped reports what tokens and masks of addresses and names drop when
// it follows a letter or numeral: marks and joiners belong to the letter they
// follow, so on a random letter they would leak the original diacritics.
// Marks that follow nothing alphanumeric are kept: dropping them could leave
// whitespace at the end of the token.
func isDropped(r rune) bool { return unicode.IsMark(r) || isJoiner(r) }

func countAlnum(s string) int {
	n := 0
	for _, r := range s {
		if isAlnum(r) {
			n++
		}
	}
	return n
}

// mapAlnum passes every letter and numeral of s through f and keeps
// everything else, except that with drop set the marks and joiners following
// a letter or numeral are removed.
func mapAlnum(s string, drop bool, f func(rune) rune) string {
	var b strings.Builder
	b.Grow(len(s))
	attached := false
	for _, r := range s {
		switch {
		case isAlnum(r):
			b.WriteRune(f(r))
			attached = true
		case drop && attached && isDropped(r):
		default:
			b.WriteRune(r)
			attached = false
		}
	}
	return b.String()
}

// scramble replaces every letter with a random ASCII letter of the same case
// (unicode.IsUpper; caseless letters count as lower) and every numeral (see
// isAlnum) with a random ASCII digit.
func scramble(s string, g *rng, drop bool) string {
	return mapAlnum(s, drop, func(r rune) rune {
		switch {
		case unicode.IsUpper(r):
			return rune(g.upper())
		case unicode.IsLetter(r):
			return rune(g.lower())
		}
		return rune(g.digit())
	})
}

// maskText stars every letter and numeral but the last keep of them.
func maskText(s string, keep int, drop bool) string {
	hide := countAlnum(s) - keep
	return mapAlnum(s, drop, func(r rune) rune {
		if hide--; hide >= 0 {
			return '*'
		}
		return r
	})
}

func normNationalID(s string) (string, error) {
	if len(s) > nationalIDMaxBytes {
		return "", invalid(NationalID, "longer than 64 characters")
	}
	b := []byte(s)
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z':
			b[i] = c - 'a' + 'A'
		case !isUpper(c) && !isDigit(c) && strings.IndexByte(" -/.", c) < 0:
			return "", invalid(NationalID, "may contain only letters A-Z, digits, spaces, '-', '/' and '.'")
		}
	}
	v := string(b)
	if countAlnum(v) < minRandom {
		return "", invalid(NationalID, "too short: needs at least 4 letters or digits")
	}
	return v, nil
}

func maskNationalID(v string) string { return maskText(v, 2, false) }

func normAddress(s string) (string, error) {
	if len(s) > addressMaxBytes {
		return "", invalid(Address, "longer than 1024 bytes")
	}
	if countAlnum(s) < minRandom {
		return "", invalid(Address, "too short to tokenize: needs at least 4 letters or digits")
	}
	return s, nil
}

func tokenAddress(v string, _ Options, g *rng) string { return scramble(v, g, true) }

func maskAddress(v string) string { return maskText(v, 0, true) }

func normName(s string) (string, error) {
	letters := 0
	for _, r := range s {
		switch {
		case unicode.IsLetter(r):
			letters++
		case isDropped(r) || unicode.IsSpace(r) || strings.ContainsRune("'\u2019-.", r):
		default:
			return "", invalid(Name, "may contain only letters, marks, spaces, apostrophes, hyphens and periods")
		}
	}
	if letters == 0 {
		return "", invalid(Name, "must contain a letter")
	}
	v := strings.Join(strings.Fields(s), " ") // one spelling per name for lookups
	if len(v) > nameMaxBytes {
		return "", invalid(Name, "longer than 256 bytes")
	}
	return v, nil
}

func isASCIILetter(r rune) bool { return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' }

func tokenName(v string, _ Options, g *rng) string {
	t := scramble(v, g, true)
	// Every letter became an ASCII letter and nothing else is one.
	letters := 0
	for _, r := range t {
		if isASCIILetter(r) {
			letters++
		}
	}
	if letters >= nameMinLetters {
		return t
	}
	i := strings.LastIndexFunc(t, isASCIILetter) + 1
	pad := make([]byte, nameMinLetters-letters)
	for j := range pad {
		pad[j] = g.lower()
	}
	return t[:i] + string(pad) + t[i:]
}

func maskName(v string) string {
	words := strings.Split(v, " ")
	for i, w := range words {
		show := countAlnum(w) > 1 // a single letter would be shown in full
		words[i] = mapAlnum(w, true, func(r rune) rune {
			if show {
				show = false
				return r
			}
			return '*'
		})
	}
	return strings.Join(words, " ")
}

func normGeneric(s string) (string, error) {
	if countAlnum(s) < minRandom {
		return "", invalid(Generic, "too short to tokenize: needs at least 4 letters or digits")
	}
	return s, nil
}

// tokenGeneric also serves national-id, whose letters are all upper case.
func tokenGeneric(v string, _ Options, g *rng) string { return scramble(v, g, false) }

func maskGeneric(v string) string { return maskText(v, 0, false) }
