package e2e

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/internal/audit"
	"github.com/tokenvault/tokenvault/internal/config"
)

// TestConsent is the acceptance test for consent per purpose:
// granted → a reveal for marketing works; withdrawn → refused (per item,
// FAILED_PRECONDITION naming the purpose, audited), payment still works;
// the export shows the history.
//
// On badger and on PostgreSQL (withEachStore).
func TestConsent(t *testing.T) { withEachStore(t, testConsent) }

func testConsent(t *testing.T, e *env) {
	srv, c := e.startWith(t, func(cfg *config.Config) { cfg.Consent.Purposes = []string{"marketing", "personalisation"} })
	cx := ctx(t)
	toks, err := c.Tokenize(cx, "cust-consent-1", client.Field{Kind: "email", Value: "ada@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := c.Encrypt(cx, "cust-consent-1", "crm.notes", []byte("likes tea"))
	if err != nil {
		t.Fatal(err)
	}
	reveal := func(purpose string) (tok, blob error) {
		t.Helper()
		r, err := c.Detokenize(cx, purpose, toks...)
		if err != nil {
			t.Fatal(err)
		}
		d, err := c.Decrypt(cx, purpose, "crm.notes", blobs...)
		if err != nil {
			t.Fatal(err)
		}
		return r[0].Err, d[0].Err
	}
	if a, b := reveal("marketing"); !errors.Is(a, client.ErrConsentRequired) || !errors.Is(b, client.ErrConsentRequired) {
		t.Fatalf("marketing before any consent: %v / %v", a, b)
	}
	if _, err := c.GrantConsent(cx, "cust-consent-1", "marketing", "signup-form"); err != nil {
		t.Fatal(err)
	}
	if a, b := reveal("marketing"); a != nil || b != nil {
		t.Fatalf("marketing with consent: %v / %v", a, b)
	}
	if _, err := c.WithdrawConsent(cx, "cust-consent-1", "marketing", "unsubscribe-link"); err != nil {
		t.Fatal(err)
	}
	a, b := reveal("marketing")
	var ce *client.Error
	if !errors.As(a, &ce) || ce.Code.String() != "FailedPrecondition" || !strings.Contains(ce.Message, `"marketing"`) || !errors.Is(b, client.ErrConsentRequired) {
		t.Fatalf("marketing after the withdrawal: %v / %v", a, b)
	}
	if a, b := reveal("payment"); a != nil || b != nil {
		t.Fatalf("payment (not consent-based): %v / %v", a, b)
	}
	if _, err := c.GrantConsent(cx, "cust-consent-1", "payment", "form"); !errors.Is(err, client.ErrInvalidArgument) {
		t.Fatalf("consent to a purpose that needs none: %v", err)
	}
	ex, err := c.ExportSubject(cx, "cust-consent-1", "dsar")
	if err != nil {
		t.Fatal(err)
	}
	h := ex.ConsentHistory
	if len(h) != 2 || !h[0].Granted || h[0].Source != "signup-form" || h[1].Granted || h[1].Source != "unsubscribe-link" || h[1].Purpose != "marketing" {
		t.Fatalf("exported consent history %+v", h)
	}
	// Erased with the subject: a new key starts without consent.
	if _, err := c.EraseSubject(cx, "cust-consent-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GrantConsent(cx, "cust-consent-1", "personalisation", "app"); err != nil {
		t.Fatal(err)
	}
	ex, err = c.ExportSubject(cx, "cust-consent-1", "dsar")
	if err != nil || len(ex.ConsentHistory) != 1 {
		t.Fatalf("history after the erasure: %+v, %v", ex.ConsentHistory, err)
	}
	// The refusals are in the audit log: reveals for marketing with an
	// item refused FailedPrecondition.
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	logData, err := os.ReadFile(srv.AuditLogPath())
	if err != nil {
		t.Fatal(err)
	}
	refused := map[string]bool{}
	for _, ln := range bytes.SplitAfter(bytes.TrimSuffix(logData, []byte("\n")), []byte("\n")) {
		en, err := audit.ParseLine(ln)
		if err != nil {
			t.Fatal(err)
		}
		en = en.Expanded() // full method names and per-item outcomes, as the guard made them
		for _, it := range en.Items {
			if en.Purpose == "marketing" && it.Outcome == "FailedPrecondition" {
				refused[en.Method] = true
			}
		}
	}
	if !refused["/tokenvault.v1.TokenVault/Detokenize"] || !refused["/tokenvault.v1.TokenVault/Decrypt"] {
		t.Fatalf("consent refusals audited for %v, want Detokenize and Decrypt", refused)
	}
}
