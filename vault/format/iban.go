package format

// ibanLengths holds the IBAN length of common countries (SWIFT IBAN
// registry). Other countries only get the generic 15-34 check.
var ibanLengths = map[string]int{
	"AT": 20, "BE": 16, "CH": 21, "DE": 22, "DK": 18, "ES": 24, "FI": 18, "FR": 27, "GB": 22,
	"IE": 22, "IT": 27, "LU": 20, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "SE": 24,
}

func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }

func normIBAN(s string) (string, error) {
	b := make([]byte, 0, len(s))
	for i := range len(s) {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z':
			b = append(b, c-'a'+'A')
		case isUpper(c) || isDigit(c):
			b = append(b, c)
		case c != ' ':
			return "", invalid(IBAN, "may contain only letters, digits and spaces")
		}
	}
	switch {
	case len(b) < 15 || len(b) > 34:
		return "", invalid(IBAN, "must be 15-34 letters and digits")
	case !isUpper(b[0]) || !isUpper(b[1]) || !isDigit(b[2]) || !isDigit(b[3]):
		return "", invalid(IBAN, "must start with a 2-letter country code and 2 check digits")
	}
	if n, ok := ibanLengths[string(b[:2])]; ok && n != len(b) {
		return "", invalid(IBAN, "wrong length for its country")
	}
	return string(b), nil
}

func checkIBAN(v string) error {
	if ibanMod97(v) != 1 {
		return invalid(IBAN, "check digits do not match (ISO 13616 MOD 97)")
	}
	return nil
}

// ibanMod97 computes the ISO 13616 remainder: the first 4 characters move to
// the end, letters count as 10-35, and the result is taken mod 97 digit by
// digit so it never overflows.
func ibanMod97(v string) int {
	m := 0
	for _, part := range [2]string{v[4:], v[:4]} {
		for i := range len(part) {
			if c := part[i]; isDigit(c) {
				m = (m*10 + int(c-'0')) % 97
			} else {
				m = (m*100 + int(c-'A'+10)) % 97
			}
		}
	}
	return m
}

// validIBAN is the precondition of a checksum-valid token: a country with
// national check digits needs its registry BBAN layout, or the token could
// not carry them, and a country whose check digits we cannot compute gets
// no token at all (random digits there would fail its validators).
func validIBAN(v string) error {
	if err := refusedChecks[v[:2]]; err != nil {
		return err
	}
	if n := nationalChecks[v[:2]]; n != nil && !n.fits(v[4:]) {
		return invalid(IBAN, "checksum-valid tokens need the BBAN layout of the IBAN registry for its country")
	}
	return nil
}

func tokenIBAN(v string, o Options, g *rng) string {
	cc, bban := v[:2], scramble(v[4:], g, false)
	if n := nationalChecks[cc]; n != nil && o.ChecksumValid && n.fits(v[4:]) {
		b := []byte(bban)
		n.draw(b, g)
		// Norway has BBANs without a check digit: draw again, which keeps
		// the token uniform over the BBANs that have one.
		for tries := 0; !n.fix(b); tries++ {
			if tries == maxRejects || g.err != nil {
				g.err = cmpOr(g.err, errNotRandom)
				return ""
			}
			b = []byte(scramble(v[4:], g, false))
			n.draw(b, g)
		}
		bban = string(b)
	}
	check := 98 - ibanMod97(cc+"00"+bban) // always 02-98
	if !o.ChecksumValid {
		// 00, 01 and 99 are never produced by ISO 13616, but each is congruent
		// mod 97 to one valid value (97, 98, 02) and would still pass a bare
		// MOD 97 test for that BBAN, so skip that one.
		bad := make([]int, 0, 3)
		for _, c := range [...]int{0, 1, 99} {
			if c%97 != check%97 {
				bad = append(bad, c)
			}
		}
		check = bad[g.intn(len(bad))]
	}
	b := make([]byte, 0, len(v))
	b = append(b, cc...)
	b = append(b, '0'+byte(check/10), '0'+byte(check%10))
	return string(append(b, bban...))
}

func maskIBAN(v string) string { return maskEnds(v, 2, 4) }

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
