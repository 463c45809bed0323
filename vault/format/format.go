// Package format validates, normalises, tokenizes and masks the kinds of
// sensitive values the vault stores: card numbers, national identifiers,
// phone numbers, e-mail addresses, bank accounts, postal addresses, names and
// free text. FORMATS.md in this directory summarises the rules as a table.
//
// # Design
//
// A value goes through up to three pure functions:
//
//   - [Normalize] validates a value for its [Kind] and returns its canonical
//     form. The canonical form is what the vault stores, what deterministic
//     lookups hash and what detokenization returns, so every spelling of the
//     same value must map to one string ("4111 1111-1111 1111" and
//     "4111111111111111" are the same card).
//   - [Token] draws a random, format-preserving token: same layout and
//     character classes as the value, with a few parts kept where callers
//     need them (a card's first 6 and last 4 digits, a phone number's country
//     code). Format preservation lets tokens flow through schemas, column
//     widths, validators and UIs built for real values.
//   - [Mask] renders a value for display, showing at most what the kind's
//     policy allows.
//
// [TokenSpace] counts the tokens Token can return for a value, so that a
// caller can see how small a kind's token space gets (see "Token spaces"
// below).
//
// Tokens are random, not computed from the value (there is no
// format-preserving cipher here): a token reveals nothing beyond its kept
// parts, and the value can only be recovered from the vault. The flip side is
// that tokens are not unique by construction, so the vault must check new
// tokens for collisions. Randomness comes from the caller's [io.Reader]
// (crypto/rand.Reader in production), and every random digit or letter is
// drawn with rejection sampling so that it is exactly uniform (a plain
// "byte % 10" would favour 0-5). A token never equals its value.
//
// A token keeps, and a mask shows, exactly the parts its kind lists below.
// Every other letter and numeral is replaced, and numerals are all of
// Unicode category N (decimal digits of every script, letter numerals such
// as Ⅳ, other numerals such as ½, ² and ⑦), not just 0-9: in tokens they
// become random ASCII digits, in masks '*'. The kinds that keep digits (pan,
// ssn, cn-resident-id, phone, iban, bank-account, e-mail domains) accept only
// ASCII digits.
//
// Random tokens of kinds without a checksum can coincide with somebody's real
// value: a phone token may ring a real phone and an e-mail token keeps the real
// domain. Never send messages to tokens. Kinds that do have a check digit
// (pan, cn-resident-id, iban) get a deliberately wrong one by default, so a
// token can never be used as a live card, ID or account; set
// [Options].ChecksumValid only when a downstream system insists on a valid
// check.
//
// Errors never contain the value or any part of it, because errors get logged
// and logs are where sensitive data most often leaks. An invalid value yields
// an error wrapping [ErrInvalidValue] whose text names the broken rule
// ("format: invalid pan: must be 13-19 digits").
//
// # Rules common to every kind
//
// A value must be valid UTF-8 and at most [MaxValueBytes]. Surrounding
// whitespace is trimmed (pasted values often carry a trailing newline), and
// what remains must be non-empty and free of control characters, including
// the Unicode line and paragraph separators (U+2028, U+2029) and the bidi
// overrides and isolates (U+202A-U+202E, U+2066-U+2069) that can make logs
// and masks display something other than what is stored.
// Addresses alone may contain line breaks (CRLF is normalised to LF) and tabs.
// There is no Unicode normalisation (NFC) because the standard library has
// none; callers that accept non-ASCII names or addresses should normalise
// them before calling Normalize so that lookups are stable.
//
// # Kinds
//
// pan (payment card number): 13-19 digits; spaces and dashes are removed.
// Luhn is not required on input because test cards and some private-label
// cards fail it. The token keeps the first 6 digits (BIN: card network and
// issuer, used for routing and analytics) and the last 4 (what customers
// recognise), the most PCI DSS allows to be shown; the middle is random. By
// default the token fails Luhn so that it can never be charged; with
// ChecksumValid it passes. The last digit is kept, so the Luhn fix is made in
// the last middle digit. Mask: first 6, '*' for the middle, last 4 (PCI DSS
// 3.3).
//
// ssn (US Social Security number): 9 digits, written AAA-GG-SSSS (dashes or
// spaces) or AAAGGSSSS; canonical AAA-GG-SSSS. Area 000 and 666, group 00 and
// serial 0000 are never issued and are rejected. Areas 900-999 are accepted
// because ITINs use that shape and are just as sensitive. The token keeps the
// serial (last 4, commonly used for verification) and draws the area from
// 900-999, which SSA never issues, and the group from 01-49, because groups
// 50-65, 70-88, 90-92 and 94-99 in 9xx areas are IRS ITINs and 93 is an ATIN:
// a token can be neither a real SSN nor a real ITIN. Mask: ***-**-SSSS.
//
// cn-resident-id (PRC resident identity card number): 6-digit region code,
// birth date YYYYMMDD (a real calendar date, year 1900 to this year), 3-digit
// sequence and an ISO 7064 MOD 11-2 check character (0-9 or X; x is
// upper-cased); a wrong check character is rejected. The token keeps only the
// 2-digit province: the full region code plus the birth date nearly identify
// a person, the birth date is personal data in itself, and the sequence's
// parity encodes sex. The rest is a random region, a random real date in the
// accepted range and a random sequence; the check character is wrong by
// default and right with ChecksumValid, which also draws the region from
// the real county-level division codes of the province (GB/T 2260, see
// cnid.go) instead of 4 random digits. Mask: the province, then 16 '*'; the
// mask shows no more than the token, because the last 4 would show the
// sequence (and its sex parity) and a check character computed from the
// hidden digits.
//
// national-id (other countries' identifiers): ASCII letters, digits and the
// separators space, '-', '/' and '.'; at most 64 characters with at least 4
// letters or digits (so that the token space is at least 10^4 and a mask
// always hides something). ASCII only because machine-readable identity
// documents (ICAO 9303) are ASCII. Letters are upper-cased. There is no common
// structure to keep, so the token keeps only the layout: each digit becomes a
// random digit, each letter a random letter, separators stay. Mask: every
// letter and digit except the last 2 becomes '*' (the mask shows those 2,
// which the token does not keep).
//
// phone: E.164. The value starts with '+' or the international prefix "00";
// spaces, dashes, dots and parentheses are removed, as is the "(0)" trunk
// prefix notation ("+44 (0)20 ..."). 8-15 digits including the country code:
// 15 is the E.164 maximum, and 8 is the shortest length that still leaves 3
// random digits after a 3-digit country code and the kept last 2 digits (the
// few real 7-digit numbers, e.g. Niue, could not be tokenized safely anyway).
// Country codes cannot start with 0. The token keeps the country code
// (routing, SMS cost, regional formatting) and the last 2 digits (enough for
// "ending in 34" hints); the first digit after the country code is 1-9 because
// many parsers read a leading 0 as a trunk prefix and would strip it; the rest
// is random. With ChecksumValid the value must be a number that
// libphonenumber (github.com/nyaruka/phonenumbers) finds valid as written,
// and the token is drawn uniformly from the numbers of the same length and
// last 2 digits that it finds valid for the same region and of the same
// number type (mobile stays mobile); its first national digit can then be 0
// where the country's numbers start with 0 (Italy's fixed lines). Mask: +CC, '*' for the middle, last 2.
//
// email: exactly one '@'; an unquoted (dot-atom) local part of 1-64 bytes and
// a domain of 1-253 bytes made of at least two LDH labels of 1-63 bytes.
// Quoted local parts and non-ASCII characters are rejected: both are rare and
// mostly abuse; internationalised domains must be given in punycode. The
// domain is lower-cased (DNS is case-insensitive); the local part is kept as
// given because RFC 5321 makes it case-sensitive. The token keeps the domain
// (mail routing, per-domain analytics) and replaces the local part position by
// position: letters and other symbols become random lowercase letters, digits
// random digits, and '.', '+', '-' and '_' stay. Local parts shorter than 8
// characters, or with fewer than 4 randomised characters, are replaced by 8
// random [a-z0-9] characters instead, because short local parts are common
// and a 2-character local part has too few tokens per domain. Mask: first
// character of the local part (which the token does not keep), "***@",
// domain.
//
// iban: ISO 13616. Spaces are removed and letters upper-cased; a 2-letter
// country code, 2 check digits and an alphanumeric BBAN, 15-34 characters in
// total (the length is checked for common countries), passing MOD 97. The
// token keeps the country (it determines the BBAN format and SEPA routing); the
// whole BBAN, bank code included, is random by character class because a bank
// code plus a few digits narrows an account down. By default the check digits
// are 00, 01 or 99, which ISO 13616 never produces (it yields 02-98), never
// the one that would still satisfy MOD 97 for that BBAN, so a token fails
// both range and MOD 97 checks; with ChecksumValid they are correct, and so
// are the national check digits inside the BBAN of the countries that have
// them (ibannational.go lists them; FORMATS.md too), whose values must then
// have the registry's BBAN layout; a Belgian token draws a bank code in
// use. The few countries with check digits we cannot compute (SE, LU, IS,
// ...) get no checksum-valid token: an error instead. Mask:
// country code, '*' for check digits and BBAN, last 4 (which the token does
// not keep).
//
// bank-account (domestic account numbers): 6-34 digits after removing spaces
// and dashes. The token keeps the last 4 digits (what statements and
// customers use to recognise an account); the rest is random. Short accounts
// therefore have small token spaces (99 tokens for 6 digits). Mask: '*' then
// last 4.
//
// address: free text of at most 1024 bytes with at least 4 letters or
// numerals; lines are separated by LF. The token keeps the layout (lines,
// spacing, punctuation, symbols) so that it fits address forms and labels;
// every letter becomes a random ASCII letter of the same case, every numeral
// (½ and Ⅳ included) a random ASCII digit, and the combining marks and
// joiners following them are dropped so that they do not decorate the
// random letters with the original diacritics. House numbers and postal
// codes are randomised like everything else because they identify a
// household, and the country is not kept because free text cannot be parsed
// reliably; callers that route by country keep it in a separate,
// non-sensitive field. Mask: every letter and numeral becomes '*' (marks and
// joiners following them are dropped).
//
// name: letters of any script with their combining marks, spaces,
// apostrophes (' and U+2019), hyphens and periods, and the zero-width
// (non-)joiners that Persian and Indic names need; at most 256 bytes and at
// least one letter; runs of whitespace collapse to one space. The token keeps
// word lengths and punctuation, replacing each letter with a random ASCII
// letter of the same case (marks and joiners following a letter dropped, as
// for addresses). Names with fewer than 6 letters get random lowercase
// letters appended after the last letter until there are 6, because short
// names such as "Li" would otherwise have only a few hundred tokens. Names
// contain no numerals. Mask: first letter of each word of 2 or more letters
// (which the token does not keep), '*' for the other letters, punctuation
// kept ("J*** S****"); single-letter words are fully masked so that
// initials-only names are not shown in full.
//
// generic: any text satisfying the common rules, with at least 4 letters or
// numerals so that the token space is not trivially small. The token has the
// same number of runes: every letter becomes a random ASCII letter of the
// same case, every numeral (Unicode category N: 7, ٣, Ⅳ, ½, ², ⑦) a random
// ASCII digit, and everything else (spaces, punctuation, symbols, marks) is
// kept. Mask: every letter and numeral becomes '*'.
//
// card-security-code (card.go): 3 or 4 ASCII digits. The token is volatile,
// tvvol1_<holder>_<secret> ([VolatileToken]): the vault holds the code only
// in the memory of the process named by holder and never stores it. Mask:
// "***" for every code.
//
// card-expiry (card.go): MM/YY, or MM/YYYY with a year 20YY, a dash or
// spaces around the separator accepted; canonical MM/YY, month 01-12. The
// token is opaque ("exp_" and 16 characters of a-z2-7), since MM/YY has only
// 1 200 values. Mask: the whole value (month and year).
//
// # Token spaces
//
// A token keeps some parts of its value and draws the rest, so all values
// with the same kept parts and layout draw from one set of strings, and a
// token never equals its value. [TokenSpace] returns how many tokens a value
// can get; FORMATS.md gives the formula for every kind. Some spaces are
// small: a 6-digit bank account has 99 tokens, and the 100 strings ending in
// its last 4 digits are shared by every such account. The vault keeps tokens
// unique and reports a space it cannot find a free token in as exhausted.
package format

