package client

import (
	"context"
	"fmt"
	"time"

	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault/receipt"
)

// Legal holds at erasure: values tokenized or encrypted under a hold
// class (Field.Hold, EncryptHeld) survive their subject's erasure until
// the hold ends, revealed meanwhile only for the class's purposes (other
// purposes: ErrHeld), then are crypto-shredded by the server, which makes
// a second receipt (HoldReceipts).

// ExportedHold is one legal hold of an exported subject.
type ExportedHold struct {
	Class      string    `json:"class"`
	BlobKeyID  string    `json:"blob_key_id"` // hex, as Export.BlobKeyID, for blobs encrypted under the hold
	KeyCreated time.Time `json:"key_created"`
	// Set once the subject was erased: held until HeldUntil.
	ErasedAt  *time.Time `json:"erased_at,omitempty"`
	HeldUntil *time.Time `json:"held_until,omitempty"`
}

// HoldReceipts returns the signed receipts of subject's held data
// shredded when its holds ended, oldest first (none while every hold
// runs). Each one's Verify checks it against the receipt public key; its
// HoldClass names the class and SubjectErasedAt the erasure.
func (c *Client) HoldReceipts(ctx context.Context, subject string) ([]Receipt, error) {
	var resp *pb.GetHoldReceiptsResponse
	err := c.do(ctx, true, func(ctx context.Context) (err error) {
		resp, err = c.rpc.GetHoldReceipts(ctx, &pb.GetHoldReceiptsRequest{SubjectId: subject})
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]Receipt, 0, len(resp.GetReceipts()))
	for _, r := range resp.GetReceipts() {
		rc := Receipt{Receipt: receipt.Receipt{Subject: subject, ErasedAt: r.GetShreddedAt().AsTime(),
			Records: r.GetRecordsErased(), Lookups: r.GetLookupsErased(), HoldClass: r.GetClass(),
			SubjectErasedAt: r.GetSubjectErasedAt().AsTime(), KeyID: r.GetSigningKeyId()}, Signed: r.GetSignedReceipt()}
		if t := r.GetBackupsUndecryptableBy(); t != nil {
			rc.BackupsUndecryptableBy = t.AsTime()
		}
		// As in EraseSubject: the signature comes from the signed file.
		if p, err := receipt.Parse(rc.Signed); err == nil {
			rc.Signature = p.Signature
		}
		out = append(out, rc)
	}
	return out, nil
}

func heldFromPB(held []*pb.HeldData) []receipt.Held {
	if len(held) == 0 {
		return nil
	}
	out := make([]receipt.Held, len(held))
	for i, h := range held {
		out[i] = receipt.Held{Class: h.GetClass(), Until: h.GetUntil().AsTime()}
	}
	return out
}

func exportedHoldsFromPB(holds []*pb.ExportedHold) []ExportedHold {
	if len(holds) == 0 {
		return nil
	}
	out := make([]ExportedHold, len(holds))
	for i, h := range holds {
		out[i] = ExportedHold{Class: h.GetClass(), BlobKeyID: fmt.Sprintf("%x", h.GetBlobKeyId()), KeyCreated: h.GetKeyCreated().AsTime()}
		if t := h.GetErasedAt(); t != nil {
			at := t.AsTime()
			out[i].ErasedAt = &at
		}
		if t := h.GetHeldUntil(); t != nil {
			at := t.AsTime()
			out[i].HeldUntil = &at
		}
	}
	return out
}
