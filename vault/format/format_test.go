package format_test

import (
	"crypto/rand"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/tokenvault/tokenvault/vault/format"
)

func TestKinds(t *testing.T) {
	names := []string{"pan", "ssn", "cn-resident-id", "national-id", "phone", "email", "iban", "bank-account", "address", "name", "generic", "card-security-code", "card-expiry"}
	ks := format.Kinds()
	if len(ks) != len(names) {
		t.Fatalf("Kinds() has %d kinds, want %d", len(ks), len(names))
	}
	for i, k := range ks {
		t.Run(names[i], func(t *testing.T) {
			if got := k.String(); got != names[i] {
				t.Errorf("String() = %q, want %q", got, names[i])
			}
			if !k.Valid() {
				t.Error("Valid() = false")
			}
			if got, err := format.ParseKind(names[i]); err != nil || got != k {
				t.Errorf("ParseKind = %v, %v; want %v", got, err, k)
			}
		})
	}
	for _, k := range []format.Kind{format.KindUnspecified, -1, format.CardExpiry + 1} {
		if k.Valid() {
			t.Errorf("%v.Valid() = true", k)
		}
	}
	if s := format.KindUnspecified.String(); s != "unspecified" {
		t.Errorf("KindUnspecified.String() = %q", s)
	}
	if s := format.Kind(99).String(); s != "kind(99)" {
		t.Errorf("Kind(99).String() = %q", s)
	}
	for _, s := range []string{"", "unspecified", "PAN", " pan", "kind(1)", "4111111111111111"} {
		k, err := format.ParseKind(s)
		if !errors.Is(err, format.ErrUnknownKind) || k != format.KindUnspecified {
			t.Errorf("ParseKind(%q) = %v, %v; want ErrUnknownKind", s, k, err)
		}
		if strings.ContainsAny(s, "0123456789") && strings.Contains(err.Error(), s) {
			t.Errorf("ParseKind error %q echoes its input", err)
		}
	}
}

type normCase struct {
	kind     format.Kind
	in, want string
}

