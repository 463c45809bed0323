package client

import (
	"context"
	"time"

	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// ConsentRecord is one grant or withdrawal of a subject's consent to a
// purpose.
type ConsentRecord struct {
	Purpose string    `json:"purpose"`
	Granted bool      `json:"granted"`
	At      time.Time `json:"at"`
	Source  string    `json:"source"`
}

func consentFromPB(r *pb.ConsentRecord) ConsentRecord {
	return ConsentRecord{Purpose: r.GetPurpose(), Granted: r.GetGranted(), At: r.GetAt().AsTime(), Source: r.GetSource()}
}

// GrantConsent records that subject consented to purpose (one the
// server's policy declares consent-based), given at source (e.g.
// "signup-form"). Reveals of the subject's values for purpose work from
// then on, until WithdrawConsent.
func (c *Client) GrantConsent(ctx context.Context, subject, purpose, source string) (ConsentRecord, error) {
	resp, err := c.rpc.GrantConsent(ctx, &pb.GrantConsentRequest{SubjectId: subject, Purpose: purpose, Source: source})
	if err != nil {
		return ConsentRecord{}, fromStatus(err)
	}
	return consentFromPB(resp.GetRecord()), nil
}

// WithdrawConsent records the withdrawal of subject's consent to
// purpose. Once it returns, reveal items of the subject for purpose fail
// with ErrConsentRequired, on every server of the vault.
func (c *Client) WithdrawConsent(ctx context.Context, subject, purpose, source string) (ConsentRecord, error) {
	resp, err := c.rpc.WithdrawConsent(ctx, &pb.WithdrawConsentRequest{SubjectId: subject, Purpose: purpose, Source: source})
	if err != nil {
		return ConsentRecord{}, fromStatus(err)
	}
	return consentFromPB(resp.GetRecord()), nil
}
