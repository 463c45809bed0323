package auth

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/tokenvault/tokenvault/vault/format"
)

// PolicyFile is the YAML policy as written. Example (the full one ships in
// deploy/policy/tokenvault-policy.yaml):
//
//	version: 1
//	identities:
//	  - uri: spiffe://example.org/ns/shop/sa/payments
//	    roles: [payments]
//	  - api_key: support-dashboard
//	    roles: [support-ui]
//	roles:
//	  payments:
//	    - operations: [detokenize]
//	      kinds: [pan]
//	      purposes: [payment]
//	  support-ui:
//	    - operations: [mask]
//	  fulfilment:
//	    - operations: [decrypt]
//	      contexts: [orders.shipping_address]
//	      purposes: [shipping]
type PolicyFile struct {
	Version    int                     `yaml:"version"`
	Identities []IdentityRule          `yaml:"identities"`
	Roles      map[string][]Permission `yaml:"roles"`
	// Purposes declares the legal basis of purposes (purposes.go): a
	// reveal for a purpose declared "consent" needs the subject's consent.
	Purposes map[string]LegalBasis `yaml:"purposes,omitempty"`
}

// IdentityRule grants roles to one identity. Exactly one of URI, DNS and
// APIKey is set; matching is exact (no wildcards: a typo must not widen
// access).
type IdentityRule struct {
	URI    string   `yaml:"uri,omitempty"`     // a client certificate URI SAN, e.g. a SPIFFE id
	DNS    string   `yaml:"dns,omitempty"`     // a client certificate DNS SAN
	APIKey string   `yaml:"api_key,omitempty"` // the name of a configured API key
	Roles  []string `yaml:"roles"`
}

// Permission grants operations, optionally limited to token kinds or blob
// contexts, for purposes. Kinds may only be given for tokenize,
// tokenize-deterministic, detokenize and mask (no kinds: every kind);
// contexts only for encrypt and decrypt (no contexts: every context; ""
// names the empty context). Purposes are required for, and only allowed
// with, reveal operations (detokenize, decrypt, export); "*" means any
// purpose, kind or context.
type Permission struct {
	Operations []Operation `yaml:"operations"`
	Kinds      []string    `yaml:"kinds,omitempty,flow"`
	Contexts   []string    `yaml:"contexts,omitempty,flow"`
	Purposes   []string    `yaml:"purposes,omitempty,flow"`
	// Consumers names the erasure-event consumers a watch-erasures
	// permission may watch as (required with it, allowed only with it).
	Consumers []string `yaml:"consumers,omitempty,flow"`
}

// Wildcard purpose: any purpose (a reveal still needs one).
const AnyPurpose = "*"

// PolicyVersion is the only policy format version.
const PolicyVersion = 1

// maxPolicyBytes bounds a policy file; real ones are a few KiB.
const maxPolicyBytes = 1 << 20

// Policy is a parsed, validated policy. It is immutable and safe for
// concurrent use; a reload builds a new one.
type Policy struct {
	file  PolicyFile
	byURI map[string][]string // identity → role names
	byDNS map[string][]string
	byKey map[string][]string
	roles map[string][]grant
	// consent: purposes declared consent-based; consumers: every
	// consumer a watch-erasures permission names (purposes.go).
	consent   map[string]bool
	consumers []string
}

type grant struct {
	ops      map[Operation]bool
	kinds    map[format.Kind]bool // nil: every kind
	contexts map[string]bool      // nil: every context
	purposes map[string]bool      // nil: no purpose (non-reveal ops)
	any      bool                 // purposes contains "*"
	consumer map[string]bool      // watch-erasures: the consumers allowed
}

// ErrPolicy is wrapped by every policy parse or validation error.
var ErrPolicy = errors.New("invalid policy")

// ParsePolicy parses and validates a policy. Errors name the offending key,
// e.g. `roles.payments[0].kinds[1]: unknown kind "pna"`. Unknown keys are
// errors: a misspelt "purposes" must not silently grant every purpose.
func ParsePolicy(data []byte) (*Policy, error) {
	if len(data) > maxPolicyBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrPolicy, maxPolicyBytes)
	}
	var f PolicyFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty file", ErrPolicy)
		}
		return nil, fmt.Errorf("%w: %v", ErrPolicy, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: more than one YAML document", ErrPolicy)
	}
	return compile(normalize(f))
}

