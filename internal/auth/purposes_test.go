package auth_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/tokenvault/tokenvault/internal/auth"
)

const purposesPolicy = `version: 1
purposes:
  marketing: consent
  personalisation: consent
  payment: contract
roles:
  crm:
    - operations: [watch-erasures]
      consumers: [crm, crm-eu]
  consent-ui:
    - operations: [consent]
identities:
  - api_key: crm
    roles: [crm]
  - api_key: ui
    roles: [consent-ui]
`

func TestPolicyPurposes(t *testing.T) {
	p, err := auth.ParsePolicy([]byte(purposesPolicy))
	if err != nil {
		t.Fatal(err)
	}
	for purpose, want := range map[string]bool{"marketing": true, "personalisation": true, "payment": false, "unlisted": false} {
		if got := p.ConsentRequired(purpose); got != want {
			t.Errorf("ConsentRequired(%q) = %v", purpose, got)
		}
	}
	if c := p.Consumers(); strings.Join(c, ",") != "crm,crm-eu" {
		t.Fatalf("Consumers() = %v", c)
	}
	crm := auth.Identity{Method: auth.MethodAPIKey, Name: "crm"}
	ui := auth.Identity{Method: auth.MethodAPIKey, Name: "ui"}
	if err := p.AuthorizeConsumer(crm, "crm-eu"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id       auth.Identity
		consumer string
	}{{crm, "billing"}, {ui, "crm"}} {
		if err := p.AuthorizeConsumer(tc.id, tc.consumer); !errors.Is(err, auth.ErrPermissionDenied) {
			t.Errorf("%v as %s: %v", tc.id, tc.consumer, err)
		}
	}
	if err := p.Authorize(ui, auth.OpConsent, auth.AnyKind, "marketing"); err != nil {
		t.Fatal(err)
	}
}

func TestPolicyPurposesRefused(t *testing.T) {
	for _, tc := range []struct{ yaml, key string }{
		{"version: 1\npurposes: {marketing: consnet}\n", "purposes.marketing: unknown legal basis"},
		{"version: 1\npurposes: {\"*\": consent}\n", "purposes.*"},
		{"version: 1\npurposes: {\" marketing\": consent}\n", "white space"},
		{"version: 1\nroles: {r: [{operations: [watch-erasures]}]}\n", "roles.r[0].consumers: required"},
		{"version: 1\nroles: {r: [{operations: [mask], consumers: [a]}]}\n", "only watch-erasures takes consumers"},
		{"version: 1\nroles: {r: [{operations: [watch-erasures, mask], consumers: [a]}]}\n", "a permission of its own"},
		{"version: 1\nroles: {r: [{operations: [watch-erasures], consumers: [\"a b\"]}]}\n", "consumers[0]"},
	} {
		_, err := auth.ParsePolicy([]byte(tc.yaml))
		if !errors.Is(err, auth.ErrPolicy) || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%q: %v, want an error naming %q", tc.yaml, err, tc.key)
		}
	}
}
