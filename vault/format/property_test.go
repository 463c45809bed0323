package format_test

import (
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"

	"github.com/tokenvault/tokenvault/vault/format"
)

// Generators of random canonical values, one per kind.

func digits(r *mrand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + r.IntN(10))
	}
	return string(b)
}

func pick[T any](r *mrand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// pickRune returns a random rune of s.
func pickRune(r *mrand.Rand, s string) string { return string(pick(r, []rune(s))) }

var cnWeights = []int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}

const cnChecks = "10X98765432"

func cnCheck(s string) byte {
	sum := 0
	for i, w := range cnWeights {
		sum += int(s[i]-'0') * w
	}
	return cnChecks[sum%11]
}

func ibanMod97(s string) int {
	m := 0
	for _, c := range s[4:] + s[:4] {
		v, _ := strconv.ParseInt(string(c), 36, 0)
		if v < 10 {
			m = (m*10 + int(v)) % 97
		} else {
			m = (m*100 + int(v)) % 97
		}
	}
	return m
}

func luhnValid(s string) bool {
	sum := 0
	for i := range len(s) {
		d := int(s[len(s)-1-i] - '0')
		if i%2 == 1 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

const (
	lowerABC = "abcdefghijklmnopqrstuvwxyz"
	upperABC = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	alnumUp  = upperABC + "0123456789"
)

// phoneCCs are prefix-free, like all country codes.
var phoneCCs = []string{"1", "7", "20", "44", "49", "86", "98", "353", "380", "880", "998"}

var generators = map[format.Kind]func(r *mrand.Rand) string{
	format.CardSecurityCode: func(r *mrand.Rand) string { return digits(r, 3+r.IntN(2)) },
	format.CardExpiry: func(r *mrand.Rand) string {
		return fmt.Sprintf("%02d/%02d", 1+r.IntN(12), r.IntN(100))
	},
	format.PAN: func(r *mrand.Rand) string {
		return strconv.Itoa(1+r.IntN(9)) + digits(r, 12+r.IntN(7))
	},
	format.SSN: func(r *mrand.Rand) string {
		area := 1 + r.IntN(998)
		if area == 666 {
			area = 665
		}
		return fmt.Sprintf("%03d-%02d-%04d", area, 1+r.IntN(99), 1+r.IntN(9999))
	},
	format.CNResidentID: func(r *mrand.Rand) string {
		start := time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
		days := int(time.Since(start).Hours() / 24)
		date := start.AddDate(0, 0, r.IntN(days)).Format("20060102")
		region := strconv.Itoa(11+r.IntN(55)) + digits(r, 4) // often no such province
		if r.IntN(4) != 0 {
			region = pick(r, gbt2260(nil)) // a real county
		}
		body := region + date + digits(r, 3)
		return body + string(cnCheck(body))
	},
	format.NationalID: func(r *mrand.Rand) string {
		var b strings.Builder
		n := 4 + r.IntN(20)
		for i := range n {
			if i > 0 && i < n-1 && r.IntN(5) == 0 {
				b.WriteString(pickRune(r, " -/."))
			}
			b.WriteString(pickRune(r, alnumUp))
		}
		return b.String()
	},
	format.Phone: func(r *mrand.Rand) string {
		if r.IntN(2) == 0 {
			return pick(r, phoneExamples())
		}
		cc := pick(r, phoneCCs)
		n := 8 + r.IntN(8) - len(cc)
		return "+" + cc + pickRune(r, "0123456789") + digits(r, n-1)
	},
	format.Email: func(r *mrand.Rand) string {
		var local strings.Builder
		n := 1 + r.IntN(24)
		for i := range n {
			if i > 0 && i < n-1 && r.IntN(6) == 0 {
				local.WriteString(pickRune(r, ".+-_!#$%&'*/=?^`{|}~"))
				continue
			}
			local.WriteString(pickRune(r, lowerABC+upperABC+"0123456789"))
		}
		labels := make([]string, 2+r.IntN(3))
		for i := range labels {
			labels[i] = pickRune(r, lowerABC) + digits(r, r.IntN(3)) + pick(r, []string{"", "-x", "mail"})
		}
		return strings.ReplaceAll(local.String(), "..", ".a") + "@" + strings.Join(labels, ".")
	},
	format.IBAN: func(r *mrand.Rand) string {
		c := pick(r, []struct {
			cc, shape string // shape: 'A' letter, '9' digit, 'X' either
		}{
			{"DE", "999999999999999999"},
			{"GB", "AAAA99999999999999"},
			{"FR", "99999999999XXXXXXXXXX99"},
			{"NO", "99999999999"},
			{"NL", "AAAA9999999999"},
			{"MT", "AAAA99999XXXXXXXXXXXXXXXXXX"},
			// Countries with national check digits, one not in the
			// registry's layout (its checksum-valid token is refused).
			{"BE", "999999999999"},
			{"ES", "99999999999999999999"},
			{"ES", "AAAA9999999999999999"},
			{"FI", "99999999999999"},
			{"MC", "9999999999XXXXXXXXXXX99"},
			{"ME", "999999999999999999"},
			{"PL", "999999999999999999999999"},
			{"PT", "999999999999999999999"},
			{"RS", "999999999999999999"},
		})
		b := []byte(c.shape)
		for i, s := range b {
			switch s {
			case 'A':
				b[i] = upperABC[r.IntN(26)]
			case '9':
				b[i] = byte('0' + r.IntN(10))
			default:
				b[i] = alnumUp[r.IntN(36)]
			}
		}
		check := 98 - ibanMod97(c.cc+"00"+string(b))
		return fmt.Sprintf("%s%02d%s", c.cc, check, b)
	},
	format.BankAccount: func(r *mrand.Rand) string { return digits(r, 6+r.IntN(29)) },
	format.Address: func(r *mrand.Rand) string {
		lines := make([]string, 1+r.IntN(4))
		for i := range lines {
			words := []string{digits(r, 2+r.IntN(3))} // every word adds >= 2 letters or digits
			for range 1 + r.IntN(4) {
				words = append(words, pick(r, []string{"Main", "St.", "Straße", "Rue", "Élysée", "北京市", "Apt", "#4B", "SW1A", "2AA,", "Ünter", "12½", "Ⅻb", "No.⑦"}))
			}
			lines[i] = strings.Join(words, pick(r, []string{" ", " ", "\t", ", "}))
		}
		return strings.Join(lines, "\n")
	},
	format.Name: func(r *mrand.Rand) string {
		words := make([]string, 1+r.IntN(3))
		for i := range words {
			w := pick(r, []string{"J.", "Li", "Anna", "O'Brien", "Jean-Luc", "Zoë", "José", "Ñúñez", "李", "小龙", "Müller", "d\u2019Arc", "Jose\u0301", "علی\u200cرضا", "Ψ"})
			words[i] = w
		}
		return strings.Join(words, " ")
	},
	format.Generic: func(r *mrand.Rand) string {
		var b strings.Builder
		b.WriteString(digits(r, 3))
		for range r.IntN(30) {
			b.WriteString(pickRune(r, lowerABC+upperABC+"0123456789 -_#@!.,:;éÄ李٣ß😀\u0301½²⑦Ⅳ〇"))
		}
		b.WriteString(pickRune(r, lowerABC))
		return b.String()
	},
}

// gbt2260 returns the county-level division codes of testdata (the list the
// package's table was made from), and fails t if it cannot read them.
var gbt2260 = func() func(t *testing.T) []string {
	b, err := os.ReadFile("testdata/gbt2260-2020.txt")
	var codes []string
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" && l[0] != '#' {
			codes = append(codes, l)
		}
	}
	return func(t *testing.T) []string {
		if err != nil || len(codes) < 2000 {
			if t == nil {
				panic(fmt.Sprint("testdata/gbt2260-2020.txt: ", err))
			}
			t.Fatalf("testdata/gbt2260-2020.txt: %v", err)
		}
		return codes
	}
}()

