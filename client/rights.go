package client

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"time"

	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault/receipt"
)

// BackupAdmin returns a stub for the BackupAdmin service (backups and the
// erasure ledger) on the same connection.
func (c *Client) BackupAdmin() pb.BackupAdminClient { return pb.NewBackupAdminClient(c.conn) }

// Export is everything the vault holds for one subject.
type Export struct {
	Subject string `json:"subject_id"`
	// BlobKeyID is the subject's key id (hex). Field-encryption blobs are
	// stored in your own databases, not in the vault; each of this
	// subject's blobs carries this key id at offset 2 (16 bytes, after the version and length bytes).
	BlobKeyID string `json:"blob_key_id"`
	BlobsNote string `json:"blobs_note"`
	// KeyCreated is when the subject's key was made; zero (and left out
	// of the JSON) after its erasure, when only held data is exported.
	KeyCreated      time.Time       `json:"key_created,omitzero"`
	RestrictedSince *time.Time      `json:"restricted_since,omitempty"`
	Tokens          []ExportedToken `json:"tokens"`
	// ConsentHistory is the subject's consent record, oldest first.
	ConsentHistory []ConsentRecord `json:"consent_history"`
	// Holds are the subject's legal holds; after its erasure only held
	// data is exported (BlobKeyID is then empty).
	Holds []ExportedHold `json:"holds,omitempty"`
}

// ExportedToken is one token and its value.
type ExportedToken struct {
	Kind          string     `json:"kind"`
	Token         string     `json:"token"`
	Value         string     `json:"value"`
	Created       time.Time  `json:"created"`
	Expires       *time.Time `json:"expires,omitempty"`
	Deterministic bool       `json:"deterministic"`
	Hold          string     `json:"hold,omitempty"`
}

// BlobsNote explains where blobs are, in every export.
const BlobsNote = "Field-encryption blobs of this subject are stored in the databases of the applications that " +
	"encrypted them, not in the vault; each one carries blob_key_id (hex) at offset 2 of the blob (16 bytes, after its version and length bytes)."

// ExportSubject collects the subject's export stream. purpose says why
// (e.g. "dsar"); it is required, as for every reveal.
func (c *Client) ExportSubject(ctx context.Context, subject, purpose string) (Export, error) {
	stream, err := c.rpc.ExportSubject(ctx, &pb.ExportSubjectRequest{SubjectId: subject, Purpose: purpose})
	if err != nil {
		return Export{}, fromStatus(err)
	}
	ex := Export{Tokens: []ExportedToken{}, BlobsNote: BlobsNote}
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			if ex.Subject == "" {
				return ex, errors.New("tokenvault client: the export stream ended without data")
			}
			return ex, nil
		}
		if err != nil {
			return Export{}, fromStatus(err)
		}
		ex.Add(m)
	}
}

// Add adds one message of the ExportSubject stream to ex. (The privacy
// console, which gets the messages in-process, builds its download with
// it, so that the file is the same as this client's.)
func (ex *Export) Add(m *pb.ExportSubjectResponse) {
	ex.Subject, ex.BlobKeyID = m.GetSubjectId(), fmt.Sprintf("%x", m.GetBlobKeyId())
	if m.GetKeyCreated() != nil {
		ex.KeyCreated = m.GetKeyCreated().AsTime()
	}
	ex.Holds = exportedHoldsFromPB(m.GetHolds())
	ex.ConsentHistory = make([]ConsentRecord, len(m.GetConsentHistory())) // the same in every message
	for i, r := range m.GetConsentHistory() {
		ex.ConsentHistory[i] = consentFromPB(r)
	}
	if t := m.GetRestrictedSince(); t != nil {
		at := t.AsTime()
		ex.RestrictedSince = &at
	}
	for _, t := range m.GetTokens() {
		et := ExportedToken{Kind: KindName(t.GetKind()), Token: t.GetToken(), Value: t.GetValue(),
			Created: t.GetCreated().AsTime(), Deterministic: t.GetDeterministic(), Hold: t.GetHold()}
		if e := t.GetExpires(); e != nil {
			at := e.AsTime()
			et.Expires = &at
		}
		ex.Tokens = append(ex.Tokens, et)
	}
}

// Rectify replaces the value behind token; it reports whether the token
// is the deterministic token of the new value.
func (c *Client) Rectify(ctx context.Context, token, value string) (deterministic bool, err error) {
	resp, err := c.rpc.RectifyToken(ctx, &pb.RectifyTokenRequest{Token: token, Value: value})
	return resp.GetDeterministic(), fromStatus(err)
}

// Restrict restricts processing of subject and returns since when.
func (c *Client) Restrict(ctx context.Context, subject string) (time.Time, error) {
	resp, err := c.rpc.RestrictSubject(ctx, &pb.RestrictSubjectRequest{SubjectId: subject})
	if err != nil {
		return time.Time{}, fromStatus(err)
	}
	return resp.GetRestrictedSince().AsTime(), nil
}

// Unrestrict lifts a restriction.
func (c *Client) Unrestrict(ctx context.Context, subject string) error {
	_, err := c.rpc.UnrestrictSubject(ctx, &pb.UnrestrictSubjectRequest{SubjectId: subject})
	return fromStatus(err)
}

// ReceiptPublicKey returns the key that verifies erasure receipts.
func (c *Client) ReceiptPublicKey(ctx context.Context) (ed25519.PublicKey, error) {
	resp, err := c.rpc.GetReceiptPublicKey(ctx, &pb.GetReceiptPublicKeyRequest{})
	if err != nil {
		return nil, fromStatus(err)
	}
	return receipt.ParsePublicKey([]byte(resp.GetPublicKeyPem()))
}
