package format

import (
	"slices"
	"strconv"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// Kinds made of digits: pan, ssn, bank-account and phone.

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func allDigits(s string) bool {
	for i := range len(s) {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// digitsOnly returns s without the separator bytes in seps, or false if s has
// anything but digits and separators.
func digitsOnly(s, seps string) (string, bool) {
	// Most values come without separators: then s is already the answer,
	// and copying it cost an allocation per field.
	if allDigits(s) {
		return s, true
	}
	b := make([]byte, 0, len(s))
	for i := range len(s) {
		switch c := s[i]; {
		case isDigit(c):
			b = append(b, c)
		case strings.IndexByte(seps, c) < 0:
			return "", false
		}
	}
	return string(b), true
}

// maskEnds keeps the first and last bytes of an ASCII value and stars the
// rest.
func maskEnds(v string, first, last int) string {
	return v[:first] + strings.Repeat("*", len(v)-first-last) + v[len(v)-last:]
}

func normPAN(s string) (string, error) {
	d, ok := digitsOnly(s, " -")
	if !ok {
		return "", invalid(PAN, "may contain only digits, spaces and dashes")
	}
	if len(d) < 13 || len(d) > 19 {
		return "", invalid(PAN, "must be 13-19 digits")
	}
	return d, nil
}

// luhnSum returns the Luhn sum of a digit string; it is valid when the sum
// is a multiple of 10.
func luhnSum(b []byte) int {
	sum := 0
	for i := range b {
		d := int(b[len(b)-1-i] - '0')
		if i%2 == 1 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum
}

func tokenPAN(v string, o Options, g *rng) string {
	b := []byte(v)
	g.digits(b[6 : len(b)-4])
	// The fix-up digit is 5th from the right, an undoubled Luhn position, so
	// changing it by x changes the sum by x.
	fix := len(b) - 5
	if o.ChecksumValid {
		b[fix] = '0'
		b[fix] += byte((10 - luhnSum(b)%10) % 10)
	} else if luhnSum(b)%10 == 0 {
		b[fix] = '0' + (b[fix]-'0'+1)%10
	}
	return string(b)
}

func maskPAN(v string) string { return maskEnds(v, 6, 4) }

func normSSN(s string) (string, error) {
	if len(s) == 11 && isSSNSep(s[3]) && isSSNSep(s[6]) {
		s = s[:3] + s[4:6] + s[7:]
	}
	switch {
	case len(s) != 9 || !allDigits(s):
		return "", invalid(SSN, "must be 9 digits written AAA-GG-SSSS or AAAGGSSSS")
	case s[:3] == "000" || s[:3] == "666":
		return "", invalid(SSN, "area numbers 000 and 666 are never issued")
	case s[3:5] == "00":
		return "", invalid(SSN, "group number 00 is never issued")
	case s[5:] == "0000":
		return "", invalid(SSN, "serial number 0000 is never issued")
	}
	return s[:3] + "-" + s[3:5] + "-" + s[5:], nil
}

func isSSNSep(c byte) bool { return c == '-' || c == ' ' }

func tokenSSN(v string, _ Options, g *rng) string {
	b := make([]byte, 0, len(v))
	b = strconv.AppendInt(b, int64(900+g.intn(100)), 10) // areas SSA never issues
	b = append(b, '-')
	// Groups 01-49: 50 and up in 9xx areas are ITIN/ATIN ranges.
	if group := 1 + g.intn(49); group < 10 {
		b = append(b, '0', '0'+byte(group))
	} else {
		b = strconv.AppendInt(b, int64(group), 10)
	}
	return string(append(b, v[6:]...))
}

func maskSSN(v string) string { return "***-**-" + v[7:] }

func normBankAccount(s string) (string, error) {
	d, ok := digitsOnly(s, " -")
	if !ok {
		return "", invalid(BankAccount, "may contain only digits, spaces and dashes")
	}
	if len(d) < 6 || len(d) > 34 {
		return "", invalid(BankAccount, "must be 6-34 digits")
	}
	return d, nil
}

func tokenBankAccount(v string, _ Options, g *rng) string {
	b := []byte(v)
	g.digits(b[:len(b)-4])
	return string(b)
}

func maskBankAccount(v string) string { return maskEnds(v, 0, 4) }

// twoDigitCC lists the ITU-T E.164 country codes with 2 digits. Country codes
// are prefix-free: 1 (NANP) and 7 (Russia, Kazakhstan) are the only 1-digit
// codes, these are the 2-digit ones, and every other code has 3 digits. So
// the length of a number's country code follows from its first digits alone.
var twoDigitCC = [...]uint8{
	20, 27,
	30, 31, 32, 33, 34, 36, 39,
	40, 41, 43, 44, 45, 46, 47, 48, 49,
	51, 52, 53, 54, 55, 56, 57, 58,
	60, 61, 62, 63, 64, 65, 66,
	81, 82, 84, 86,
	90, 91, 92, 93, 94, 95, 98,
}

// ccLen returns the length of the country code that starts digits.
func ccLen(digits string) int {
	if digits[0] == '1' || digits[0] == '7' {
		return 1
	}
	if slices.Contains(twoDigitCC[:], (digits[0]-'0')*10+digits[1]-'0') {
		return 2
	}
	return 3
}

func normPhone(s string) (string, error) {
	switch {
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	case strings.HasPrefix(s, "00"):
		s = s[2:]
	default:
		return "", invalid(Phone, "must start with + or 00 and the country code")
	}
	d, ok := digitsOnly(strings.ReplaceAll(s, "(0)", ""), " -.()")
	switch {
	case !ok:
		return "", invalid(Phone, "may contain only digits, spaces, dashes, dots and parentheses")
	case len(d) < 8 || len(d) > 15:
		return "", invalid(Phone, "must have 8-15 digits including the country code")
	case d[0] == '0':
		return "", invalid(Phone, "country code cannot start with 0")
	}
	return "+" + d, nil
}

// A checksum-valid phone token is a number that libphonenumber (here its Go
// port, github.com/nyaruka/phonenumbers) finds valid, for the same region
// and of the same number type as the value: what a caller's own validation
// with libphonenumber checks. phone.go draws it.

// maxPhoneDraws bounds the draws of phoneSet that libphonenumber itself
// must confirm (the automata follow its rules, so the first draw passes
// unless the two disagree) or that hit the value itself.
const maxPhoneDraws = 64

// errNoValidPhone says that no checksum-valid token can be made.
var errNoValidPhone = invalid(Phone, "checksum-valid tokens need a number that libphonenumber finds valid as written, with another valid number of its region, type, length and last 2 digits")

// phoneInfo returns what a checksum-valid token keeps of a number: its
// region and number type, or ok false if libphonenumber does not find the
// number valid exactly as written (its E.164 form must be the value, so
// that no trunk prefix is hidden in it).
func phoneInfo(v string) (region string, typ phonenumbers.PhoneNumberType, ok bool) {
	n, err := phonenumbers.Parse(v, "")
	if err != nil || !phonenumbers.IsValidNumber(n) || phonenumbers.Format(n, phonenumbers.E164) != v {
		return "", phonenumbers.UNKNOWN, false
	}
	return phonenumbers.GetRegionCodeForNumber(n), phonenumbers.GetNumberType(n), true
}

// phoneSetOf returns the set checksum-valid tokens of v are drawn from, and
// whether v is in it.
func phoneSetOf(v string) (*phoneSet, bool, error) {
	c := ccLen(v[1:])
	cc, _ := strconv.Atoi(v[1 : 1+c])
	s, err := newPhoneSet(cc, v[1+c:])
	if err != nil {
		return nil, false, err
	}
	self, err := s.contains(v[1+c:])
	return s, self, err
}

func validPhone(v string) error {
	if _, _, ok := phoneInfo(v); !ok {
		return errNoValidPhone
	}
	s, self, err := phoneSetOf(v)
	if err != nil {
		return errNoValidPhone
	}
	if n, err := s.size(); err != nil || n-b2i(self) < 1 {
		return errNoValidPhone
	}
	return nil
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func tokenPhone(v string, o Options, g *rng) string {
	if o.ChecksumValid {
		return tokenValidPhone(v, g)
	}
	b := []byte(v)
	i := 1 + ccLen(v[1:])
	b[i] = '1' + byte(g.intn(9)) // a leading 0 reads as a trunk prefix
	g.digits(b[i+1 : len(b)-2])
	return string(b)
}

func tokenValidPhone(v string, g *rng) string {
	region, typ, _ := phoneInfo(v)
	s, _, err := phoneSetOf(v)
	if err != nil {
		g.err = errNoValidPhone
		return ""
	}
	cc := v[:1+ccLen(v[1:])]
	for range maxPhoneDraws {
		nsn, err := s.draw(g)
		if g.err != nil {
			return ""
		}
		if err != nil {
			break
		}
		if t := cc + nsn; t != v {
			if r, ty, ok := phoneInfo(t); ok && r == region && ty == typ {
				return t
			}
		}
	}
	g.err = errNoValidPhone
	return ""
}

func maskPhone(v string) string { return maskEnds(v, 1+ccLen(v[1:]), 2) }