var validCases = []normCase{
	{format.PAN, "4111111111111111", "4111111111111111"},
	{format.PAN, "4111 1111 1111 1111", "4111111111111111"},
	{format.PAN, "4111-1111-1111-1111", "4111111111111111"},
	{format.PAN, "  5500 0000 0000 0004\n", "5500000000000004"},
	{format.PAN, "4111111111111112", "4111111111111112"}, // Luhn not required
	{format.PAN, "4222222222222", "4222222222222"},
	{format.PAN, "6011 0000 0000 0000 004", "6011000000000000004"},

	{format.SSN, "123-45-6789", "123-45-6789"},
	{format.SSN, "123456789", "123-45-6789"},
	{format.SSN, "123 45 6789", "123-45-6789"},
	{format.SSN, " 078-05-1120 ", "078-05-1120"},
	{format.SSN, "912-70-1234", "912-70-1234"}, // ITIN shape

	{format.CNResidentID, "11010519491231002X", "11010519491231002X"},
	{format.CNResidentID, "11010519491231002x", "11010519491231002X"},
	{format.CNResidentID, "440300199003071234", "440300199003071234"},
	{format.CNResidentID, "310115200002294567", "310115200002294567"}, // leap day
	{format.CNResidentID, "650102190001010016", "650102190001010016"},

	{format.NationalID, "ab 123456 c", "AB 123456 C"},
	{format.NationalID, "X1234567", "X1234567"},
	{format.NationalID, "12.345.678-9", "12.345.678-9"},
	{format.NationalID, "ab/12/34", "AB/12/34"},
	{format.NationalID, "1234", "1234"},

	{format.Phone, "+86 138 0013 8000", "+8613800138000"},
	{format.Phone, "0044 20 7946 0958", "+442079460958"},
	{format.Phone, "+44 (0)20 7946 0958", "+442079460958"},
	{format.Phone, "+1 (415) 555-2671", "+14155552671"},
	{format.Phone, "+1.415.555.2671", "+14155552671"},
	{format.Phone, "+39 06 1234 5678", "+390612345678"},
	{format.Phone, "+353 1 234 5", "+35312345"}, // shortest: 8 digits
	{format.Phone, "+123456789012345", "+123456789012345"},

	{format.Email, "John.Smith@Example.COM", "John.Smith@example.com"},
	{format.Email, "a@b.co", "a@b.co"},
	{format.Email, "user+tag@sub.example.org", "user+tag@sub.example.org"},
	{format.Email, "o'brien@example.ie", "o'brien@example.ie"},
	{format.Email, "x@xn--bcher-kva.example", "x@xn--bcher-kva.example"},
	{format.Email, "!#$%&'*+/=?^_`{|}~-@a-1.b2", "!#$%&'*+/=?^_`{|}~-@a-1.b2"},

	{format.IBAN, "DE89 3704 0044 0532 0130 00", "DE89370400440532013000"},
	{format.IBAN, "gb82 west 1234 5698 7654 32", "GB82WEST12345698765432"},
	{format.IBAN, "NO9386011117947", "NO9386011117947"},
	{format.IBAN, "BE68539007547034", "BE68539007547034"},
	{format.IBAN, "FR14 2004 1010 0505 0001 3M02 606", "FR1420041010050500013M02606"},
	{format.IBAN, "MT84MALT011000012345MTLCAST001S", "MT84MALT011000012345MTLCAST001S"},

	{format.BankAccount, "12-3456-78", "12345678"},
	{format.BankAccount, "000123456789", "000123456789"},
	{format.BankAccount, "123456", "123456"},

	{format.Address, "1600 Amphitheatre Pkwy\r\nMountain View, CA 94043", "1600 Amphitheatre Pkwy\nMountain View, CA 94043"},
	{format.Address, "  Flat 2\n\t10 Downing St  \n", "Flat 2\n\t10 Downing St"},
	{format.Address, "北京市朝阳区建国路88号", "北京市朝阳区建国路88号"},

	{format.Name, "John Smith", "John Smith"},
	{format.Name, "  Jean-Luc   Picard ", "Jean-Luc Picard"},
	{format.Name, "O'Brien", "O'Brien"},
	{format.Name, "O\u2019Brien", "O\u2019Brien"},
	{format.Name, "Li", "Li"},
	{format.Name, "José Ñúñez", "José Ñúñez"},
	{format.Name, "Jose\u0301", "Jose\u0301"},
	{format.Name, "李小龙", "李小龙"},
	{format.Name, "J. R. R. Tolkien", "J. R. R. Tolkien"},
	{format.Name, "Zoë\u00a0Kravitz", "Zoë Kravitz"},
	{format.Name, "علی\u200cرضا", "علی\u200cرضا"},

	{format.Generic, "abcd", "abcd"},
	{format.Generic, "  Order #12345  ", "Order #12345"},
	{format.Generic, "€1234", "€1234"},
}

func TestNormalizeValid(t *testing.T) {
	for _, c := range validCases {
		t.Run(c.kind.String()+"/"+c.in, func(t *testing.T) {
			got, err := format.Normalize(c.kind, c.in)
			if err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			if got != c.want {
				t.Fatalf("Normalize = %q, want %q", got, c.want)
			}
			if again, err := format.Normalize(c.kind, got); err != nil || again != got {
				t.Fatalf("Normalize not idempotent: %q, %v", again, err)
			}
		})
	}
}

