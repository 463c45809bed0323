package auth

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Purposes and their legal basis, and erasure-event consumers.
//
// The policy's purposes map declares, for each purpose it names, the
// legal basis the processing rests on (GDPR art. 6(1)):
//
//	purposes:
//	  marketing: consent
//	  personalisation: consent
//	  payment: contract
//	  fraud: legitimate-interests
//	  tax-audit: legal-obligation
//
// Only "consent" changes what the vault does: a reveal (Detokenize,
// Decrypt) for a consent-based purpose needs the subject's latest consent
// record for that purpose to be a grant. The other bases are recorded
// for the reader of the policy (and a typo in one is an error, so that
// "consnet" does not silently make marketing free). A purpose not in the
// map needs no consent.
//
// A watch-erasures permission names the consumers its identities may
// watch as:
//
//	roles:
//	  crm-sync:
//	    - operations: [watch-erasures]
//	      consumers: [crm]
//
// Every consumer named anywhere in the policy is registered: events are
// kept for it until it acknowledged them (vault/erasures.go).

// LegalBasis is the legal basis of a purpose.
type LegalBasis string

// Legal bases (GDPR art. 6(1)(a)–(f)).
const (
	BasisConsent             LegalBasis = "consent"
	BasisContract            LegalBasis = "contract"
	BasisLegalObligation     LegalBasis = "legal-obligation"
	BasisVitalInterests      LegalBasis = "vital-interests"
	BasisPublicTask          LegalBasis = "public-task"
	BasisLegitimateInterests LegalBasis = "legitimate-interests"
)

// LegalBases lists every legal basis, in the order of art. 6(1).
var LegalBases = []LegalBasis{BasisConsent, BasisContract, BasisLegalObligation,
	BasisVitalInterests, BasisPublicTask, BasisLegitimateInterests}

// MaxConsumerBytes bounds a consumer name (it is a store key).
const MaxConsumerBytes = 128

func (p *Policy) compilePurposes() error {
	p.consent = map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(p.file.Purposes)) {
		key := "purposes." + name
		if err := checkName(name); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrPolicy, truncate(key), err)
		}
		if name == AnyPurpose {
			return fmt.Errorf("%w: %s: name the purpose (\"*\" is not a purpose)", ErrPolicy, key)
		}
		if strings.TrimSpace(name) != name {
			return fmt.Errorf("%w: %s: white space at either end (reveals trim their purpose, so it would never match)", ErrPolicy, truncate(key))
		}
		b := p.file.Purposes[name]
		if !slices.Contains(LegalBases, b) {
			return fmt.Errorf("%w: %s: unknown legal basis %q (one of %s)", ErrPolicy, truncate(key), truncate(string(b)), basisList())
		}
		if b == BasisConsent {
			p.consent[name] = true
		}
	}
	seen := map[string]bool{}
	for _, gs := range p.roles {
		for _, g := range gs {
			for c := range g.consumer {
				if !seen[c] {
					seen[c] = true
					p.consumers = append(p.consumers, c)
				}
			}
		}
	}
	slices.Sort(p.consumers)
	return nil
}

func compileConsumers(key string, perm Permission, g *grant) error {
	watch := g.ops[OpWatchErasures]
	switch {
	case watch && len(perm.Operations) != 1:
		return fmt.Errorf("%w: %s.operations: watch-erasures takes consumers and no other operation does; put it in a permission of its own", ErrPolicy, key)
	case watch && len(perm.Consumers) == 0:
		return fmt.Errorf("%w: %s.consumers: required for watch-erasures (the consumer names it may watch as)", ErrPolicy, key)
	case !watch && len(perm.Consumers) > 0:
		return fmt.Errorf("%w: %s.consumers: only watch-erasures takes consumers", ErrPolicy, key)
	}
	if !watch {
		return nil
	}
	g.consumer = map[string]bool{}
	for i, c := range perm.Consumers {
		if err := CheckConsumer(c); err != nil {
			return fmt.Errorf("%w: %s.consumers[%d]: %v", ErrPolicy, key, i, err)
		}
		g.consumer[c] = true
	}
	return nil
}

// CheckConsumer accepts consumer names: 1 to 128 bytes of letters,
// digits, '-', '_' and '.' (they are store keys and log fields).
func CheckConsumer(c string) error {
	if c == "" || len(c) > MaxConsumerBytes {
		return fmt.Errorf("must be 1 to %d bytes", MaxConsumerBytes)
	}
	for _, r := range c {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("may contain only letters, digits, '-', '_' and '.'")
		}
	}
	return nil
}

func basisList() string {
	s := make([]string, len(LegalBases))
	for i, b := range LegalBases {
		s[i] = string(b)
	}
	return strings.Join(s, ", ")
}

// ConsentRequired reports whether the policy declares purpose
// consent-based.
func (p *Policy) ConsentRequired(purpose string) bool { return p.consent[purpose] }

// Consumers lists every erasure-event consumer the policy names, sorted.
func (p *Policy) Consumers() []string { return slices.Clone(p.consumers) }

// AuthorizeConsumer returns nil if id may watch erasure events as
// consumer, else an error wrapping ErrPermissionDenied.
func (p *Policy) AuthorizeConsumer(id Identity, consumer string) error {
	for _, r := range p.rolesOf(id) {
		for _, g := range p.roles[r] {
			if g.consumer[consumer] {
				return nil
			}
		}
	}
	return denied(id, "may not watch erasures as consumer %q", truncate(consumer))
}

// AllowConsumer is Policy.AuthorizeConsumer for this call's caller; in
// dev mode every consumer name is allowed.
func (a Access) AllowConsumer(consumer string) error {
	switch {
	case a.dev:
		return nil
	case a.policy == nil:
		return denied(a.ID, "has no access (no policy)")
	}
	return a.policy.AuthorizeConsumer(a.ID, consumer)
}