// normalize makes empty lists nil, so that a policy and its re-marshalled
// form compare equal.
func normalize(f PolicyFile) PolicyFile {
	if len(f.Identities) == 0 {
		f.Identities = nil
	}
	if len(f.Roles) == 0 {
		f.Roles = nil
	}
	if len(f.Purposes) == 0 {
		f.Purposes = nil
	}
	for name, perms := range f.Roles {
		for i := range perms {
			if len(perms[i].Kinds) == 0 {
				perms[i].Kinds = nil
			}
			if len(perms[i].Contexts) == 0 {
				perms[i].Contexts = nil
			}
			if len(perms[i].Purposes) == 0 {
				perms[i].Purposes = nil
			}
			if len(perms[i].Consumers) == 0 {
				perms[i].Consumers = nil
			}
		}
		f.Roles[name] = perms
	}
	return f
}

// compile checks the whole policy and reports every problem at once (as
// the configuration does), each naming its key; an entry with a problem
// is checked no further, so that one mistake is not reported twice.
func compile(f PolicyFile) (*Policy, error) {
	var errs []error
	fail := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrPolicy, key, fmt.Sprintf(format, args...)))
	}
	if f.Version != PolicyVersion {
		fail("version", "must be %d", PolicyVersion)
	}
	p := &Policy{file: f, byURI: map[string][]string{}, byDNS: map[string][]string{},
		byKey: map[string][]string{}, roles: map[string][]grant{}}
	for _, name := range slices.Sorted(maps.Keys(f.Roles)) {
		key := "roles." + name
		if err := checkName(name); err != nil {
			fail(key, "%v", err)
			continue
		}
		if len(f.Roles[name]) == 0 {
			fail(key, "no permissions (remove the role instead)")
			continue
		}
		for i, perm := range f.Roles[name] {
			g, err := compileGrant(fmt.Sprintf("%s[%d]", key, i), perm)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			p.roles[name] = append(p.roles[name], g)
		}
	}
	if err := p.compilePurposes(); err != nil {
		errs = append(errs, err)
	}
	seen := map[string]int{}
	for i, r := range f.Identities {
		key := fmt.Sprintf("identities[%d]", i)
		var m map[string][]string
		var id string
		n := 0
		if r.URI != "" {
			n, m, id = n+1, p.byURI, "uri:"+r.URI
		}
		if r.DNS != "" {
			n, m, id = n+1, p.byDNS, "dns:"+r.DNS
		}
		if r.APIKey != "" {
			n, m, id = n+1, p.byKey, "api_key:"+r.APIKey
		}
		if n != 1 {
			fail(key, "set exactly one of uri, dns and api_key")
			continue
		}
		if err := checkName(id); err != nil {
			fail(key, "%v", err)
			continue
		}
		// Certificates with a non-canonical SPIFFE id are refused (see
		// CertIdentity), so such an entry could never match: say so.
		if r.URI != "" && isSPIFFE(r.URI) {
			if err := checkSPIFFEID(r.URI); err != nil {
				fail(key+".uri", "not a canonical SPIFFE id: %v", err)
				continue
			}
		}
		if j, dup := seen[id]; dup {
			fail(key, "same identity as identities[%d] (list all its roles there)", j)
			continue
		}
		seen[id] = i
		if len(r.Roles) == 0 {
			fail(key+".roles", "must name at least one role")
			continue
		}
		for j, role := range r.Roles {
			// A role under roles: whose own entry failed is known all the
			// same: its problem is reported there.
			if _, ok := f.Roles[role]; !ok {
				fail(fmt.Sprintf("%s.roles[%d]", key, j), "unknown role %q (not under roles:)", role)
			}
		}
		// Kept sorted and without duplicates, so that rolesOf can hand out
		// an identity's list as it is (clipped: an append to it could not
		// write into the policy's memory).
		m[strings.SplitN(id, ":", 2)[1]] = slices.Clip(slices.Compact(slices.Sorted(slices.Values(r.Roles))))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

func compileGrant(key string, perm Permission) (grant, error) {
	fail := func(k, format string, args ...any) (grant, error) {
		return grant{}, fmt.Errorf("%w: %s: %s", ErrPolicy, k, fmt.Sprintf(format, args...))
	}
	if len(perm.Operations) == 0 {
		return fail(key+".operations", "must name at least one operation")
	}
	g := grant{ops: map[Operation]bool{}}
	reveal, kindScoped, contextScoped := 0, 0, 0
	for i, op := range perm.Operations {
		if !op.Valid() {
			return fail(fmt.Sprintf("%s.operations[%d]", key, i), "unknown operation %q (one of %s)", op, opList())
		}
		g.ops[op] = true
		if op.Reveal() {
			reveal++
		}
		if op.KindScoped() {
			kindScoped++
		}
		if op.ContextScoped() {
			contextScoped++
		}
	}
	if len(perm.Kinds) > 0 {
		if kindScoped != len(perm.Operations) {
			return fail(key+".kinds", "kinds apply only to tokenize, tokenize-deterministic, detokenize and mask; put other operations in a permission of their own")
		}
		g.kinds = map[format.Kind]bool{}
		for i, name := range perm.Kinds {
			if name == "*" {
				g.kinds = nil
				break
			}
			k, err := format.ParseKind(name)
			if err != nil {
				return fail(fmt.Sprintf("%s.kinds[%d]", key, i), "unknown kind %q", truncate(name))
			}
			g.kinds[k] = true
		}
	}
	if len(perm.Contexts) > 0 {
		// Strict: a context list on, say, detokenize would limit nothing,
		// and its author would believe it did.
		if contextScoped != len(perm.Operations) {
			return fail(key+".contexts", "contexts apply only to encrypt and decrypt; put other operations in a permission of their own")
		}
		g.contexts = map[string]bool{}
		for i, c := range perm.Contexts {
			if err := checkContext(c); err != nil {
				return fail(fmt.Sprintf("%s.contexts[%d]", key, i), "%v", err)
			}
			g.contexts[c] = true
		}
		if g.contexts[AnyContext] {
			g.contexts = nil
		}
	}
	switch {
	case reveal > 0 && reveal != len(perm.Operations):
		return fail(key+".operations", "reveal operations (detokenize, decrypt, export) need purposes and others take none; put them in separate permissions")
	case reveal > 0 && len(perm.Purposes) == 0:
		return fail(key+".purposes", "required for %s (name the purposes, or \"*\" for any)", perm.Operations[0])
	case reveal == 0 && len(perm.Purposes) > 0:
		return fail(key+".purposes", "only reveal operations (detokenize, decrypt, export) carry a purpose")
	}
	if err := compileConsumers(key, perm, &g); err != nil {
		return grant{}, err
	}
	if reveal > 0 {
		g.purposes = map[string]bool{}
		for i, pu := range perm.Purposes {
			if err := checkName(pu); err != nil {
				return fail(fmt.Sprintf("%s.purposes[%d]", key, i), "%v", err)
			}
			g.purposes[pu] = true
			g.any = g.any || pu == AnyPurpose
		}
	}
	return g, nil
}

func opList() string {
	s := make([]string, len(Operations))
	for i, o := range Operations {
		s[i] = string(o)
	}
	return strings.Join(s, ", ")
}

// checkName accepts printable UTF-8 names of at most 256 bytes (the limit
// the vault puts on purposes).
func checkName(s string) error {
	switch {
	case s == "":
		return errors.New("must not be empty")
	case len(s) > 256:
		return errors.New("longer than 256 bytes")
	case !utf8.ValidString(s):
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return errors.New("contains a control character")
		}
	}
	return nil
}