// phoneCC returns the country code of a generated phone number: one of
// phoneCCs, or for libphonenumber's examples the one it parses.
func phoneCC(v string) string {
	for _, c := range phoneCCs {
		if strings.HasPrefix(v, "+"+c) {
			return c
		}
	}
	n, err := phonenumbers.Parse(v, "")
	if err != nil {
		panic("generated phone number without a country code")
	}
	return strconv.Itoa(int(n.GetCountryCode()))
}

// phoneExamples are libphonenumber's example numbers of every region and
// type with a national number of at least 7 digits (shorter ones can have
// a single valid number of their shape, and so no checksum-valid token).
var phoneExamples = sync.OnceValue(func() []string {
	var xs []string
	regions := slices.Sorted(maps.Keys(phonenumbers.GetSupportedRegions()))
	for _, region := range regions {
		for typ := phonenumbers.FIXED_LINE; typ < phonenumbers.UNKNOWN; typ++ {
			if n := phonenumbers.GetExampleNumberForType(region, typ); n != nil && len(phonenumbers.GetNationalSignificantNumber(n)) >= 7 {
				xs = append(xs, phonenumbers.Format(n, phonenumbers.E164))
			}
		}
	}
	return xs
})

// phoneValid is what a caller validating with libphonenumber checks: the
// number parses to itself and is valid; it returns the region and type.
func phoneValid(v string) (string, phonenumbers.PhoneNumberType, bool) {
	n, err := phonenumbers.Parse(v, "")
	if err != nil || !phonenumbers.IsValidNumber(n) || phonenumbers.Format(n, phonenumbers.E164) != v {
		return "", phonenumbers.UNKNOWN, false
	}
	return phonenumbers.GetRegionCodeForNumber(n), phonenumbers.GetNumberType(n), true
}

