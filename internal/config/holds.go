package config

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/tokenvault/tokenvault/vault"
)

// HoldsConfig is the "holds" section: legal hold classes by name, e.g.
//
//	holds:
//	  tax: {keep: 7y, purposes: [legal, tax-audit]}
//
// Data put under a class (Tokenize/Encrypt) survives its subject's
// erasure for keep, revealed meanwhile only for purposes, and is then
// crypto-shredded (README, "Legal holds"). A class must stay configured
// while data is under it: erasure finds a subject's held data by class.
type HoldsConfig map[string]HoldClass

// HoldClass is one hold class.
type HoldClass struct {
	// Keep is how long data is held after its subject's erasure: whole
	// calendar years and days, "7y", "30d" or "1y30d".
	Keep HoldKeep `yaml:"keep"`
	// Purposes are the only purposes held data is revealed for.
	Purposes []string `yaml:"purposes"`
}

// HoldKeep is a hold's length in calendar years and days. 7y is the same
// date seven years on (not 7×365 days): retention laws count years.
type HoldKeep struct {
	Years, Days int
}

// maxKeepYears bounds a hold (as vault.MaxTTL bounds a token's retention).
const maxKeepYears = 100

// ParseHoldKeep parses "<n>y", "<n>d" or "<n>y<m>d" (n, m decimal, no
// sign); the total must be at least one day and at most 100 years.
func ParseHoldKeep(s string) (HoldKeep, error) {
	var k HoldKeep
	bad := errors.New(`keep: want whole years and days such as 7y, 30d or 1y30d`)
	rest := s
	if y, r, ok := strings.Cut(rest, "y"); ok {
		n, err := parseCount(y)
		if err != nil {
			return k, bad
		}
		k.Years, rest = n, r
	}
	if rest != "" {
		d, r, ok := strings.Cut(rest, "d")
		if !ok || r != "" {
			return k, bad
		}
		n, err := parseCount(d)
		if err != nil {
			return k, bad
		}
		k.Days = n
	}
	switch {
	case s == "":
		return k, bad
	case k.Years+k.Days == 0:
		return k, errors.New("keep: must be at least one day")
	case k.Years > maxKeepYears || k.Days > maxKeepYears*366 || k.Years*366+k.Days > maxKeepYears*366:
		return k, fmt.Errorf("keep: longer than %d years", maxKeepYears)
	}
	return k, nil
}

// parseCount is a decimal count without sign or leading zeros.
func parseCount(s string) (int, error) {
	if s == "" || len(s) > 6 || (len(s) > 1 && s[0] == '0') || strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return 0, errors.New("not a count")
	}
	return strconv.Atoi(s)
}

// String is the canonical spelling ParseHoldKeep accepts.
func (k HoldKeep) String() string {
	var b strings.Builder
	if k.Years > 0 {
		b.WriteString(strconv.Itoa(k.Years) + "y")
	}
	if k.Days > 0 || k.Years == 0 {
		b.WriteString(strconv.Itoa(k.Days) + "d")
	}
	return b.String()
}

// UnmarshalYAML reads a keep such as 7y.
func (k *HoldKeep) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return errors.New("keep: want whole years and days such as 7y, 30d or 1y30d")
	}
	v, err := ParseHoldKeep(s)
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// MarshalYAML writes the canonical spelling (nothing for a zero keep,
// which reads back as unset).
func (k HoldKeep) MarshalYAML() (any, error) {
	if k == (HoldKeep{}) {
		return nil, nil
	}
	return k.String(), nil
}

// Validate reports every problem, each naming its key.
func (c HoldsConfig) Validate() error {
	var errs []error
	names := make([]string, 0, len(c))
	for name := range c {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		h := c[name]
		key := "holds." + name
		if !vault.ValidHoldClassName(name) {
			errs = append(errs, fmt.Errorf("%s: a hold class name is 1 to %d of a-z, 0-9, - and _", key, vault.MaxHoldClassBytes))
			continue
		}
		if h.Keep.Years+h.Keep.Days == 0 {
			errs = append(errs, fmt.Errorf("%s.keep: required (whole years and days such as 7y, 30d)", key))
		}
		if len(h.Purposes) == 0 {
			errs = append(errs, fmt.Errorf("%s.purposes: required: the purposes held data may be revealed for (e.g. [legal])", key))
		}
		for i, p := range h.Purposes {
			if trimmed, err := vault.Purpose(p); err != nil || trimmed != p {
				errs = append(errs, fmt.Errorf("%s.purposes[%d]: not a valid purpose (empty, control characters, or white space at either end)", key, i))
			}
		}
	}
	return errors.Join(errs...)
}

// Vault is the domain's form of the section.
func (c HoldsConfig) Vault() map[string]vault.HoldClass {
	if len(c) == 0 {
		return nil
	}
	out := make(map[string]vault.HoldClass, len(c))
	for name, h := range c {
		out[name] = vault.HoldClass{Years: h.Keep.Years, Days: h.Keep.Days, Purposes: slices.Clone(h.Purposes)}
	}
	return out
}