var invalidCases = []struct {
	kind format.Kind
	in   string
}{
	{format.PAN, ""},
	{format.PAN, "   \n"},
	{format.PAN, "411111111111"},
	{format.PAN, "41111111111111111111"},
	{format.PAN, "4111x11111111111"},
	{format.PAN, "4111_1111_1111_1111"},
	{format.PAN, "４１１１１１１１１１１１１１１１"},
	{format.PAN, "4111111111111111\x00"},
	{format.PAN, "4111\u202e111111111111"},
	{format.PAN, "\xff4111111111111111"},

	{format.SSN, "000-12-3456"},
	{format.SSN, "666-12-3456"},
	{format.SSN, "123-00-4567"},
	{format.SSN, "123-45-0000"},
	{format.SSN, "12345678"},
	{format.SSN, "1234567890"},
	{format.SSN, "123-456-789"},
	{format.SSN, "12-345-6789"},
	{format.SSN, "123--45-6789"},
	{format.SSN, "abc-de-fghi"},

	{format.CNResidentID, "110105194912310021"},  // wrong check
	{format.CNResidentID, "11010519490230002X"},  // Feb 30
	{format.CNResidentID, "11010518991231002X"},  // before 1900
	{format.CNResidentID, "11010530001231002X"},  // future
	{format.CNResidentID, "11010519491231002"},   // 17
	{format.CNResidentID, "1101051949123100X2"},  // X inside
	{format.CNResidentID, "11010519491231002Y"},  // bad check char
	{format.CNResidentID, "1101051949123100 2X"}, // space

	{format.NationalID, "AB-1"},
	{format.NationalID, "ÄB123456"},
	{format.NationalID, "AB_123456"},
	{format.NationalID, "AB:1234"},
	{format.NationalID, strings.Repeat("A1", 33)},
	{format.NationalID, "----"},

	{format.Phone, "415 555 2671"},
	{format.Phone, "+1 415 555 267x"},
	{format.Phone, "+0 123456789"},
	{format.Phone, "+1234567"},
	{format.Phone, "+1234567890123456"},
	{format.Phone, "+44 20#7946"},
	{format.Phone, "++44 20 7946 0958"},
	{format.Phone, "0+44 20 7946 0958"},

	{format.Email, "plainaddress"},
	{format.Email, "a@@b.com"},
	{format.Email, "a@b@c.com"},
	{format.Email, "@example.com"},
	{format.Email, "john@"},
	{format.Email, ".john@example.com"},
	{format.Email, "john.@example.com"},
	{format.Email, "jo..hn@example.com"},
	{format.Email, `"john doe"@example.com`},
	{format.Email, "jöhn@example.com"},
	{format.Email, "john@bücher.de"},
	{format.Email, "john@localhost"},
	{format.Email, "john@-example.com"},
	{format.Email, "john@example-.com"},
	{format.Email, "john@example..com"},
	{format.Email, "john@example.com."},
	{format.Email, "john@[192.0.2.1]"},
	{format.Email, "john doe@example.com"},
	{format.Email, "john(comment)@example.com"},
	{format.Email, strings.Repeat("j", 65) + "@example.com"},
	{format.Email, "john@" + strings.Repeat("a", 64) + ".com"},
	{format.Email, "john@" + strings.Repeat("abcdefghi.", 26) + "com"},

	{format.IBAN, "DE89370400440532013001"},   // check
	{format.IBAN, "DE8937040044053201300"},    // length for DE
	{format.IBAN, "D189370400440532013000"},   // country
	{format.IBAN, "DEXX370400440532013000"},   // check digits
	{format.IBAN, "DE89 3704"},                // short
	{format.IBAN, "DE89-3704-0044-0532-0130"}, // dashes
	{format.IBAN, "MT84MALT011000012345MTLCAST001S1234"},
	{format.IBAN, "DE89 3704 0044 0532 0130 0Ä"},

	{format.BankAccount, "12345"},
	{format.BankAccount, strings.Repeat("1", 35)},
	{format.BankAccount, "1234a678"},
	{format.BankAccount, "1234/5678"},

	{format.Address, "a b"},
	{format.Address, "1-2 ."},
	{format.Address, strings.Repeat("1 Main St\n", 103)},
	{format.Address, "1 Main St\rSpringfield"},
	{format.Address, "1 Main St\x00Springfield"},
	{format.Address, "1 Main\u202eSt 12"},

	{format.Name, "John3"},
	{format.Name, "R2-D2"},
	{format.Name, "Smith, John"},
	{format.Name, "John@Smith"},
	{format.Name, "...."},
	{format.Name, "- '"},
	{format.Name, strings.Repeat("a", 257)},
	{format.Name, "John\tSmith"},

	{format.Generic, "abc"},
	{format.Generic, "!!!!"},
	{format.Generic, "a\x01bcd"},
	{format.Generic, "line one\nline two"},
	{format.Generic, "\xff\xfeabcd"},
	{format.Generic, strings.Repeat("a", format.MaxValueBytes+1)},
}

