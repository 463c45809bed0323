package format

import (
	"math/big"
	"math/bits"
	"strings"
	"unicode"
)

// Token spaces. Each function below counts the distinct tokens that the
// kind's token function can return for v, so it must change whenever that
// function does (TestTokenSpaceExhaustive enumerates small shapes).
//
// A token never equals its value, so each count leaves the value out when
// the value has the token's shape (self). Every value with the same kept
// parts and layout draws from the same set of strings, whose size is the
// count plus one if self was left out.

// TokenSpace returns the number of distinct tokens [Token] can return for
// the normalized value with opts. The count depends only on the parts a
// token keeps and on the value's layout, so every value sharing those draws
// from the same set (of the count's size, or one more when the value itself
// is in it): once the vault holds all of the set, no new token can be found
// for any of those values (see FORMATS.md, "Token spaces"). The vault keeps
// tokens unique across all kinds and subjects, so sets of different kinds
// with the same strings overlap.
//
// Validation is that of Token: an invalid or non-canonical value gives an
// error wrapping [ErrInvalidValue], and errors never contain the value.
// The result is exact, which can make it very large (an address of 1024
// digits has 10^1024 - 1 tokens); compare it with [big.Int.Cmp]. It takes
// well under a microsecond for most kinds, tens of microseconds for an
// iban, whose count depends on the MOD 97 check of every BBAN, and a few
// milliseconds for a checksum-valid phone number, whose count runs
// libphonenumber's patterns over every digit (phone.go).
func TokenSpace(k Kind, normalized string, opts Options) (*big.Int, error) {
	v, err := Normalize(k, normalized)
	if err != nil {
		return nil, err
	}
	if v != normalized {
		return nil, invalid(k, "not in canonical form (call Normalize first)")
	}
	if err := checkValid(k, v, opts); err != nil {
		return nil, err
	}
	return specs[k].space(v, opts), nil
}

// count returns 26^letters * 10^digits * factor, minus one if self.
func count(letters, digits int, factor int64, self bool) *big.Int {
	n := new(big.Int).Exp(big.NewInt(26), big.NewInt(int64(letters)), nil)
	n.Mul(n, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(digits)), nil))
	n.Mul(n, big.NewInt(factor))
	if self {
		n.Sub(n, big.NewInt(1))
	}
	return n
}

// spacePAN: the n-10 middle digits are random, except that the last of them
// is fixed by the check: with ChecksumValid to the one digit that passes
// Luhn (10^(m-1)), by default to any of the 9 that fail it (9*10^(m-1)).
func spacePAN(v string, o Options) *big.Int {
	passes := luhnSum([]byte(v))%10 == 0
	if o.ChecksumValid {
		return count(0, len(v)-11, 1, passes)
	}
	return count(0, len(v)-11, 9, !passes)
}

// spaceSSN: 100 areas (900-999) times 49 groups (01-49); the serial is kept.
func spaceSSN(v string, _ Options) *big.Int {
	return count(0, 0, 100*49, v[0] == '9' && v[4:6] <= "49")
}

// spaceCNID: every day from 1900-01-01 to the end of this year and 10^3
// sequences. By default 10^4 region digits after the province and 10 wrong
// check characters (never the value, whose check is right); with
// ChecksumValid one of the province's division codes and the one right
// check character (then the value is a token if its region is one of them).
func spaceCNID(v string, o Options) *big.Int {
	if o.ChecksumValid {
		return count(0, 3, int64(cnDays())*int64(len(cnRegions[v[:2]])/4), cnRegion(v))
	}
	n := count(0, 7, int64(cnDays()), false)
	return n.Mul(n, big.NewInt(10))
}

// spacePhone: after the country code, the first digit is 1-9 and the rest
// but the last 2 random.
//
// With ChecksumValid they are the numbers libphonenumber finds valid for the
// value's region and type (phoneSet), less the value.
func spacePhone(v string, o Options) *big.Int {
	if o.ChecksumValid {
		// validPhone has built the same set.
		s, self, err := phoneSetOf(v)
		n, err2 := s.size()
		if err != nil || err2 != nil {
			panic("format: phone set failed after validPhone: " + cmpOr(err, err2).Error())
		}
		return big.NewInt(n - b2i(self))
	}
	i := 1 + ccLen(v[1:])
	return count(0, len(v)-i-3, 9, v[i] != '0')
}

// spaceEmail: the domain is kept. A short local part (see tokenEmail) gets
// 8 random [a-z0-9] characters, 36^8 (never the value: such a local part
// has at least 4 randomised characters, so it is not short). Otherwise every
// digit has 10 choices and every other character but . + - _ 26.
func spaceEmail(v string, _ Options) *big.Int {
	local := v[:strings.LastIndexByte(v, '@')]
	letters, digits, self := 0, 0, true
	for i := range len(local) {
		switch c := local[i]; {
		case isDigit(c):
			digits++
		case !isKeptLocal(c):
			letters++
			self = self && 'a' <= c && c <= 'z'
		}
	}
	if len(local) < emailShortLocal || letters+digits < emailMinRandom {
		n := big.NewInt(int64(len(emailAlphabet)))
		return n.Exp(n, big.NewInt(emailShortLocal), nil)
	}
	return count(letters, digits, 1, self)
}

