package format_test

import (
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/tokenvault/tokenvault/vault/format"
)

func TestCardKinds(t *testing.T) {
	for _, c := range []struct {
		kind     format.Kind
		in, want string // want "" = invalid
		mask     string
	}{
		{format.CardSecurityCode, "123", "123", "***"},
		{format.CardSecurityCode, " 4321\n", "4321", "***"},
		{format.CardSecurityCode, "12", "", ""},
		{format.CardSecurityCode, "12345", "", ""},
		{format.CardSecurityCode, "12a", "", ""},
		{format.CardSecurityCode, "１２３", "", ""}, // full-width digits
		{format.CardSecurityCode, "1 23", "", ""},
		{format.CardExpiry, "09/27", "09/27", "09/27"},
		{format.CardExpiry, "9/27", "", ""},
		{format.CardExpiry, "09 / 2031", "09/31", "09/31"},
		{format.CardExpiry, "12-30", "12/30", "12/30"},
		{format.CardExpiry, "00/27", "", ""},
		{format.CardExpiry, "13/27", "", ""},
		{format.CardExpiry, "0927", "", ""},
		{format.CardExpiry, "09/1999", "", ""},
		{format.CardExpiry, "09/2a", "", ""},
	} {
		got, err := format.Normalize(c.kind, c.in)
		if c.want == "" {
			if !errors.Is(err, format.ErrInvalidValue) {
				t.Errorf("Normalize(%v, %q) = %q, %v; want invalid", c.kind, c.in, got, err)
			} else if strings.Contains(err.Error(), strings.TrimSpace(c.in)) {
				t.Errorf("error %q contains the value", err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Normalize(%v, %q) = %q, %v; want %q", c.kind, c.in, got, err, c.want)
		}
		if m := format.Mask(c.kind, got); m != c.mask {
			t.Errorf("Mask(%v, %q) = %q, want %q", c.kind, got, m, c.mask)
		}
	}
}

func TestVolatileTokenShape(t *testing.T) {
	holder, err := format.NewHolderID(rand.Reader)
	if err != nil || !format.ValidHolderID(holder) {
		t.Fatalf("NewHolderID = %q, %v", holder, err)
	}
	tok, err := format.VolatileToken(holder, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := format.VolatileHolder(tok); !ok || h != holder || !strings.HasPrefix(tok, format.VolatilePrefix) || !format.LooksLikeToken(tok) {
		t.Fatalf("VolatileHolder(%q) = %q, %v; want %q", tok, h, ok, holder)
	}
	for _, bad := range []string{
		"", format.VolatilePrefix, tok[:len(tok)-1], tok + "a", strings.ToUpper(tok),
		strings.Replace(tok, "_", "-", 2), tok[:len(tok)-1] + "1", tok[:len(tok)-1] + "_",
	} {
		if format.IsVolatileToken(bad) {
			t.Errorf("IsVolatileToken(%q) = true", bad)
		}
	}
	if _, err := format.VolatileToken("ABCDEFGH", rand.Reader); err == nil {
		t.Error("VolatileToken accepted an invalid holder id")
	}
}
