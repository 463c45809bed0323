package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/internal/config"
)

func TestParseHoldKeep(t *testing.T) {
	for in, want := range map[string]config.HoldKeep{
		"7y": {Years: 7}, "30d": {Days: 30}, "1y30d": {Years: 1, Days: 30}, "100y": {Years: 100},
	} {
		got, err := config.ParseHoldKeep(in)
		if err != nil || got != want || got.String() != in {
			t.Errorf("ParseHoldKeep(%q) = %+v (%q), %v; want %+v", in, got, got.String(), err, want)
		}
	}
	for _, in := range []string{"", "7", "y", "d", "7y7", "0d", "0y0d", "07y", "-1y", "+1y", "7y30", "30d7y", "1.5y", "101y", "36700d", " 7y", "7Y", "7y30dd"} {
		if _, err := config.ParseHoldKeep(in); err == nil {
			t.Errorf("ParseHoldKeep(%q) accepted", in)
		}
	}
}

// TestHoldsConfig: the section loads from YAML and each problem names its
// key.
func TestHoldsConfig(t *testing.T) {
	cfg, err := load(t, "holds:\n  tax: {keep: 7y, purposes: [legal, tax-audit]}\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	tax := cfg.Holds.Vault()["tax"]
	at := time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC)
	if tax.Years != 7 || len(tax.Purposes) != 2 || !tax.Until(at).Equal(time.Date(2031, 3, 1, 12, 0, 0, 0, time.UTC)) {
		t.Fatalf("holds.tax = %+v", tax)
	}
	for in, want := range map[string]string{
		"holds:\n  tax: {keep: 7x, purposes: [legal]}\n":                                   "holds",
		"holds:\n  tax: {keep: 0d, purposes: [legal]}\n":                                   "at least one day",
		"holds:\n  tax: {purposes: [legal]}\n":                                             "holds.tax.keep",
		"holds:\n  tax: {keep: 7y}\n":                                                      "holds.tax.purposes",
		"holds:\n  tax: {keep: 7y, purposes: [\" l\"]}\n":                                  "holds.tax.purposes[0]",
		"holds:\n  Tax: {keep: 7y, purposes: [legal]}\n":                                   "holds.Tax",
		"holds:\n  tax: {keep: [7y], purposes: [legal]}\n":                                 "keep",
		"holds:\n  tax: {keep: 101y, purposes: [legal]}\n":                                 "100 years",
		"holds:\n  tax: {keep: 7y, purposes: [\"\"]}\n":                                    "holds.tax.purposes[0]",
		"holds:\n  \"\": {keep: 7y, purposes: [legal]}\n":                                  "holds.",
		"holds:\n  a-very-long-hold-class-name-over-32-bytes: {keep: 7y, purposes: [l]}\n": "holds.a-very-long",
	} {
		_, err := load(t, in, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want one naming %q", in, err, want)
		}
	}
}

// FuzzParseHoldKeep: the parser never panics, and what it accepts prints
// canonically and parses back to the same keep.
func FuzzParseHoldKeep(f *testing.F) {
	for _, s := range []string{"7y", "30d", "1y30d", "0d", "", "99999y", "1y0d", "007d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := config.ParseHoldKeep(s)
		if err != nil {
			return
		}
		again, err := config.ParseHoldKeep(k.String())
		if err != nil || again != k {
			t.Fatalf("%q: %+v prints as %q, which parses as %+v, %v", s, k, k.String(), again, err)
		}
		if k.Years+k.Days == 0 || k.Years > 100 {
			t.Fatalf("%q: accepted out of range: %+v", s, k)
		}
	})
}
