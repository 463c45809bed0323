package format

import (
	"math/big"
	"strings"
)

// Card security codes and expiry dates, the two card fields besides the
// number that a checkout collects (the holder's name is a [Name]).
//
// Neither can have a format-preserving token: a security code has at most
// 10⁴ values and an expiry 1 200, and the vault keeps every token unique
// across kinds and subjects, so a format-preserving set would run out after
// a few thousand cards vault-wide. Their tokens are opaque strings with a
// fixed prefix instead.

// VolatilePrefix starts every volatile token (a card security code's): the
// token's shape says that it is held only in the memory of the process that
// issued it. The whole shape is
//
//	tvvol1_<holder>_<secret>
//
// holder is [HolderIDLen] characters of [a-z2-7] naming the issuing process
// (opaque; it changes at every start, so a restart's tokens are recognisably
// another holder's), secret is [volatileSecretLen] characters of [a-z2-7]
// (130 random bits). FORMATS.md documents it.
const VolatilePrefix = "tvvol1_"

// HolderIDLen is the length of the holder id inside a volatile token.
const HolderIDLen = 8

const (
	volatileSecretLen = 26 // 26 × 5 = 130 bits
	// volatileTokenLen is the length of every volatile token.
	volatileTokenLen = len(VolatilePrefix) + HolderIDLen + 1 + volatileSecretLen
	base32Alphabet   = "abcdefghijklmnopqrstuvwxyz234567"
	// expiryPrefix starts every card-expiry token; see tokenExpiry.
	expiryPrefix    = "exp_"
	expirySecretLen = 16 // 80 bits
)

// SecurityCodeMask is the mask of every card security code: it shows
// nothing, not even whether the code has 3 or 4 digits.
const SecurityCodeMask = "***"

// IsVolatileToken reports whether s has the shape of a volatile token.
func IsVolatileToken(s string) bool {
	_, ok := VolatileHolder(s)
	return ok
}

// VolatileHolder returns the holder id of a volatile token, and false if s
// does not have the shape of one.
func VolatileHolder(s string) (string, bool) {
	if len(s) != volatileTokenLen || !strings.HasPrefix(s, VolatilePrefix) {
		return "", false
	}
	rest := s[len(VolatilePrefix):]
	if rest[HolderIDLen] != '_' || !isBase32(rest[:HolderIDLen]) || !isBase32(rest[HolderIDLen+1:]) {
		return "", false
	}
	return rest[:HolderIDLen], true
}

// ValidHolderID reports whether id can be the holder id of a volatile
// token.
func ValidHolderID(id string) bool { return len(id) == HolderIDLen && isBase32(id) }

// NewHolderID draws a random holder id from r.
func NewHolderID(r interface{ Read([]byte) (int, error) }) (string, error) {
	g := &rng{r: r}
	s := randomBase32(g, HolderIDLen)
	if g.err != nil {
		return "", g.err
	}
	return s, nil
}

// VolatileToken draws a volatile token for holder from r.
func VolatileToken(holder string, r interface{ Read([]byte) (int, error) }) (string, error) {
	if !ValidHolderID(holder) {
		return "", invalid(CardSecurityCode, "holder id must be 8 characters of a-z and 2-7")
	}
	g := &rng{r: r}
	t := VolatilePrefix + holder + "_" + randomBase32(g, volatileSecretLen)
	if g.err != nil {
		return "", g.err
	}
	return t, nil
}

func isBase32(s string) bool {
	for i := range len(s) {
		if strings.IndexByte(base32Alphabet, s[i]) < 0 {
			return false
		}
	}
	return s != ""
}

func randomBase32(g *rng, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = base32Alphabet[g.intn(32)]
	}
	return string(b)
}

// normSecurityCode: 3 or 4 ASCII digits (CVV2/CVC2/CID), nothing else.
func normSecurityCode(s string) (string, error) {
	if len(s) < 3 || len(s) > 4 {
		return "", invalid(CardSecurityCode, "must be 3 or 4 digits")
	}
	for i := range len(s) {
		if !isDigit(s[i]) {
			return "", invalid(CardSecurityCode, "must be 3 or 4 digits")
		}
	}
	return s, nil
}

// tokenSecurityCode draws a volatile-shaped token with the all-'a' holder
// id. The vault never uses it: it issues security-code tokens with
// [VolatileToken] under its own holder id and never stores them; Token
// returns one so that every kind has a token.
func tokenSecurityCode(_ string, _ Options, g *rng) string {
	return VolatilePrefix + strings.Repeat("a", HolderIDLen) + "_" + randomBase32(g, volatileSecretLen)
}

func maskSecurityCode(string) string { return SecurityCodeMask }

func spaceOpaque(n int) func(string, Options) *big.Int {
	return func(string, Options) *big.Int {
		return new(big.Int).Exp(big.NewInt(32), big.NewInt(int64(n)), nil)
	}
}

// normExpiry accepts MM/YY and MM/YYYY (20YY), with optional spaces around
// the slash or a dash instead of it, and returns MM/YY. Month 01-12; no
// year is refused (the package has no clock, and records of expired cards
// are legitimate).
func normExpiry(s string) (string, error) {
	const reason = "must be MM/YY, or MM/YYYY with a year 2000-2099, with a month 01-12"
	i := strings.IndexAny(s, "/-")
	if i < 0 {
		return "", invalid(CardExpiry, reason)
	}
	mm, yy := strings.TrimSpace(s[:i]), strings.TrimSpace(s[i+1:])
	if len(yy) == 4 && strings.HasPrefix(yy, "20") {
		yy = yy[2:]
	}
	if len(mm) != 2 || len(yy) != 2 || !allDigits(mm) || !allDigits(yy) || mm < "01" || mm > "12" {
		return "", invalid(CardExpiry, reason)
	}
	return mm + "/" + yy, nil
}

// tokenExpiry draws an opaque token: "exp_" and 16 characters of [a-z2-7].
// It keeps nothing of the value (the mask shows month and year).
func tokenExpiry(_ string, _ Options, g *rng) string {
	return expiryPrefix + randomBase32(g, expirySecretLen)
}

// maskExpiry shows the whole value: month and year are what a checkout
// page displays ("expires 09/27") and PCI DSS allows them to be shown.
func maskExpiry(v string) string { return v }
