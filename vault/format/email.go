package format

import "strings"

const (
	// emailShortLocal: local parts shorter than this, or with fewer than
	// emailMinRandom randomised characters, get a fresh local part of
	// emailShortLocal random characters (see the package doc).
	emailShortLocal = 8
	emailMinRandom  = 4
	emailAlphabet   = "abcdefghijklmnopqrstuvwxyz0123456789"
)

// isAtext reports the RFC 5322 atext characters: what an unquoted local part
// may contain besides dots.
func isAtext(c byte) bool {
	return 'a' <= c && c <= 'z' || isUpper(c) || isDigit(c) || strings.IndexByte("!#$%&'*+/=?^_`{|}~-", c) >= 0
}

// isKeptLocal reports the local-part characters that tokens keep in place:
// dots (so the token stays a valid dot-atom) and the common sub-address and
// word separators.
func isKeptLocal(c byte) bool { return strings.IndexByte(".+-_", c) >= 0 }

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func normEmail(s string) (string, error) {
	if s[0] == '"' {
		return "", invalid(Email, "quoted local parts are not supported")
	}
	local, domain, ok := strings.Cut(s, "@")
	if !ok || strings.Contains(domain, "@") {
		return "", invalid(Email, "must contain exactly one @")
	}
	switch {
	case len(local) == 0 || len(local) > 64:
		return "", invalid(Email, "local part must be 1-64 bytes")
	case !isASCII(local):
		return "", invalid(Email, "local part must be ASCII (internationalised addresses are not supported)")
	case local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, ".."):
		return "", invalid(Email, "local part cannot start or end with a dot or contain two dots in a row")
	}
	for i := range len(local) {
		if !isAtext(local[i]) && local[i] != '.' {
			return "", invalid(Email, "local part contains a character not allowed in an unquoted address")
		}
	}
	switch {
	case !isASCII(domain):
		return "", invalid(Email, "domain must be ASCII (write internationalised domains in punycode)")
	case len(domain) == 0 || len(domain) > 253:
		return "", invalid(Email, "domain must be 1-253 bytes")
	case !strings.Contains(domain, "."):
		return "", invalid(Email, "domain must have at least two labels")
	}
	domain = strings.ToLower(domain)
	for label := range strings.SplitSeq(domain, ".") {
		if !validLabel(label) {
			return "", invalid(Email, "domain labels must be 1-63 letters, digits or hyphens, not starting or ending with a hyphen")
		}
	}
	return local + "@" + domain, nil
}

// validLabel checks a lower-cased DNS label against the LDH rule.
func validLabel(l string) bool {
	if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := range len(l) {
		if c := l[i]; !('a' <= c && c <= 'z' || isDigit(c) || c == '-') {
			return false
		}
	}
	return true
}

func tokenEmail(v string, _ Options, g *rng) string {
	at := strings.LastIndexByte(v, '@')
	local := []byte(v[:at])
	random := 0
	for _, c := range local {
		if !isKeptLocal(c) {
			random++
		}
	}
	if len(local) < emailShortLocal || random < emailMinRandom {
		local = local[:0]
		for range emailShortLocal {
			local = append(local, emailAlphabet[g.intn(len(emailAlphabet))])
		}
	} else {
		for i, c := range local {
			switch {
			case isDigit(c):
				local[i] = g.digit()
			case !isKeptLocal(c):
				local[i] = g.lower()
			}
		}
	}
	return string(local) + v[at:]
}

func maskEmail(v string) string { return v[:1] + "***" + v[strings.LastIndexByte(v, '@'):] }