import (
	"errors"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Kind is the kind of a sensitive value. The zero value is not a valid kind.
type Kind int

// The kinds of value; the comment shows the name used by [Kind.String] and
// [ParseKind].
const (
	KindUnspecified Kind = iota
	PAN                  // "pan"
	SSN                  // "ssn"
	CNResidentID         // "cn-resident-id"
	NationalID           // "national-id"
	Phone                // "phone"
	Email                // "email"
	IBAN                 // "iban"
	BankAccount          // "bank-account"
	Address              // "address"
	Name                 // "name"
	Generic              // "generic"
	// CardSecurityCode is a card's CVV2/CVC2/CID (card.go). The vault never
	// stores one: its tokens are volatile ([VolatileToken]).
	CardSecurityCode // "card-security-code"
	CardExpiry       // "card-expiry" (card.go)
)

var kindNames = [...]string{
	KindUnspecified:  "unspecified",
	PAN:              "pan",
	SSN:              "ssn",
	CNResidentID:     "cn-resident-id",
	NationalID:       "national-id",
	Phone:            "phone",
	Email:            "email",
	IBAN:             "iban",
	BankAccount:      "bank-account",
	Address:          "address",
	Name:             "name",
	Generic:          "generic",
	CardSecurityCode: "card-security-code",
	CardExpiry:       "card-expiry",
}

// String returns the kind's name, "unspecified" for the zero Kind and
// "kind(N)" for values outside the defined range.
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Valid reports whether k is one of the defined kinds (not KindUnspecified).
func (k Kind) Valid() bool { return k > KindUnspecified && int(k) < len(kindNames) }

// Kinds returns all valid kinds in declaration order.
func Kinds() []Kind {
	ks := make([]Kind, 0, len(kindNames)-1)
	for k := PAN; k.Valid(); k++ {
		ks = append(ks, k)
	}
	return ks
}

// ParseKind returns the kind with the given name. Names are matched exactly
// (they are machine identifiers). The error wraps [ErrUnknownKind] and, in
// case a value was passed by mistake, does not echo s.
func ParseKind(s string) (Kind, error) {
	for k := PAN; k.Valid(); k++ {
		if kindNames[k] == s {
			return k, nil
		}
	}
	return KindUnspecified, errUnknownKind
}

// MaxValueBytes is the maximum size of a value or token of any kind; some
// kinds have lower limits.
const MaxValueBytes = 64 << 10

var (
	// ErrUnknownKind is wrapped by errors for names or Kind values that are
	// not a valid kind.
	ErrUnknownKind = errors.New("format: unknown kind")
	// ErrInvalidValue is wrapped by errors for values that are not valid for
	// their kind.
	ErrInvalidValue = errors.New("format: invalid value")

	errUnknownKind = fmt.Errorf("%w (valid kinds: %s)", ErrUnknownKind, strings.Join(kindNames[1:], ", "))
)

// valueError describes why a value is invalid. reason is always a constant
// text: it must never include the value.
type valueError struct {
	kind   Kind
	reason string
}

func (e *valueError) Error() string { return "format: invalid " + e.kind.String() + ": " + e.reason }
func (e *valueError) Unwrap() error { return ErrInvalidValue }

func invalid(k Kind, reason string) error { return &valueError{k, reason} }

// Options controls token generation.
type Options struct {
	// ChecksumValid makes tokens pass the full validation downstream
	// systems run: pan passes Luhn; cn-resident-id gets a real division code
	// of its province and the right ISO 7064 MOD 11-2 check; iban passes
	// MOD 97 and the national check digits of the countries that have
	// them (ibannational.go; a Belgian bank code in use), and is refused
	// for the few whose check digits are not implemented; phone becomes a number
	// libphonenumber finds valid, in the value's region and of its number
	// type. A value for which no such token exists (no real province, a
	// number libphonenumber rejects, a BBAN not in its country's layout,
	// an IBAN country whose national check digits are not implemented) gets
	// an error wrapping [ErrInvalidValue]. FORMATS.md says what each validator
	// says of the tokens. The default (false) makes the check of pan,
	// cn-resident-id and iban tokens deliberately INVALID so a token can
	// never pass as a live card/ID/IBAN; phone tokens then only have the
	// value's length.
	ChecksumValid bool
}

// spec holds the per-kind rules. normalize gets a value that already passed
// the common rules (trimmed, non-empty, valid UTF-8, no control characters)
// and checks the structure; check, if set, verifies the check digit
// separately so that Mask can accept tokens whose check is deliberately
// wrong. token gets a canonical value; space counts what token can return
// for it (see TokenSpace).
type spec struct {
	normalize func(s string) (string, error)
	check     func(v string) error
	// valid, if set, says whether a checksum-valid token can be made for v
	// (Token and TokenSpace return its error with ChecksumValid).
	valid func(v string) error
	token func(v string, o Options, g *rng) string
	mask  func(v string) string
	space func(v string, o Options) *big.Int
	// kept, if set, returns the characters of v that every token of v
	// repeats (see Kept); parts names them for messages.
	kept  func(v string) string
	parts string
}

var specs = [...]spec{
	PAN:          {normalize: normPAN, token: tokenPAN, mask: maskPAN, space: spacePAN, kept: keptPAN, parts: "the first 6 and last 4 digits"},
	SSN:          {normalize: normSSN, token: tokenSSN, mask: maskSSN, space: spaceSSN, kept: keptLast4, parts: "the last 4 digits"},
	CNResidentID: {normalize: normCNID, check: checkCNID, valid: validCNID, token: tokenCNID, mask: maskCNID, space: spaceCNID, kept: keptFirst2, parts: "the province (the first 2 digits)"},
	NationalID:   {normalize: normNationalID, token: tokenGeneric, mask: maskNationalID, space: spaceText(false)},
	Phone:        {normalize: normPhone, valid: validPhone, token: tokenPhone, mask: maskPhone, space: spacePhone, kept: keptPhone, parts: "the country code and the last 2 digits"},
	Email:        {normalize: normEmail, token: tokenEmail, mask: maskEmail, space: spaceEmail, kept: keptEmail, parts: "the domain"},
	IBAN:         {normalize: normIBAN, check: checkIBAN, valid: validIBAN, token: tokenIBAN, mask: maskIBAN, space: spaceIBAN, kept: keptFirst2, parts: "the country code"},
	BankAccount:  {normalize: normBankAccount, token: tokenBankAccount, mask: maskBankAccount, space: spaceBankAccount, kept: keptLast4, parts: "the last 4 digits"},
	Address:      {normalize: normAddress, token: tokenAddress, mask: maskAddress, space: spaceText(true)},
	Name:         {normalize: normName, token: tokenName, mask: maskName, space: spaceName},
	Generic:      {normalize: normGeneric, token: tokenGeneric, mask: maskGeneric, space: spaceText(false)},
	// Opaque tokens (card.go): these values are too short for unique
	// format-preserving ones.
	CardSecurityCode: {normalize: normSecurityCode, token: tokenSecurityCode, mask: maskSecurityCode, space: spaceOpaque(volatileSecretLen)},
	CardExpiry:       {normalize: normExpiry, token: tokenExpiry, mask: maskExpiry, space: spaceOpaque(expirySecretLen)},
}

// Normalize validates value for kind and returns its canonical form (the
// form that is stored, used for deterministic lookups and returned by
// detokenize). Errors wrap [ErrInvalidValue] ([ErrUnknownKind] for an invalid
// k) and never contain the value or any part of it.
func Normalize(k Kind, value string) (string, error) { return normalize(k, value, true) }

func normalize(k Kind, value string, verifyCheck bool) (string, error) {
	if !k.Valid() {
		return "", errUnknownKind
	}
	if len(value) > MaxValueBytes {
		return "", invalid(k, "longer than 65536 bytes")
	}
	if !utf8.ValidString(value) {
		return "", invalid(k, "not valid UTF-8")
	}
	if k == Address {
		value = strings.ReplaceAll(value, "\r\n", "\n")
	}
	value = strings.TrimSpace(value)
	if value == "" {
		return "", invalid(k, "empty")
	}
	for _, r := range value {
		if isControl(r) && (k != Address || r != '\n' && r != '\t') {
			return "", invalid(k, "contains control characters")
		}
	}
	sp := &specs[k]
	v, err := sp.normalize(value)
	if err == nil && verifyCheck && sp.check != nil {
		err = sp.check(v)
	}
	if err != nil {
		return "", err
	}
	return v, nil
}

// maxAttempts bounds the draws in Token; with a working random source the
// chance of needing more than a couple is negligible for every kind.
const maxAttempts = 64

// Token generates a random format-preserving token for an already normalized
// value, reading randomness from r (crypto/rand.Reader in production; tests
// may pass a deterministic reader). The token always differs from the value.
// A value that is not in canonical form is rejected with [ErrInvalidValue], so
// tokens always have the canonical layout. Errors never contain the value.
func Token(k Kind, normalized string, opts Options, r io.Reader) (string, error) {
	v, err := Normalize(k, normalized)
	if err != nil {
		return "", err
	}
	if v != normalized {
		return "", invalid(k, "not in canonical form (call Normalize first)")
	}
	if err := checkValid(k, v, opts); err != nil {
		return "", err
	}
	if r == nil {
		return "", errors.New("format: nil random source")
	}
	g := &rng{r: r}
	for range maxAttempts {
		t := specs[k].token(v, opts, g)
		if errors.Is(g.err, ErrInvalidValue) {
			return "", g.err // no valid token exists in practice
		}
		if g.err != nil {
			return "", fmt.Errorf("format: reading random source: %w", g.err)
		}
		// Only security codes get the volatile shape: the vault routes a
		// token by its shape (a generic value can keep the prefix).
		if t != v && (k == CardSecurityCode || !IsVolatileToken(t)) {
			return t, nil
		}
	}
	return "", errors.New("format: random source keeps reproducing the value")
}

// checkValid returns why no checksum-valid token can be made for v, if
// opts asks for one.
func checkValid(k Kind, v string, opts Options) error {
	if f := specs[k].valid; opts.ChecksumValid && f != nil {
		return f(v)
	}
	return nil
}

// Kept returns the characters of a normalized value that every token of
// it repeats, in order (a card's first 6 and last 4 digits, a phone
// number's country code and last 2 digits, an e-mail address's domain):
// two values with the same Kept have the same token parts, so a token of
// one stands for the other as well. It is "" for the kinds whose tokens
// keep only the layout. KeptParts names the parts. A token's own Kept is
// its value's, which is why tokens (whose check digits may be wrong) are
// accepted: Kept reads positions, it validates nothing, and returns "" for
// a string too short to have the parts.
//
// The vault's rectification uses it: a token whose kept parts are an old
// value's would go on showing that value's digits (and route by its BIN).
func Kept(k Kind, normalized string) string {
	if !k.Valid() || specs[k].kept == nil {
		return ""
	}
	return specs[k].kept(normalized)
}

// KeptParts names what [Kept] returns for kind k ("the first 6 and last 4
// digits"), or "" if its tokens keep only the layout.
func KeptParts(k Kind) string {
	if !k.Valid() {
		return ""
	}
	return specs[k].parts
}

func keptPAN(v string) string {
	if len(v) < 10 {
		return ""
	}
	return v[:6] + v[len(v)-4:]
}

func keptLast4(v string) string {
	if len(v) < 4 {
		return ""
	}
	return v[len(v)-4:]
}

func keptFirst2(v string) string {
	if len(v) < 2 {
		return ""
	}
	return v[:2]
}

func keptPhone(v string) string {
	if len(v) < 6 || v[0] != '+' || !allDigits(v[1:]) {
		return ""
	}
	return v[:1+ccLen(v[1:])] + v[len(v)-2:]
}

func keptEmail(v string) string {
	at := strings.LastIndexByte(v, '@')
	if at < 0 {
		return ""
	}
	return v[at+1:]
}

// unparsedMask is what Mask returns for values it cannot parse: it has a
// fixed length so that it does not even reveal the value's length.
const unparsedMask = "********"

// Mask returns a display mask of a normalized value (for UIs). Values that
// are valid but not canonical are normalised first, and check digits are not
// verified so that tokens can be masked too. For an invalid kind or a value
// that does not parse, Mask returns "********".
func Mask(k Kind, normalized string) string {
	v, err := normalize(k, normalized, false)
	if err != nil {
		return unparsedMask
	}
	return specs[k].mask(v)
}

// LooksLikeToken reports whether s could be a token of any kind (cheap
// syntactic check used to reject garbage before a store lookup): non-empty,
// valid UTF-8, at most MaxValueBytes, no control chars except \n and \t
// (addresses are multi-line). Tokens are derived from canonical values, so
// they never have surrounding whitespace either.
func LooksLikeToken(s string) bool {
	if s == "" || len(s) > MaxValueBytes || !utf8.ValidString(s) || strings.TrimSpace(s) != s {
		return false
	}
	for _, r := range s {
		if isControl(r) && r != '\n' && r != '\t' {
			return false
		}
	}
	return true
}

// isControl reports control characters, counting the Unicode line and
// paragraph separators (line breaks in disguise) and the bidi embeddings,
// overrides and isolates, which reorder displayed text (CVE-2021-42574).
func isControl(r rune) bool {
	return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' ||
		'\u202a' <= r && r <= '\u202e' || '\u2066' <= r && r <= '\u2069'
}