// ibanLayouts are the registry BBAN layouts of the countries with national
// check digits: '9' a digit, 'X' a letter or digit.
var ibanLayouts = map[string]string{
	"BE": "999999999999", "ES": "99999999999999999999", "FI": "99999999999999",
	"FR": "9999999999XXXXXXXXXXX99", "MC": "9999999999XXXXXXXXXXX99",
	"ME": "999999999999999999", "NO": "99999999999", "PL": "999999999999999999999999",
	"PT": "999999999999999999999", "RS": "999999999999999999",
}

// canBeValid reports whether a checksum-valid token can be made for v:
// a real province, a number libphonenumber accepts, an IBAN in its
// country's layout.
func canBeValid(t *testing.T, k format.Kind, v string) bool {
	switch k {
	case format.CNResidentID:
		return slices.ContainsFunc(gbt2260(t), func(c string) bool { return c[:2] == v[:2] })
	case format.Phone:
		_, _, ok := phoneValid(v)
		return ok
	case format.IBAN:
		l, ok := ibanLayouts[v[:2]]
		if !ok {
			return true
		}
		if len(l) != len(v)-4 {
			return false
		}
		for i := range len(l) {
			if l[i] == '9' && (v[4+i] < '0' || v[4+i] > '9') {
				return false
			}
		}
	}
	return true
}

// checksumKinds are the kinds whose default token has a deliberately wrong
// check, so the token is not valid input.
var checksumKinds = map[format.Kind]bool{format.CNResidentID: true, format.IBAN: true}

// opaqueKinds get tokens that keep nothing of the value's shape (card.go).
var opaqueKinds = map[format.Kind]bool{format.CardSecurityCode: true, format.CardExpiry: true}

// sameShape checks that tok has the layout of v: letters and numerals (any
// of Nd, Nl, No) become ASCII letters (same case) and digits, everything
// else is kept. Runes for which drop returns true are removed from v first.
func sameShape(t *testing.T, v, tok string, drop func(rune) bool) {
	t.Helper()
	vr := []rune(strings.Map(func(r rune) rune {
		if drop != nil && drop(r) {
			return -1
		}
		return r
	}, v))
	tr := []rune(tok)
	if len(vr) != len(tr) {
		t.Fatalf("token %q has %d runes, want %d", tok, len(tr), len(vr))
	}
	for i, c := range vr {
		d := tr[i]
		var ok bool
		switch {
		case unicode.IsUpper(c):
			ok = 'A' <= d && d <= 'Z'
		case unicode.IsLetter(c):
			ok = 'a' <= d && d <= 'z'
		case unicode.IsNumber(c):
			ok = '0' <= d && d <= '9'
		default:
			ok = c == d
		}
		if !ok {
			t.Fatalf("token %q: rune %d is %q for %q", tok, i, d, c)
		}
	}
}

func isMarkOrJoiner(r rune) bool { return unicode.IsMark(r) || r == '\u200c' || r == '\u200d' }

