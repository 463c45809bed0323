package auth_test

import (
	"os"
	"reflect"
	"testing"

	"github.com/tokenvault/tokenvault/internal/auth"
)

// FuzzParsePolicy: the parser never panics, and an accepted policy
// survives marshal → parse unchanged.
func FuzzParsePolicy(f *testing.F) {
	if b, err := os.ReadFile("../../deploy/policy/tokenvault-policy.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("version: 1\nroles:\n  r:\n    - operations: [detokenize]\n      kinds: [\"*\"]\n      purposes: [\"*\"]\nidentities:\n  - dns: a\n    roles: [r]\n"))
	f.Add([]byte("version: 1\nroles: {a: [{operations: [admin]}]}\n"))
	f.Add([]byte("version: 1\nroles:\n  r:\n    - operations: [tokenize-deterministic]\n      kinds: [email, ssn]\n    - operations: [encrypt]\n      contexts: [\"\", orders.address]\n    - operations: [decrypt]\n      contexts: [\"*\"]\n      purposes: [x]\n"))
	f.Add([]byte("version: 1\nroles:\n  r:\n    - operations: [decrypt]\n      contexts: []\n      purposes: [x]\n"))
	f.Add([]byte("version: 1\npurposes: {marketing: consent, payment: contract}\nroles: {w: [{operations: [watch-erasures], consumers: [crm]}], c: [{operations: [consent]}]}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := auth.ParsePolicy(b)
		if err != nil {
			return
		}
		out, err := p.File().Marshal()
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		q, err := auth.ParsePolicy(out)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", out, err)
		}
		if !reflect.DeepEqual(p.File(), q.File()) {
			t.Fatalf("round trip changed the policy:\n%+v\n%+v", p.File(), q.File())
		}
	})
}
