package format

import (
	"math/big"
	"slices"
)

// National check digits inside the BBAN. MOD 97 (ISO 13616) covers the whole
// IBAN, but many countries also put check digits of their own into the BBAN,
// and validators such as python-stdnum and the banks' own software check
// those too. A checksum-valid token must pass them, so for the countries
// below tokenIBAN computes them after drawing the BBAN, the countries of
// refusedCountries get no checksum-valid token, and every other country
// (no national check digits in the registry or php-iban) gets MOD 97 only
// (FORMATS.md lists what a validator says of each group).
//
// Each algorithm is written from the country's published rule (php-iban's
// implementation where it has one) and pinned by the registry's example
// IBAN in TestNationalExamples.

// nationalCheck describes one country's BBAN check digits.
type nationalCheck struct {
	// layout is the BBAN of the SWIFT IBAN registry: 'n' a digit, 'a' a
	// letter, 'c' a letter or digit. A value whose BBAN does not fit it cannot get a
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

// ribLayout is the BBAN of France and of the territories that use French
// bank codes and the clé RIB: bank 5, branch 5, account 11, key 2.
const ribLayout = "nnnnnnnnnncccccccccccnn"

var nationalChecks = map[string]*nationalCheck{
	"AL": {layout: "nnnnnnnncccccccccccccccc", pos: []int{7}, fix: fixAL},
	"BA": {layout: "nnnnnnnnnnnnnnnn", pos: []int{14, 15}, fix: fix97},
	"BE": {layout: "nnnnnnnnnnnn", pos: []int{10, 11}, fix: fixBE, banks: expandRanges(beBanks)},
	"CF": {layout: "nnnnnnnnnnnnnnnnnnnnnnn", pos: []int{21, 22}, fix: fixRIB},
	"CG": {layout: "nnnnnnnnnnnnnnnnnnnnnnn", pos: []int{21, 22}, fix: fixRIB},
	"CZ": {layout: "nnnnnnnnnnnnnnnnnnnn", pos: []int{9, 19}, fix: fixCZ},
	"DJ": {layout: "nnnnnnnnnnnnnnnnnnnnnnn", pos: []int{21, 22}, fix: fixRIB},
	"EE": {layout: "nnnnnnnnnnnnnnnn", pos: []int{15}, fix: fixEE},
	"ES": {layout: "nnnnnnnnnnnnnnnnnnnn", pos: []int{8, 9}, fix: fixES},
	"FI": {layout: "nnnnnnnnnnnnnn", pos: []int{13}, fix: fixLuhn},
	"FR": {layout: ribLayout, pos: []int{21, 22}, fix: fixRIB},
	"HR": {layout: "nnnnnnnnnnnnnnnnn", pos: []int{6, 16}, fix: fixHR},
	"HU": {layout: "nnnnnnnnnnnnnnnnnnnnnnnn", pos: []int{7, 23}, fix: fixHU},
	"IT": {layout: "annnnnnnnnncccccccccccc", pos: []int{0}, fix: fixCIN},
	"MC": {layout: ribLayout, pos: []int{21, 22}, fix: fixRIB},
	"ME": {layout: "nnnnnnnnnnnnnnnnnn", pos: []int{16, 17}, fix: fix97},
	// The registry allows letters in the account part; how they would count
	// in the check digits is not published, so only digits are accepted.
	"MK": {layout: "nnnnnnnnnnnnnnn", pos: []int{13, 14}, fix: fix97},
	"MR": {layout: "nnnnnnnnnnnnnnnnnnnnnnn", pos: []int{21, 22}, fix: fixRIB},
	"NL": {layout: "aaaannnnnnnnnn", pos: []int{13}, fix: fixNL},
	"NO": {layout: "nnnnnnnnnnn", pos: []int{10}, fix: fixNO},
	"PL": {layout: "nnnnnnnnnnnnnnnnnnnnnnnn", pos: []int{7}, fix: fixPL},
	"PT": {layout: "nnnnnnnnnnnnnnnnnnnnn", pos: []int{19, 20}, fix: fix97},
	"RS": {layout: "nnnnnnnnnnnnnnnnnn", pos: []int{16, 17}, fix: fix97},
	"SI": {layout: "nnnnnnnnnnnnnnn", pos: []int{13, 14}, fix: fix97},
	"SK": {layout: "nnnnnnnnnnnnnnnnnnnn", pos: []int{9, 19}, fix: fixCZ},
	"SM": {layout: "annnnnnnnnncccccccccccc", pos: []int{0}, fix: fixCIN},
	"TL": {layout: "nnnnnnnnnnnnnnnnnnn", pos: []int{17, 18}, fix: fix97},
	"TN": {layout: "nnnnnnnnnnnnnnnnnnnn", pos: []int{18, 19}, fix: fixRIB},
	"XK": {layout: "nnnnnnnnnnnnnnnn", pos: []int{14, 15}, fix: fix97},
}

// French overseas departments and territories have IBAN country codes of
// their own (php-iban's registry lists them) but French bank codes and the
// clé RIB.
func init() {
	for _, cc := range []string{"BL", "GF", "GP", "MF", "MQ", "NC", "PF", "PM", "RE", "TF", "WF", "YT"} {
		nationalChecks[cc] = nationalChecks["FR"]
	}
}

// refusedCountries have check digits in the BBAN that we cannot compute
// and pin with a published example:
//   - SE, FO: the registry (and php-iban) place a check digit at the end of
//     the account, but its rule depends on the bank (Bankgirot's types 1
//     and 2, the Danish banks' own rules);
//   - LU: php-iban places check digits at BBAN positions 14-15, but no
//     country-wide rule is published and the registry example fits none;
//   - IS: the last 10 digits are the holder's kennitala, whose 9th digit is
//     a MOD 11 check over a date of birth or registration;
//   - GA, GQ, TD, CM (BEAC) and BJ, BF, CI, GW, ML, NE, SN, TG (BCEAO): a
//     RIB ending in a 2-digit key like France's (php-iban computes it for
//     GA, GQ, TD), but there is no published example IBAN to pin it;
//   - KM: php-iban computes a clé RIB, but there is no published example.
var refusedCountries = []string{
	"BF", "BJ", "CI", "CM", "FO", "GA", "GQ", "GW", "IS", "KM", "LU", "ML", "NE", "SE", "SN", "TD", "TG",
}

// refusedChecks are the countries whose BBAN carries check digits that no
// published country-wide algorithm lets us compute (see FORMATS.md): a
// checksum-valid token with random digits there would fail the national
// validator, so none is made. The messages are fixed per country: only the
// country code, which the token keeps anyway, is named.
var refusedChecks = func() map[string]error {
	m := map[string]error{}
	for _, cc := range refusedCountries {
		m[cc] = invalid(IBAN, "checksum-valid iban tokens are not available for "+cc+": its national check digits are not implemented")
	}
	return m
}()

// fits reports whether bban has the country's registry layout.
func (n *nationalCheck) fits(bban string) bool {
	if len(bban) != len(n.layout) {
		return false
	}
	for i := range len(bban) {
		if n.layout[i] == 'n' && !isDigit(bban[i]) || n.layout[i] == 'a' && !isUpper(bban[i]) {
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

// fixRIB: the clé RIB (France and its territories, Monaco, and in the same
// form the RIB of Tunisia, Mauritania, Djibouti and of the Central African
// Republic and Congo, BEAC) is 97 - (89 bank + 15 branch + 3
// account) mod 97, which makes the whole BBAN, letters converted, read as
// one number a multiple of 97.
func fixRIB(b []byte) bool {
	n := len(b) - 2
	m := 0
	for _, c := range b[:n] {
		m = (m*10 + ribDigit(c)) % 97
	}
	putDigits(b[n:], 97-m*100%97)
	return true
}

// fix97: Portugal's NIB and the account numbers of Bosnia and Herzegovina,
// Kosovo, North Macedonia, Montenegro, Serbia, Slovenia and Timor-Leste end
// in ISO 7064 MOD 97-10 check digits: the BBAN read as one number is 1 mod
// 97.
func fix97(b []byte) bool {
	n := len(b) - 2
	putDigits(b[n:], 98-mod97(b[:n])*100%97)
	return true
}

// weighted returns the sum of digit * weight over d.
func weighted(d []byte, w []int) int {
	s := 0
	for i, c := range d {
		s += int(c-'0') * w[i]
	}
	return s
}

// check10 is the digit that brings a weighted sum to a multiple of 10.
func check10(s int) byte { return '0' + byte((10-s%10)%10) }

var w9731 = []int{9, 7, 3, 1, 9, 7, 3, 1, 9, 7, 3, 1, 9, 7, 3}

// fixAL: the 8-digit Albanian bank and branch code ends in a check digit
// with weights 9 7 3 1 9 7 3 (Bank of Albania).
func fixAL(b []byte) bool {
	b[7] = check10(weighted(b[:7], w9731))
	return true
}

// fixHU: the Hungarian "pénzforgalmi jelzőszám" has a check digit after the
// 7-digit bank and branch code and one after the 15-digit account, each
// with weights 9 7 3 1 repeated (MNB decree 18/2009). A 16-digit account
// padded with 8 zeros keeps its own check digit at position 15, and the
// last one is then 0, so both forms pass.
func fixHU(b []byte) bool {
	b[7] = check10(weighted(b[:7], w9731))
	b[23] = check10(weighted(b[8:23], w9731))
	return true
}

// fixEE: an Estonian account number ends in a check digit with weights 7 3
// 1 from the right (the "7-3-1 method" of Eesti Pank).
func fixEE(b []byte) bool {
	s, w := 0, [3]int{7, 3, 1}
	for i := 14; i >= 2; i-- {
		s += int(b[i]-'0') * w[(14-i)%3]
	}
	b[15] = check10(s)
	return true
}

// mod1110 is the ISO 7064 MOD 11,10 check digit of d.
func mod1110(d []byte) byte {
	p := 10
	for _, c := range d {
		s := (p + int(c-'0')) % 10
		if s == 0 {
			s = 10
		}
		p = s * 2 % 11
	}
	return '0' + byte((11-p)%10)
}

// fixHR: the Croatian 7-digit bank code (VBDI) and 10-digit account each
// end in an ISO 7064 MOD 11,10 check digit (HNB, "Odluka o jedinstvenoj
// strukturi brojeva računa").
func fixHR(b []byte) bool {
	b[6] = mod1110(b[:6])
	b[16] = mod1110(b[7:16])
	return true
}

var (
	czPrefixWeights  = []int{10, 5, 8, 4, 2, 1}
	czAccountWeights = []int{6, 3, 7, 9, 10, 5, 8, 4, 2, 1}
)

// fix11 sets the last digit of d, whose weight is 1, so that the weighted
// sum of d is a multiple of 11. It returns false when that takes a 10:
// such numbers are never issued, and the token draws again.
func fix11(d []byte, w []int) bool {
	last := len(d) - 1
	c := (11 - weighted(d[:last], w)%11) % 11
	if c == 10 {
		return false
	}
	d[last] = '0' + byte(c)
	return true
}

// fixCZ: the 6-digit prefix and the 10-digit account of a Czech or Slovak
// account number each have a weighted sum that is a multiple of 11 (ČNB
// decree 169/2011, NBS decree 8/2009).
func fixCZ(b []byte) bool {
	return fix11(b[4:10], czPrefixWeights) && fix11(b[10:20], czAccountWeights)
}

var nlWeights = []int{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}

// fixNL: the "elfproef" of Dutch account numbers: the 10 digits weighted
// 10 down to 1 sum to a multiple of 11. New numbers no longer need it (ING's
// former Postbank accounts never had it), but php-iban checks it for every
// bank but INGB, and a token that has it passes both kinds of validator.
func fixNL(b []byte) bool { return fix11(b[4:14], nlWeights) }

// cinOdd is the value of a character (digit or letter, 0-9 and A-Z both
// counting 0-25 from their start) at an odd position of the Italian CIN
// calculation.
var cinOdd = [26]int{1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23}

// fixCIN: the Italian (and San Marino) BBAN starts with the CIN, a check
// letter over bank code, branch code and account: the characters at odd
// positions (1st, 3rd, ...) count by cinOdd, the others by their value,
// and the sum mod 26 is the letter (the CIN rule of the ECBS register of
// European account numbers, TR201, as php-iban implements it).
func fixCIN(b []byte) bool {
	s := 0
	for i, c := range b[1:] {
		v := int(c - 'A')
		if isDigit(c) {
			v = int(c - '0')
		}
		if i%2 == 0 {
			v = cinOdd[v]
		}
		s += v
	}
	b[0] = 'A' + byte(s%26)
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
// bank code is one of beBanks, and where a MOD 11 check digit can call for
// a 10 (Norway, Czechia, Slovakia, the Netherlands): those prefixes are
// left out, and in Norway bank code 0000 too.
func nationalSpace(cc, bban string, letters, digits int) *big.Int {
	n := nationalChecks[cc]
	for _, p := range n.pos {
		if isDigit(bban[p]) {
			digits--
		} else {
			letters-- // the Italian CIN
		}
	}
	switch cc {
	case "NO":
		all := int64(1e10) - rem11(noWeights[:])[10]
		giro := int64(1e6) - rem11(noWeights[4:])[10]
		return big.NewInt(all - giro)
	case "CZ", "SK":
		// 4 free bank digits, and the prefix and account whose other digits
		// leave 1 mod 11 (the last digit would be 10) are never issued.
		c := count(0, 4, (1e5-rem11(czPrefixWeights[:5])[1])*(1e9-rem11(czAccountWeights[:9])[1]), false)
		return c
	case "NL":
		return count(letters, 0, 1e9-rem11(nlWeights[:9])[1], false)
	}
	if n.banks != nil { // the bank code is one of the list
		return count(letters, digits-3, int64(len(n.banks)), false)
	}
	return count(letters, digits, 1, false)
}

// rem11 counts the digit strings of len(weights) digits by the remainder
// mod 11 of their weighted sum.
func rem11(weights []int) [11]int64 {
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
	return c
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