// checkToken verifies the kind-specific promises about tok.
func checkToken(t *testing.T, k format.Kind, v, tok string, opts format.Options) {
	t.Helper()
	switch k {
	case format.PAN:
		if len(tok) != len(v) || tok[:6] != v[:6] || tok[len(v)-4:] != v[len(v)-4:] {
			t.Fatalf("pan token %q does not keep first 6 / last 4 of its value", tok)
		}
		if luhnValid(tok) != opts.ChecksumValid {
			t.Fatalf("pan token %q: Luhn valid = %v", tok, !opts.ChecksumValid)
		}
		sameShape(t, v, tok, nil)
	case format.SSN:
		area, _ := strconv.Atoi(tok[:3])
		group, _ := strconv.Atoi(tok[4:6])
		if area < 900 || group < 1 || group > 49 || tok[7:] != v[7:] {
			t.Fatalf("ssn token %q", tok)
		}
		sameShape(t, v, tok, nil)
	case format.CNResidentID:
		if tok[:2] != v[:2] {
			t.Fatalf("cn-resident-id token %q does not keep the province", tok)
		}
		if (cnCheck(tok) == tok[17]) != opts.ChecksumValid {
			t.Fatalf("cn-resident-id token %q: check valid = %v", tok, !opts.ChecksumValid)
		}
		if _, err := time.Parse("20060102", tok[6:14]); err != nil {
			t.Fatalf("cn-resident-id token %q: bad date", tok)
		}
		if opts.ChecksumValid && !slices.Contains(gbt2260(t), tok[:6]) {
			t.Fatalf("cn-resident-id token %q: no such division code", tok)
		}
	case format.Phone:
		cc := "+" + phoneCC(v)
		if len(tok) != len(v) || !strings.HasPrefix(tok, cc) || tok[len(v)-2:] != v[len(v)-2:] {
			t.Fatalf("phone token %q does not keep the country code and last 2 digits", tok)
		}
		if opts.ChecksumValid {
			region, typ, _ := phoneValid(v)
			tr, tt, ok := phoneValid(tok)
			if !ok || tr != region || tt != typ {
				t.Fatalf("phone token %q: libphonenumber: valid %v, region %s, type %v; want %s, %v", tok, ok, tr, tt, region, typ)
			}
		} else if tok[len(cc)] == '0' {
			t.Fatalf("phone token %q: national number starts with 0", tok)
		}
		sameShape(t, v, tok, nil)
	case format.Email:
		at := strings.LastIndexByte(v, '@')
		tat := strings.LastIndexByte(tok, '@')
		if tok[tat:] != v[at:] {
			t.Fatalf("email token %q does not keep the domain", tok)
		}
		local, tlocal := v[:at], tok[:tat]
		if len(local) < 8 || len(strings.Map(keepRandomLocal, local)) < 4 {
			if len(tlocal) != 8 || strings.Trim(tlocal, lowerABC+"0123456789") != "" {
				t.Fatalf("email token %q: short local part not replaced by 8 [a-z0-9]", tok)
			}
			break
		}
		if len(tlocal) != len(local) {
			t.Fatalf("email token %q: local part length changed", tok)
		}
		for i := range len(local) {
			c, d := local[i], tlocal[i]
			switch {
			case strings.IndexByte(".+-_", c) >= 0:
				if d != c {
					t.Fatalf("email token %q: separator not kept", tok)
				}
			case '0' <= c && c <= '9':
				if d < '0' || d > '9' {
					t.Fatalf("email token %q: digit class lost", tok)
				}
			default:
				if d < 'a' || d > 'z' {
					t.Fatalf("email token %q: letter class lost", tok)
				}
			}
		}
	case format.IBAN:
		if len(tok) != len(v) || tok[:2] != v[:2] {
			t.Fatalf("iban token %q does not keep the country", tok)
		}
		if (ibanMod97(tok) == 1) != opts.ChecksumValid {
			t.Fatalf("iban token %q: MOD 97 valid = %v", tok, !opts.ChecksumValid)
		}
		if cd := tok[2:4]; !opts.ChecksumValid && cd != "00" && cd != "01" && cd != "99" {
			t.Fatalf("iban token %q: check digits %s in the valid range", tok, cd)
		}
		sameShape(t, v[4:], tok[4:], nil)
	case format.BankAccount:
		if tok[len(tok)-4:] != v[len(v)-4:] {
			t.Fatalf("bank-account token %q does not keep the last 4", tok)
		}
		sameShape(t, v, tok, nil)
	case format.NationalID, format.Generic:
		sameShape(t, v, tok, nil)
	case format.CardSecurityCode:
		if !format.IsVolatileToken(tok) {
			t.Fatalf("card-security-code token %q does not have the volatile shape", tok)
		}
	case format.CardExpiry:
		if !strings.HasPrefix(tok, "exp_") || len(tok) != 20 || strings.Trim(tok[4:], "abcdefghijklmnopqrstuvwxyz234567") != "" {
			t.Fatalf("card-expiry token %q is not exp_ and 16 base32 characters", tok)
		}
	case format.Address:
		sameShape(t, v, tok, isMarkOrJoiner)
	case format.Name:
		letters := 0
		for _, r := range tok {
			if unicode.IsLetter(r) {
				letters++
			}
		}
		vletters := 0
		for _, r := range v {
			if unicode.IsLetter(r) {
				vletters++
			}
		}
		if letters != max(vletters, 6) || strings.Count(tok, " ") != strings.Count(v, " ") {
			t.Fatalf("name token %q has %d letters, value has %d", tok, letters, vletters)
		}
		if vletters >= 6 {
			sameShape(t, v, tok, isMarkOrJoiner)
		}
	}
}