// checkContext accepts what the vault accepts as a blob context (it may be
// empty), so that every context a policy names can be used and no policy
// names one that cannot.
func checkContext(s string) error {
	switch {
	case len(s) > 256:
		return errors.New("longer than 256 bytes")
	case !utf8.ValidString(s):
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return errors.New("contains a control character")
		}
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// File returns the policy as parsed (for printing and round trips).
func (p *Policy) File() PolicyFile { return p.file }

// Marshal renders the policy as YAML that ParsePolicy accepts.
func (f PolicyFile) Marshal() ([]byte, error) { return yaml.Marshal(f) }

// Roles returns the roles granted to id, sorted, without duplicates.
func (p *Policy) Roles(id Identity) []string { return slices.Clone(p.rolesOf(id)) }

// rolesOf is Roles without the copy, for the checks: the result may be the
// policy's own list and must not be changed. Authorize runs once per field
// of a call, so an identity named by one entry (an API key; a certificate
// with one listed name) is answered without allocating.
func (p *Policy) rolesOf(id Identity) []string {
	switch id.Method {
	case MethodAPIKey:
		return p.byKey[id.Name]
	case MethodMTLS: // below
	default:
		return nil
	}
	var only []string // the matching entry's list, if just one matches
	n := 0
	for _, u := range id.URIs {
		if rs, ok := p.byURI[u]; ok {
			only, n = rs, n+1
		}
	}
	for _, d := range id.DNSNames {
		if rs, ok := p.byDNS[d]; ok {
			only, n = rs, n+1
		}
	}
	if n <= 1 {
		return only
	}
	var out []string
	for _, u := range id.URIs {
		out = append(out, p.byURI[u]...)
	}
	for _, d := range id.DNSNames {
		out = append(out, p.byDNS[d]...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// AnyKind asks whether some kind is allowed: the call-level check for
// detokenize and mask, whose kinds are known only per item.
const AnyKind format.Kind = format.KindUnspecified

// AnyContext in a permission's contexts allows every blob context.
const AnyContext = "*"

// Authorize returns nil if id may perform op on tokens of kind (AnyKind:
// on at least one kind) for purpose, else an error wrapping
// ErrPermissionDenied that says what was missing. The purpose is ignored
// for operations that carry none. For encrypt and decrypt it is the
// call-level check (some context is allowed); each item's context is
// checked with AuthorizeContext.
//
// Authorize(id, OpTokenize, AnyKind, "") asks whether id may call Tokenize
// at all, and so is also satisfied by tokenize-deterministic alone: each
// field is then checked for its own kind and mode.
func (p *Policy) Authorize(id Identity, op Operation, kind format.Kind, purpose string) error {
	err := p.authorize(id, op, kind, nil, purpose)
	if err != nil && op == OpTokenize && kind == AnyKind &&
		p.authorize(id, OpTokenizeDeterministic, AnyKind, nil, purpose) == nil {
		return nil
	}
	return err
}

// AuthorizeContext returns nil if id may perform op (encrypt or decrypt)
// on blobs of context blobContext for purpose, else an error wrapping
// ErrPermissionDenied. A blob's context is authenticated (it is the AEAD's
// associated data), so a caller cannot pass a blob off as one of an allowed
// context: naming the wrong context fails to decrypt.
func (p *Policy) AuthorizeContext(id Identity, op Operation, blobContext, purpose string) error {
	return p.authorize(id, op, AnyKind, &blobContext, purpose)
}

// authorize checks op × kind × context (nil: any) × purpose, each against
// one grant: two grants of a role do not combine into an access neither
// gives.
func (p *Policy) authorize(id Identity, op Operation, kind format.Kind, blobContext *string, purpose string) error {
	roles := p.rolesOf(id)
	if len(roles) == 0 {
		return denied(id, "has no role in the policy")
	}
	opOK, purposeOK := false, false
	for _, r := range roles {
		for _, g := range p.roles[r] {
			if !g.ops[op] {
				continue
			}
			opOK = true
			if op.Reveal() && !g.any && !g.purposes[purpose] {
				continue
			}
			purposeOK = true
			kindOK := kind == AnyKind || !op.KindScoped() || g.kinds == nil || g.kinds[kind]
			contextOK := blobContext == nil || !op.ContextScoped() || g.contexts == nil || g.contexts[*blobContext]
			if kindOK && contextOK {
				return nil
			}
		}
	}
	switch {
	case !opOK:
		return denied(id, "may not %s", op)
	case !purposeOK:
		return denied(id, "may not %s for purpose %q", op, truncate(purpose))
	case blobContext != nil:
		return denied(id, "may not %s in context %q", op, truncate(*blobContext))
	default:
		return denied(id, "may not %s tokens of kind %s", op, kind)
	}
}
