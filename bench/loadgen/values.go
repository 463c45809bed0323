package loadgen

import (
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/tokenvault/tokenvault/vault/format"
)

// generators make plausible, valid values of each kind tvbench supports.
// They need not be realistic, only accepted and of realistic size: what is
// measured is the vault's work per value. (A test checks every generator's
// output normalizes.)
var generators = map[format.Kind]func(r *rand.Rand) string{
	format.PAN: func(r *rand.Rand) string {
		// 16 digits with a valid Luhn check, like a live card number.
		b := []byte("4" + digits(r, 14))
		return string(b) + string(luhn(b))
	},
	format.SSN: func(r *rand.Rand) string {
		area := 1 + r.IntN(899)
		if area == 666 {
			area = 667
		}
		return pad(area, 3) + "-" + pad(1+r.IntN(99), 2) + "-" + pad(1+r.IntN(9999), 4)
	},
	format.Phone:       func(r *rand.Rand) string { return "+447" + digits(r, 9) },
	format.Email:       func(r *rand.Rand) string { return "user" + digits(r, 8) + "@example.com" },
	format.BankAccount: func(r *rand.Rand) string { return strconv.Itoa(1+r.IntN(9)) + digits(r, 9) },
	format.NationalID:  func(r *rand.Rand) string { return "AB" + digits(r, 6) + "C" },
	format.Name:        func(r *rand.Rand) string { return pick(r, firstNames) + " " + pick(r, lastNames) },
	format.Address: func(r *rand.Rand) string {
		return strconv.Itoa(1+r.IntN(999)) + " " + pick(r, lastNames) + " Street\nSpringfield " + digits(r, 5)
	},
	format.Generic: func(r *rand.Rand) string { return "ref-" + digits(r, 12) },
	// Volatile tokens (held in the server's memory; see BENCHMARKS.md).
	format.CardSecurityCode: func(r *rand.Rand) string { return digits(r, 3) },
}

var (
	firstNames = []string{"Jane", "John", "Ana", "Wei", "Fatima", "Olu", "Sven", "Priya"}
	lastNames  = []string{"Doe", "Smith", "Garcia", "Zhang", "Khan", "Okafor", "Berg", "Patel"}
)

func pick(r *rand.Rand, s []string) string { return s[r.IntN(len(s))] }

func digits(r *rand.Rand, n int) string {
	var b strings.Builder
	b.Grow(n)
	for range n {
		b.WriteByte(byte('0' + r.IntN(10)))
	}
	return b.String()
}

func pad(v, n int) string {
	s := strconv.Itoa(v)
	return strings.Repeat("0", max(n-len(s), 0)) + s
}

// luhn returns the check digit that makes body+digit pass the Luhn check.
func luhn(body []byte) byte {
	sum := 0
	for i := len(body) - 1; i >= 0; i-- {
		d := int(body[i] - '0')
		if (len(body)-1-i)%2 == 0 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return byte('0' + (10-sum%10)%10)
}

// SampleValues returns n generated values of kind k (for tests and for
// callers that want the exact values tvbench sends).
func SampleValues(k format.Kind, r *rand.Rand, n int) []string {
	g, ok := generators[k]
	if !ok {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = g(r)
	}
	return out
}
