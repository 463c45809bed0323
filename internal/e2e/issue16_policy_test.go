package e2e

import (
	"errors"
	"os"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/client"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// issue16Policy: consent-based marketing, and two consumers watched by
// two identities.
const issue16Policy = `version: 1
purposes:
  marketing: consent
  payment: contract
identities:
  - uri: spiffe://test.example/setup
    roles: [setup]
  - uri: spiffe://test.example/payments
    roles: [payments]
  - dns: privacy-ops.test.example
    roles: [privacy-ops]
  - uri: spiffe://test.example/fulfilment
    roles: [crm-sync]
  - uri: spiffe://test.example/support-ui
    roles: [billing-sync]
roles:
  setup:
    - operations: [tokenize]
  payments:
    - operations: [detokenize]
      purposes: [payment, marketing]
  privacy-ops:
    - operations: [erase, consent]
  crm-sync:
    - operations: [watch-erasures]
      consumers: [crm]
  billing-sync:
    - operations: [watch-erasures]
      consumers: [billing]
`

// TestIssue16UnderPolicy: the policy declares consent purposes and the
// consumers; consumers it names are registered at start (events are kept
// for them before they ever connect); an identity watches and
// acknowledges only as its own consumers.
func TestIssue16UnderPolicy(t *testing.T) {
	s := newSecureEnv(t)
	if err := os.WriteFile(s.policyFile, []byte(issue16Policy), 0o600); err != nil {
		t.Fatal(err)
	}
	s.start(t)
	cx := ctx(t)
	toks, err := s.as(t, "setup").Tokenize(cx, "policy-subj-1", client.Field{Kind: "email", Value: "p1@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	pay := s.as(t, "payments")
	if r, _ := pay.Detokenize(cx, "marketing", toks...); !errors.Is(r[0].Err, client.ErrConsentRequired) {
		t.Fatalf("marketing without consent: %v", r[0].Err)
	}
	if _, err := pay.GrantConsent(cx, "policy-subj-1", "marketing", "x"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("consent without the consent operation: %v", err)
	}
	if _, err := s.as(t, "privacy-ops").GrantConsent(cx, "policy-subj-1", "marketing", "signup"); err != nil {
		t.Fatal(err)
	}
	if r, _ := pay.Detokenize(cx, "marketing", toks...); r[0].Err != nil {
		t.Fatalf("marketing with consent: %v", r[0].Err)
	}
	if _, err := s.as(t, "privacy-ops").EraseSubject(cx, "policy-subj-1"); err != nil {
		t.Fatal(err)
	}
	// Wrong consumer, or no permission at all: refused, naming the field.
	crm := s.as(t, "fulfilment")
	for _, tc := range []struct {
		c        *client.Client
		consumer string
	}{{crm, "billing"}, {s.as(t, "nobody"), "crm"}} {
		err := tc.c.WatchErasures(cx, tc.consumer, func(client.ErasureEvent) error { return nil })
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("watch as %s: %v", tc.consumer, err)
		}
	}
	if _, err := crm.Raw().AckErasures(cx, &pb.AckErasuresRequest{Consumer: "billing", Sequence: 1}); status.Code(err) != codes.PermissionDenied ||
		!strings.Contains(status.Convert(err).Message(), "consumer") {
		t.Fatalf("ack as another identity's consumer: %v", err)
	}
	// Both consumers connect only now and get the erasure; billing, which
	// has never connected, still gets it after crm acknowledged it (it was
	// registered at start, so the event was kept for it).
	for _, w := range [][2]string{{"fulfilment", "crm"}, {"support-ui", "billing"}} {
		if evs := watchN(t, s.as(t, w[0]), w[1], 1); evs[0].Subject != "policy-subj-1" || evs[0].Sequence != 1 {
			t.Fatalf("%s: %+v", w[1], evs)
		}
	}
}
