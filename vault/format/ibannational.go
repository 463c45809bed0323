package format

import (
	"math/big"
	"slices"
)

// National check digits inside the BBAN. MOD 97 (ISO 13616) covers the whole
// IBAN, but many countries also put check digits of their own into the BBAN,
// and validators such as python-stdnum and the banks' own software check
// those too. A checksum-valid token must pass them, so for the countries
// below tokenIBAN computes them after drawing the BBAN; every other country
// gets MOD 97 only (FORMATS.md lists what a validator says of those).
//
// Each algorithm is written from the country's published rule and pinned by
// the registry's example IBAN in TestNationalExamples.

// nationalCheck describes one country's BBAN check digits.
type nationalCheck struct {
	// layout is the BBAN of the SWIFT IBAN registry: 'n' a digit, 'c' a
	// letter or digit. A value whose BBAN does not fit it cannot get a
	// checksum-valid token (its check digits have no defined meaning).
	layout string
	// pos are the BBAN positions of the check digits.
	pos []int
	// fix overwrites the check digits of b from the other characters. It
	// returns false when no check digit makes b valid (Norway), and the
	// token draws again.
	fix func(b []byte) bool
	// banks, if set, are the only bank codes a validator accepts (the
	// first 3 BBAN digits): the token draws one of them.
	banks []string
}

var nationalChecks = map[string]*nationalCheck{
	"BE": {layout: "nnnnnnnnnnnn", pos: []int{10, 11}, fix: fixBE, banks: expandRanges(beBanks)},
	"ES": {layout: "nnnnnnnnnnnnnnnnnnnn", pos: []int{8, 9}, fix: fixES},
	"FI": {layout: "nnnnnnnnnnnnnn", pos: []int{13}, fix: fixLuhn},
	"FR": {layout: "nnnnnnnnnncccccccccccnn", pos: []int{21, 22}, fix: fixRIB},
	"MC": {layout: "nnnnnnnnnncccccccccccnn", pos: []int{21, 22}, fix: fixRIB},
	"ME": {layout: "nnnnnnnnnnnnnnnnnn", pos: []int{16, 17}, fix: fix97},
	"NO": {layout: "nnnnnnnnnnn", pos: []int{10}, fix: fixNO},
	"PL": {layout: "nnnnnnnnnnnnnnnnnnnnnnnn", pos: []int{7}, fix: fixPL},
	"PT": {layout: "nnnnnnnnnnnnnnnnnnnnn", pos: []int{19, 20}, fix: fix97},
	"RS": {layout: "nnnnnnnnnnnnnnnnnn", pos: []int{16, 17}, fix: fix97},
}

// fits reports whether bban has the country's registry layout.
func (n *nationalCheck) fits(bban string) bool {
	if len(bban) != len(n.layout) {
		return false
	}
	for i := range len(bban) {
		if n.layout[i] == 'n' && !isDigit(bban[i]) {
			return false
		}
	}
	return true
}

// expandRanges lists the 3-digit codes of ranges "from to".
func expandRanges(r string) []string {
	var codes []string
	for i := 0; i+6 <= len(r); i += 6 {
		from, to := atoi3(r[i:i+3]), atoi3(r[i+3:i+6])
		for c := from; c <= to; c++ {
			codes = append(codes, string([]byte{'0' + byte(c/100), '0' + byte(c/10%10), '0' + byte(c%10)}))
		}
	}
	return codes
}

func atoi3(s string) int { return int(s[0]-'0')*100 + int(s[1]-'0')*10 + int(s[2]-'0') }

// draw replaces the bank code of b by a random one in use, if the country
// has a list.
func (n *nationalCheck) draw(b []byte, g *rng) {
	if n.banks != nil {
		copy(b, n.banks[g.intn(len(n.banks))])
	}
}

// valid reports whether bban carries the right national check digits (and
// a bank code in use, where the country has a list).
func (n *nationalCheck) valid(bban string) bool {
	if n.banks != nil && !slices.Contains(n.banks, bban[:3]) {
		return false
	}
	b := []byte(bban)
	return n.fix(b) && string(b) == bban
}

func putDigits(b []byte, v int) { b[0], b[1] = '0'+byte(v/10), '0'+byte(v%10) }

// mod97 returns the digits of b read as one number, mod 97.
func mod97(b []byte) int {
	m := 0
	for _, c := range b {
		m = (m*10 + int(c-'0')) % 97
	}
	return m
}

// fixBE: the last 2 digits are the first 10 mod 97, and 97 for 0
// (Belgian account number, NBB).
func fixBE(b []byte) bool {
	m := mod97(b[:10])
	if m == 0 {
		m = 97
	}
	putDigits(b[10:], m)
	return true
}