func TestNormalizeInvalid(t *testing.T) {
	for _, c := range invalidCases {
		name := c.in
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(c.kind.String()+"/"+name, func(t *testing.T) {
			got, err := format.Normalize(c.kind, c.in)
			if !errors.Is(err, format.ErrInvalidValue) {
				t.Fatalf("Normalize = %q, %v; want ErrInvalidValue", got, err)
			}
			if got != "" {
				t.Errorf("Normalize returned %q with an error", got)
			}
			msg := err.Error()
			for _, s := range []string{c.in, strings.TrimSpace(c.in)} {
				if len(s) >= 4 && strings.Contains(msg, s) {
					t.Errorf("error %q contains the input", msg)
				}
			}
			if !strings.HasPrefix(msg, "format: invalid "+c.kind.String()+": ") {
				t.Errorf("error %q does not name the kind", msg)
			}
			// Token validates its input too.
			if _, err := format.Token(c.kind, c.in, format.Options{}, rand.Reader); !errors.Is(err, format.ErrInvalidValue) {
				t.Errorf("Token: %v, want ErrInvalidValue", err)
			}
		})
	}
}

func TestUnknownKind(t *testing.T) {
	for _, k := range []format.Kind{format.KindUnspecified, format.CardExpiry + 1} {
		if _, err := format.Normalize(k, "abcd"); !errors.Is(err, format.ErrUnknownKind) {
			t.Errorf("Normalize(%v): %v, want ErrUnknownKind", k, err)
		}
		if _, err := format.Token(k, "abcd", format.Options{}, rand.Reader); !errors.Is(err, format.ErrUnknownKind) {
			t.Errorf("Token(%v): %v, want ErrUnknownKind", k, err)
		}
		if m := format.Mask(k, "abcd"); m != "********" {
			t.Errorf("Mask(%v) = %q", k, m)
		}
	}
}