func keepRandomLocal(r rune) rune {
	if strings.ContainsRune(".+-_", r) {
		return -1
	}
	return r
}

func TestTokenProperties(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 300
	}
	for _, k := range format.Kinds() {
		t.Run(k.String(), func(t *testing.T) {
			r := mrand.New(mrand.NewPCG(1, uint64(k)))
			for range n {
				v := generators[k](r)
				if got, err := format.Normalize(k, v); err != nil || got != v {
					t.Fatalf("generated value %q: Normalize = %q, %v", v, got, err)
				}
				for _, opts := range []format.Options{{}, {ChecksumValid: true}} {
					tok, err := format.Token(k, v, opts, rand.Reader)
					if opts.ChecksumValid && !canBeValid(t, k, v) {
						// No valid token exists: a clear error, no token.
						if !errors.Is(err, format.ErrInvalidValue) || !strings.Contains(err.Error(), "checksum-valid tokens need") {
							t.Fatalf("Token(%q, %+v) = %q, %v; want the checksum-valid error", v, opts, tok, err)
						}
						continue
					}
					if err != nil {
						t.Fatalf("Token(%q, %+v): %v", v, opts, err)
					}
					if tok == v {
						t.Fatalf("Token(%q) returned the value", v)
					}
					if !format.LooksLikeToken(tok) || !utf8.ValidString(tok) {
						t.Fatalf("token %q does not look like a token", tok)
					}
					checkToken(t, k, v, tok, opts)
					// What Kept says a token repeats, every token does.
					if kept := format.Kept(k, v); format.Kept(k, tok) != kept || (kept == "") != (format.KeptParts(k) == "") {
						t.Fatalf("Kept(token %q) = %q, Kept(%q) = %q (parts %q)", tok, format.Kept(k, tok), v, kept, format.KeptParts(k))
					}

					// Tokens are valid, canonical input of their kind, except
					// that a deliberately wrong check makes them invalid and
					// opaque tokens are no values at all.
					got, err := format.Normalize(k, tok)
					if opaqueKinds[k] {
						if err == nil {
							t.Fatalf("opaque token %q normalises", tok)
						}
						continue
					}
					if checksumKinds[k] && !opts.ChecksumValid {
						if !errors.Is(err, format.ErrInvalidValue) {
							t.Fatalf("token %q with a wrong check normalises: %q, %v", tok, got, err)
						}
					} else if err != nil || got != tok {
						t.Fatalf("Normalize(token %q) = %q, %v", tok, got, err)
					}
					if m := format.Mask(k, tok); m == "********" && len(tok) != 8 {
						t.Fatalf("Mask(token %q) could not parse it", tok)
					}
				}
			}
		})
	}
}

// TestTokenDeterministic checks that a seeded reader reproduces tokens, which
// is what lets tests pin token values.
func TestTokenDeterministic(t *testing.T) {
	for _, k := range format.Kinds() {
		v := generators[k](mrand.New(mrand.NewPCG(7, 7)))
		seed := [32]byte{1, 2, 3}
		a, err := format.Token(k, v, format.Options{}, mrand.NewChaCha8(seed))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := format.Token(k, v, format.Options{}, mrand.NewChaCha8(seed))
		if a != b {
			t.Errorf("%v: %q != %q with the same seed", k, a, b)
		}
	}
}