// fixES: the "dígitos de control" of the CCC (Código Cuenta Cliente). The
// first covers 00 + bank + branch, the second the 10-digit account; each is
// 11 - (sum of digit * 2^i mod 11) mod 11, with 10 written as 1 and 11 as 0.
func fixES(b []byte) bool {
	dc := func(d []byte) byte {
		s, w := 0, 1
		for _, c := range d {
			s += int(c-'0') * w
			w = w * 2 % 11
		}
		if s %= 11; s < 2 {
			return '0' + byte(s)
		}
		return '0' + byte(11-s)
	}
	b[8] = dc(append([]byte{'0', '0'}, b[:8]...))
	b[9] = dc(b[10:20])
	return true
}

// fixLuhn: Finland's account numbers end in a Luhn check digit.
func fixLuhn(b []byte) bool {
	last := len(b) - 1
	b[last] = '0'
	b[last] = '0' + byte((10-luhnSum(b)%10)%10)
	return true
}

// ribDigit maps a French account character to its RIB digit: letters count
// as A,J=1 B,K,S=2 ... I,R,Z=9 (the "clé RIB" conversion).
func ribDigit(c byte) int {
	if isDigit(c) {
		return int(c - '0')
	}
	return int("12345678912345678923456789"[c-'A'] - '0')
}

// fixRIB: the clé RIB (France, Monaco) is 97 - (89 bank + 15 branch + 3
// account) mod 97, which makes bank, branch, account and key read as one
// number a multiple of 97.
func fixRIB(b []byte) bool {
	m := 0
	for _, c := range b[:21] {
		m = (m*10 + ribDigit(c)) % 97
	}
	putDigits(b[21:], 97-m*100%97)
	return true
}

// fix97: Portugal's NIB, Montenegro and Serbia end in ISO 7064 MOD 97-10
// check digits: the BBAN read as one number is 1 mod 97.
func fix97(b []byte) bool {
	n := len(b) - 2
	putDigits(b[n:], 98-mod97(b[:n])*100%97)
	return true
}

var noWeights = [10]int{6, 7, 8, 9, 4, 5, 6, 7, 8, 9}

// fixNO: a Norwegian kontonummer ends in a MOD 11 check digit; a remainder
// of 10 has none, so those numbers are never issued. Bank code 0000
// (postgiro) has a Luhn rule instead: not drawn.
func fixNO(b []byte) bool {
	if string(b[:4]) == "0000" {
		return false
	}
	s := 0
	for i, w := range noWeights {
		s += int(b[i]-'0') * w
	}
	if s %= 11; s == 10 {
		return false
	}
	b[10] = '0' + byte(s)
	return true
}

// fixPL: the 8-digit Polish bank and branch number ends in a check digit
// with weights 3 9 7 1 3 9 7 (numer rozliczeniowy, NBP).
func fixPL(b []byte) bool {
	s := 0
	for i, w := range [7]int{3, 9, 7, 1, 3, 9, 7} {
		s += int(b[i]-'0') * w
	}
	b[7] = '0' + byte((10-s%10)%10)
	return true
}

// nationalSpace counts the BBANs of bban's layout that fixing produces:
// every character but the check digits is free, except in Belgium, whose
// bank code is one of beBanks, and in Norway, where the prefixes without a
// check digit and bank code 0000 are left out.
func nationalSpace(cc, bban string, letters, digits int) *big.Int {
	n := nationalChecks[cc]
	switch {
	case n.banks != nil: // the bank code is one of the list
		return count(letters, digits-len(n.pos)-3, int64(len(n.banks)), false)
	case cc != "NO":
		return count(letters, digits-len(n.pos), 1, false)
	}
	// Count the 10-digit prefixes whose weighted sum is 10 mod 11, overall
	// and among those starting 0000, by their remainder.
	rem := func(weights []int) int64 {
		var c [11]int64
		c[0] = 1
		for _, w := range weights {
			var next [11]int64
			for r, k := range c {
				for d := range 10 {
					next[(r+d*w)%11] += k
				}
			}
			c = next
		}
		return c[10]
	}
	all := int64(1e10) - rem(noWeights[:])
	giro := int64(1e6) - rem(noWeights[4:])
	return big.NewInt(all - giro)
}

// beBanks are the Belgian bank codes (the first 3 BBAN digits) in use, as
// ranges "from to", 6 digits each: the National Bank of Belgium's list of
// 2022-10-01 (current_codes.xls) as python-stdnum 1.18 ships it in
// be/banks.dat. python-stdnum rejects a Belgian IBAN whose bank code is not
// in it, so checksum-valid tokens draw their bank code from these 806 codes.
const beBanks = "" +
	"000111113114119127129129131134137137140150171173175176178179183183185185189214220501504504507510" +
	"512515521525530530538538541541546546548560562579581581583583585588590601605605607607610613624625" +
	"630631634636638638640640642649651654657658663664666680682688693694696696700709719719722722725817" +
	"823826828828830840844845850853859860862863865866868868871871873873876881883884887888890899906906" +
	"908908910911913917920920922924926926928931934934936936939943945945948961963964966969971971973984" +
	"989999"
