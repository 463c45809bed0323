package format_test

import (
	"errors"
	mrand "math/rand/v2"
	"strings"
	"testing"

	"github.com/tokenvault/tokenvault/vault/format"
)

func FuzzNormalize(f *testing.F) {
	for _, c := range validCases {
		f.Add(uint8(c.kind), c.in)
	}
	for _, c := range invalidCases {
		if len(c.in) < 1024 {
			f.Add(uint8(c.kind), c.in)
		}
	}
	f.Add(uint8(format.Generic), "Floor ² room ⑦ Ⅳ")
	f.Add(uint8(format.Address), "Flat ½\n10 Downing St")
	f.Add(uint8(format.CardSecurityCode), "0737")
	f.Add(uint8(format.CardExpiry), "09 / 2031")
	f.Fuzz(func(t *testing.T, kind uint8, s string) {
		k := format.Kind(kind % uint8(format.CardExpiry+2)) // include the invalid 0 and CardExpiry+1
		c, err := format.Normalize(k, s)
		if err != nil {
			if !errors.Is(err, format.ErrInvalidValue) && !errors.Is(err, format.ErrUnknownKind) {
				t.Fatalf("error %v wraps neither sentinel", err)
			}
			// Error texts are constant; 8 bytes rules out chance overlaps with
			// their wording ("1-64 bytes").
			if in := strings.TrimSpace(s); len(in) >= 8 && strings.Contains(err.Error(), in) {
				t.Fatalf("error %q contains the input", err)
			}
			// Mask skips check digits (tokens have wrong ones); anything else
			// that fails Normalize must get the opaque mask.
			if m := format.Mask(k, s); m != "********" && !strings.Contains(err.Error(), "not match") {
				t.Fatalf("Mask of an unparsable value = %q", m)
			}
			return
		}
		if again, err := format.Normalize(k, c); err != nil || again != c {
			t.Fatalf("Normalize not idempotent: %q -> %q, %v", c, again, err)
		}
		if !format.LooksLikeToken(c) {
			t.Fatalf("canonical value %q fails LooksLikeToken", c)
		}
		seed := [32]byte{kind, byte(len(s))}
		for _, opts := range []format.Options{{}, {ChecksumValid: true}} {
			tok, err := format.Token(k, c, opts, mrand.NewChaCha8(seed))
			if opts.ChecksumValid && errors.Is(err, format.ErrInvalidValue) && strings.Contains(err.Error(), "checksum-valid tokens need") {
				// No checksum-valid token exists for c (no real province,
				// no number libphonenumber accepts, no registry layout);
				// TokenSpace agrees.
				if n, err := format.TokenSpace(k, c, opts); !errors.Is(err, format.ErrInvalidValue) {
					t.Fatalf("TokenSpace(%q) = %v, %v after Token refused", c, n, err)
				}
				continue
			}
			if err != nil {
				// Every value that normalises has enough random positions.
				t.Fatalf("Token(%q): %v", c, err)
			}
			if tok == c || !format.LooksLikeToken(tok) {
				t.Fatalf("Token(%q) = %q", c, tok)
			}
			// No kind keeps a non-ASCII numeral (the kinds that keep digits
			// accept only 0-9).
			if r := nonASCIINumeral(tok); r != 0 {
				t.Fatalf("Token(%q) = %q keeps the numeral %q", c, tok, r)
			}
			if n, err := format.TokenSpace(k, c, opts); err != nil || n.Sign() <= 0 {
				t.Fatalf("TokenSpace(%q) = %v, %v", c, n, err)
			}
			format.Mask(k, tok)
		}
		m := format.Mask(k, c)
		if r := nonASCIINumeral(m); r != 0 {
			t.Fatalf("Mask(%q) = %q keeps the numeral %q", c, m, r)
		}
		// An e-mail whose local part is literally "x***" masks to itself
		// without revealing anything the mask format does not show anyway.
		isStarEmail := k == format.Email && strings.HasPrefix(c[1:], "***@")
		if len(c) >= 8 && m == c && !isStarEmail {
			t.Fatalf("Mask(%q) reveals the full value", c)
		}
		if m2 := format.Mask(k, s); m2 != m {
			t.Fatalf("Mask differs for raw (%q) and canonical (%q) input", m2, m)
		}
	})
}

// FuzzVolatileHolder: whatever parses as a volatile token has exactly the
// documented shape, and the holder it names makes tokens that parse back
// to it.
func FuzzVolatileHolder(f *testing.F) {
	f.Add("tvvol1_abcdefgh_abcdefghijklmnopqrstuvwxyz")
	f.Add("tvvol1_abcdefgh_abcdefghijklmnopqrstuvwxy1")
	f.Add("tvvol1_ABCDEFGH_abcdefghijklmnopqrstuvwxyz")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		h, ok := format.VolatileHolder(s)
		if !ok {
			if format.IsVolatileToken(s) {
				t.Fatalf("IsVolatileToken(%q) without a holder", s)
			}
			return
		}
		if len(s) != 42 || !strings.HasPrefix(s, format.VolatilePrefix) || strings.Trim(s[7:], "abcdefghijklmnopqrstuvwxyz234567_") != "" ||
			s[15] != '_' || !format.ValidHolderID(h) || !format.LooksLikeToken(s) {
			t.Fatalf("VolatileHolder accepted %q (holder %q)", s, h)
		}
		tok, err := format.VolatileToken(h, mrand.NewChaCha8([32]byte{byte(len(s))}))
		if err != nil {
			t.Fatal(err)
		}
		if h2, ok := format.VolatileHolder(tok); !ok || h2 != h {
			t.Fatalf("VolatileToken(%q) = %q parses as %q, %v", h, tok, h2, ok)
		}
	})
}