// spaceIBAN: every BBAN letter has 26 choices and every digit 10. With
// ChecksumValid the check digits follow from the BBAN (and the value itself
// is one of the tokens). By default they are 00, 01 or 99 minus the one
// congruent mod 97 to the valid check, so a BBAN whose valid check is 02, 97
// or 98 has 2 tokens and every other BBAN 3. Counting those BBANs takes the
// distribution of MOD 97 remainders over all BBANs of the value's layout.
func spaceIBAN(v string, o Options) *big.Int {
	bban := v[4:]
	letters, digits := 0, 0
	for i := range len(bban) {
		if isDigit(bban[i]) {
			digits++
		} else {
			letters++
		}
	}
	if o.ChecksumValid {
		// The national check digits follow from the rest of the BBAN too;
		// the value is one of the tokens if it carries them.
		if n := nationalChecks[v[:2]]; n != nil && n.fits(bban) {
			c := nationalSpace(v[:2], bban, letters, digits)
			if n.valid(bban) {
				c.Sub(c, big.NewInt(1))
			}
			return c
		}
		return count(letters, digits, 1, true)
	}
	// The valid check is 98 - (BBAN + country + "00" mod 97); it is 02, 97
	// or 98 when that remainder is 96, 1 or 0.
	var two u192 // BBANs with only 2 wrong check-digit pairs
	rem := ibanRemainders(bban)
	for r := range rem {
		m := r
		for i := range 2 {
			m = (m*100 + int(v[i]-'A'+10)) % 97
		}
		if m = m * 100 % 97; m == 96 || m == 1 || m == 0 {
			two.add(&rem[r])
		}
	}
	n := count(letters, digits, 3, false)
	return n.Sub(n, two.big())
}

// spaceBankAccount: all but the last 4 digits are random.
func spaceBankAccount(v string, _ Options) *big.Int { return count(0, len(v)-4, 1, true) }

// textSpace counts the letters and numerals that scramble randomises in v
// and reports whether scramble can return v itself: when every letter is an
// ASCII letter, every numeral an ASCII digit and, with drop, no mark or
// joiner follows one (it would be dropped from the token).
func textSpace(v string, drop bool) (letters, numerals int, self bool) {
	self = true
	attached := false
	for _, r := range v {
		switch {
		case unicode.IsLetter(r):
			letters++
			self = self && isASCIILetter(r)
			attached = true
		case unicode.IsNumber(r):
			numerals++
			self = self && '0' <= r && r <= '9'
			attached = true
		case drop && attached && isDropped(r):
			self = false
		default:
			attached = false
		}
	}
	return letters, numerals, self
}

// spaceText serves national-id and generic (scrambled without dropping
// marks) and address (dropping them).
func spaceText(drop bool) func(v string, _ Options) *big.Int {
	return func(v string, _ Options) *big.Int {
		letters, numerals, self := textSpace(v, drop)
		return count(letters, numerals, 1, self)
	}
}

// spaceName: every letter has 26 choices, and a name with fewer than 6
// letters is padded to 6, which makes its token longer than the value.
func spaceName(v string, _ Options) *big.Int {
	letters, _, self := textSpace(v, true)
	return count(max(letters, nameMinLetters), 0, 1, self && letters >= nameMinLetters)
}

// ibanRemainders returns, for every r, how many strings of bban's layout
// (a letter or a digit at each position) leave remainder r mod 97 when read
// the ISO 13616 way (letters as two digits 10-35).
//
// Appending a character maps remainder r to (r*base + x) mod 97 for x in a
// range of consecutive values (0-9 for a digit with base 10, 10-35 for a
// letter with base 100). So with by[(r*base) mod 97] = count[r], the new
// count[s] is the sum of by[s-x] over that range: a sliding window over by,
// which costs 2 additions per remainder instead of 10 or 26. Counts are at
// most 36^30 < 2^156 (a BBAN has at most 30 characters), so they fit in
// fixed 192-bit integers, which keeps this allocation-free.
func ibanRemainders(bban string) [97]u192 {
	var cur, by [97]u192
	cur[0][0] = 1
	for i := range len(bban) {
		step, lo, hi := 100%97, 10, 35
		if isDigit(bban[i]) {
			step, lo, hi = 10, 0, 9
		}
		// Indices advance by wrapping additions: % in these loops costs
		// more than the additions themselves.
		for r, m := 0, 0; r < 97; r++ {
			by[m] = cur[r] // r -> r*base is a bijection mod 97
			if m += step; m >= 97 {
				m -= 97
			}
		}
		// window = by[s-hi] + ... + by[s-lo] for s = 0, then slide.
		var window u192
		for x := lo; x <= hi; x++ {
			window.add(&by[(97-x)%97])
		}
		in, out := 1-lo+97, 97-hi // s+1-lo and s-hi, mod 97
		if in >= 97 {
			in -= 97
		}
		for s := range cur {
			cur[s] = window
			window.add(&by[in])
			window.sub(&by[out])
			if in++; in == 97 {
				in = 0
			}
			if out++; out == 97 {
				out = 0
			}
		}
	}
	return cur
}

// u192 is an unsigned 192-bit integer, least significant word first.
type u192 [3]uint64

func (a *u192) add(b *u192) {
	var c uint64
	a[0], c = bits.Add64(a[0], b[0], 0)
	a[1], c = bits.Add64(a[1], b[1], c)
	a[2], _ = bits.Add64(a[2], b[2], c)
}

func (a *u192) sub(b *u192) {
	var c uint64
	a[0], c = bits.Sub64(a[0], b[0], 0)
	a[1], c = bits.Sub64(a[1], b[1], c)
	a[2], _ = bits.Sub64(a[2], b[2], c)
}

func (a *u192) big() *big.Int {
	n := new(big.Int)
	for i := 2; i >= 0; i-- {
		n.Lsh(n, 64)
		n.Or(n, new(big.Int).SetUint64(a[i]))
	}
	return n
}