func TestMask(t *testing.T) {
	tests := []struct {
		kind     format.Kind
		in, want string
	}{
		{format.PAN, "4111111111111111", "411111******1111"},
		{format.PAN, "4222222222222", "422222***2222"},
		{format.PAN, "6011000000000000004", "601100*********0004"},
		{format.PAN, "4111 1111 1111 1111", "411111******1111"}, // normalised first
		{format.SSN, "123-45-6789", "***-**-6789"},
		// Province only: the last 4 would show the sex-parity digit and the
		// check character, which the token hides.
		{format.CNResidentID, "11010519491231002X", "11****************"},
		{format.CNResidentID, "110105194912310021", "11****************"}, // token-like: check not verified
		{format.NationalID, "AB 123456 C", "** *****6 C"},
		{format.NationalID, "1234", "**34"},
		{format.Phone, "+8613800138034", "+86*********34"},
		{format.Phone, "+14155552671", "+1********71"},
		{format.Phone, "+35312345678", "+353******78"},
		{format.Email, "John.Smith@example.com", "J***@example.com"},
		{format.Email, "a@b.co", "a***@b.co"},
		{format.IBAN, "DE89370400440532013000", "DE****************3000"},
		{format.IBAN, "DE00370400440532013000", "DE****************3000"},
		{format.BankAccount, "12345678", "****5678"},
		{format.Address, "10 Downing St\nLondon SW1A 2AA", "** ******* **\n****** **** ***"},
		{format.Address, "Rue de l'E\u0301glise 5", "*** ** *'****** *"},
		{format.Name, "John Smith", "J*** S****"},
		{format.Name, "J. R. R. Tolkien", "*. *. *. T******"},
		{format.Name, "Jean-Luc Picard", "J***-*** P*****"},
		{format.Name, "Jose\u0301", "J***"},
		{format.Name, "Li", "L*"},
		{format.Generic, "Order #12345", "***** #*****"},
		{format.Generic, "Zoë 1", "*** *"},
		{format.Generic, "Zoë ½", "*** *"}, // every numeral is starred, not only 0-9
		{format.PAN, "not a card", "********"},
		{format.IBAN, "DE8937040044053201300", "********"},
	}
	for _, tt := range tests {
		t.Run(tt.kind.String()+"/"+tt.in, func(t *testing.T) {
			if got := format.Mask(tt.kind, tt.in); got != tt.want {
				t.Errorf("Mask = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestMaskPANLimits checks PCI DSS 3.3: at most the first 6 and last 4 digits.
func TestMaskPANLimits(t *testing.T) {
	for n := 13; n <= 19; n++ {
		v := strings.Repeat("4", n)
		m := format.Mask(format.PAN, v)
		if len(m) != n || m[:6] != v[:6] || m[n-4:] != v[n-4:] || strings.Trim(m[6:n-4], "*") != "" {
			t.Errorf("Mask(%d digits) = %q", n, m)
		}
	}
}

func TestLooksLikeToken(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"", false},
		{" ", false},
		{" abc", false},
		{"abc\n", false},
		{"abc", true},
		{"a\nb", true},
		{"a\tb", true},
		{"a\rb", false},
		{"a\x00b", false},
		{"a\x7fb", false},
		{"a\u0085b", false},
		{"a\u202eb", false},
		{"a\u2028b", false},
		{"\xff", false},
		{"李小龙", true},
		{strings.Repeat("a", format.MaxValueBytes), true},
		{strings.Repeat("a", format.MaxValueBytes+1), false},
	}
	for _, tt := range tests {
		if got := format.LooksLikeToken(tt.in); got != tt.want {
			t.Errorf("LooksLikeToken(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestTokenErrors(t *testing.T) {
	t.Run("not canonical", func(t *testing.T) {
		_, err := format.Token(format.PAN, "4111 1111 1111 1111", format.Options{}, rand.Reader)
		if !errors.Is(err, format.ErrInvalidValue) || strings.Contains(err.Error(), "4111") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("nil reader", func(t *testing.T) {
		if _, err := format.Token(format.PAN, "4111111111111111", format.Options{}, nil); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("reader error", func(t *testing.T) {
		boom := errors.New("boom")
		_, err := format.Token(format.PAN, "4111111111111111", format.Options{}, errReader{boom})
		if !errors.Is(err, boom) || errors.Is(err, format.ErrInvalidValue) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("short reader", func(t *testing.T) {
		_, err := format.Token(format.PAN, "4111111111111111", format.Options{}, strings.NewReader("12"))
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("constant 0xff reader", func(t *testing.T) {
		// 0xff is always rejected for a digit: must fail, not loop forever.
		if _, err := format.Token(format.PAN, "4111111111111111", format.Options{}, constReader(0xff)); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("reader reproduces the value", func(t *testing.T) {
		// All-zero randomness turns the random digits into zeros: the value itself.
		_, err := format.Token(format.BankAccount, "000000001234", format.Options{}, constReader(0))
		if err == nil || errors.Is(err, format.ErrInvalidValue) || strings.Contains(err.Error(), "1234") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestTokenStandaloneMarks: marks that follow no letter are kept, so that
// dropping them cannot leave a token with surrounding whitespace (found by
// FuzzNormalize).
func TestTokenStandaloneMarks(t *testing.T) {
	for _, c := range []struct {
		kind  format.Kind
		value string
	}{
		{format.Name, "Anna ׁ"},
		{format.Name, "́Anna"},
		{format.Name, "Anna \u200c"},
		{format.Address, "12 Main St ́"},
	} {
		tok, err := format.Token(c.kind, c.value, format.Options{}, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if !format.LooksLikeToken(tok) {
			t.Errorf("%v token %q does not look like a token", c.kind, tok)
		}
		if got, err := format.Normalize(c.kind, tok); err != nil || got != tok {
			t.Errorf("Normalize(%v token %q) = %q, %v", c.kind, tok, got, err)
		}
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

type constReader byte

func (c constReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(c)
	}
	return len(p), nil
}

// cycleReader yields 0, 1, ..., 255, 0, 1, ... one byte per Read, so a
// single-byte draw sees every byte value exactly once per cycle.
type cycleReader struct{ b byte }

func (c *cycleReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = c.b
	c.b++
	return 1, nil
}

// TestUnbiased feeds one full cycle of byte values into the draws: an
// unbiased sampler maps the accepted bytes onto each letter or digit exactly
// equally often; "b % n" would favour the low values.
func TestUnbiased(t *testing.T) {
	for _, tt := range []struct {
		value   string
		alpha   string
		perChar int
	}{
		{strings.Repeat("a", 234), "abcdefghijklmnopqrstuvwxyz", 9}, // 234 = 256 - 256%26
		{strings.Repeat("1", 250), "0123456789", 25},                // 250 = 256 - 256%10
	} {
		tok, err := format.Token(format.Generic, tt.value, format.Options{}, &cycleReader{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range tt.alpha {
			if n := strings.Count(tok, string(c)); n != tt.perChar {
				t.Errorf("%q drawn %d times, want %d", c, n, tt.perChar)
			}
		}
	}
}

// TestKept pins what Kept returns per kind, and that a string too short
// for the parts (Kept validates nothing) gives "" instead of a panic.
func TestKept(t *testing.T) {
	for _, tc := range []struct {
		k          format.Kind
		v, want    string
		partsEmpty bool
	}{
		{format.PAN, "4111111111111111", "4111111111", false},
		{format.PAN, "555555555554444", "5555554444", false},
		{format.SSN, "123-45-6789", "6789", false},
		{format.CNResidentID, "11010519491231002X", "11", false},
		{format.Phone, "+8613800138000", "+8600", false},
		{format.Phone, "+14155550134", "+134", false},
		{format.Phone, "+442079460958", "+4458", false},
		{format.Phone, "+35312345678", "+35378", false},
		{format.Email, "Jane.Doe@example.com", "example.com", false},
		{format.IBAN, "DE89370400440532013000", "DE", false},
		{format.BankAccount, "000123456789", "6789", false},
		{format.Name, "Alice", "", true},
		{format.Address, "1 Main St", "", true},
		{format.Generic, "abcd", "", true},
		{format.NationalID, "AB123456", "", true},
		{format.CardExpiry, "09/27", "", true},
		{format.PAN, "123", "", false},
		{format.Phone, "+1", "", false},
		{format.Phone, "x1234567", "", false},
		{format.Email, "no-at", "", false},
		{format.KindUnspecified, "4111111111111111", "", true},
	} {
		t.Run(tc.k.String()+"/"+tc.v, func(t *testing.T) {
			if got := format.Kept(tc.k, tc.v); got != tc.want {
				t.Fatalf("Kept = %q, want %q", got, tc.want)
			}
			if (format.KeptParts(tc.k) == "") != tc.partsEmpty {
				t.Fatalf("KeptParts = %q", format.KeptParts(tc.k))
			}
		})
	}
}
