// Package client is a small Go client for tokenvault over the generated
// gRPC stubs ([tokenvaultv1.TokenVaultClient]).
//
// Batch calls return one result per input, in order; per-item and
// call-level failures are [*Error]s that match the package's sentinel
// errors ([ErrNotFound], [ErrErased], ...) with errors.Is and work with
// status.Code. Calls that are safe to repeat are retried on UNAVAILABLE
// ([WithRetry]); concurrent single-item calls can be batched
// ([WithBatching]).
package client

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tokenvault/tokenvault/errinfo"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault/format"
	"github.com/tokenvault/tokenvault/vault/receipt"
)

// Client talks to one tokenvault server. It is safe for concurrent use;
// share one per process.
type Client struct {
	conn *grpc.ClientConn
	rpc  pb.TokenVaultClient
	s    settings

	detokenizeB *coalescer[string, Result]
	maskB       *coalescer[string, Result]
	tokenizeB   *coalescer[Field, string]
}

// Dial connects to addr (the connection is made lazily, on first use).
// Without WithTLS (or other transport credentials in WithDialOptions) the
// connection is plaintext, which the server allows only on loopback.
// Identify the caller with a client certificate in WithTLS, or with
// WithAPIKey.
func Dial(addr string, opts ...Option) (*Client, error) {
	s := defaults()
	for _, o := range opts {
		o.apply(&s)
	}
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	dial = append(dial, s.dial...) // later options win: credentials given here replace insecure
	dial = append(dial, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(32<<20)))
	conn, err := grpc.NewClient(addr, dial...)
	if err != nil {
		return nil, fmt.Errorf("tokenvault client: %w", err)
	}
	c := &Client{conn: conn, rpc: pb.NewTokenVaultClient(conn), s: s}
	c.initBatching()
	return c, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Raw returns the generated stub, for calls this package does not wrap.
func (c *Client) Raw() pb.TokenVaultClient { return c.rpc }

// KeyAdmin returns a stub for the KeyAdmin service (KEK rotation) on the
// same connection.
func (c *Client) KeyAdmin() pb.KeyAdminClient { return pb.NewKeyAdminClient(c.conn) }

// Field is one value to tokenize.
type Field struct {
	Kind  string // "pan", "email", ... (see vault/format)
	Value string
	// Deterministic: the same subject, kind and value give the same token.
	Deterministic bool
	// ChecksumValid: tokens that pass their kind's validators (Luhn, MOD 11-2 and region codes, MOD 97 and national check digits, valid phone numbers; see vault/format/FORMATS.md).
	ChecksumValid bool
	// TTL is the token's retention (0: the server's default for the kind).
	TTL time.Duration
	// Hold puts the value under a legal hold class of the server's
	// configuration: it survives the subject's erasure until the hold
	// ends (see EraseSubject). Every field of one call must have the same.
	Hold string
}

// Kind parses a kind name ("pan", "cn-resident-id", ...).
func Kind(name string) (pb.Kind, error) {
	k, err := format.ParseKind(name)
	if err != nil {
		return pb.Kind_KIND_UNSPECIFIED, err
	}
	return pb.Kind(k), nil
}

// KindName is the inverse of Kind.
func KindName(k pb.Kind) string { return format.Kind(k).String() }

// Tokenize tokenizes fields of one subject and returns tokens in order.
func (c *Client) Tokenize(ctx context.Context, subject string, fields ...Field) ([]string, error) {
	req := &pb.TokenizeRequest{SubjectId: subject, Fields: make([]*pb.Field, len(fields))}
	for i, f := range fields {
		k, err := Kind(f.Kind)
		if err != nil {
			return nil, &Error{Code: codes.InvalidArgument, Reason: errinfo.InvalidArgument, Field: fmt.Sprintf("fields[%d].kind", i),
				Message: fmt.Sprintf("fields[%d].kind: %v", i, err)}
		}
		mode := pb.TokenMode_TOKEN_MODE_RANDOM
		if f.Deterministic {
			mode = pb.TokenMode_TOKEN_MODE_DETERMINISTIC
		}
		req.Fields[i] = &pb.Field{Kind: k, Value: f.Value,
			Options: &pb.TokenizeOptions{Mode: mode, ChecksumValid: f.ChecksumValid, Hold: f.Hold}}
		if f.TTL != 0 {
			req.Fields[i].Options.Ttl = durationpb.New(f.TTL)
		}
	}
	// Safe to retry only when every field is deterministic: a repeated
	// random-mode request could store a second token for the same value.
	safe := true
	for _, f := range fields {
		safe = safe && f.Deterministic
	}
	var resp *pb.TokenizeResponse
	err := c.do(ctx, safe, func(ctx context.Context) (err error) {
		resp, err = c.rpc.Tokenize(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.GetTokens(), nil
}

// Result is the outcome for one token or blob.
type Result struct {
	Value string // the value, masked value, or decrypted plaintext
	Kind  string // for tokens
	// Subject is the blob's subject (Decrypt only).
	Subject string
	Err     error // a gRPC status error, nil on success
}

func itemErr(s *pb.ItemStatus) error {
	if s.GetCode() == int32(codes.OK) {
		return nil
	}
	return &Error{Code: codes.Code(s.GetCode()), Reason: s.GetReason(), Message: s.GetMessage()}
}

// Detokenize reveals the values behind tokens for purpose.
func (c *Client) Detokenize(ctx context.Context, purpose string, tokens ...string) ([]Result, error) {
	var resp *pb.DetokenizeResponse
	err := c.do(ctx, true, func(ctx context.Context) (err error) {
		resp, err = c.rpc.Detokenize(ctx, &pb.DetokenizeRequest{Tokens: tokens, Purpose: purpose})
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]Result, len(resp.GetResults()))
	for i, r := range resp.GetResults() {
		out[i] = Result{Value: r.GetValue(), Kind: KindName(r.GetKind()), Err: itemErr(r.GetStatus())}
	}
	return out, nil
}

// Mask returns display masks for tokens.
func (c *Client) Mask(ctx context.Context, tokens ...string) ([]Result, error) {
	var resp *pb.MaskResponse
	err := c.do(ctx, true, func(ctx context.Context) (err error) {
		resp, err = c.rpc.Mask(ctx, &pb.MaskRequest{Tokens: tokens})
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]Result, len(resp.GetResults()))
	for i, r := range resp.GetResults() {
		out[i] = Result{Value: r.GetMasked(), Kind: KindName(r.GetKind()), Err: itemErr(r.GetStatus())}
	}
	return out, nil
}

// Encrypt encrypts plaintexts of one subject for storage under a context
// (e.g. "orders.shipping_address"); decrypt with the same context.
func (c *Client) Encrypt(ctx context.Context, subject, blobContext string, plaintexts ...[]byte) ([][]byte, error) {
	return c.EncryptHeld(ctx, subject, blobContext, "", plaintexts...)
}

// EncryptHeld is Encrypt with the blobs under legal hold class hold ("":
// none), as Field.Hold.
func (c *Client) EncryptHeld(ctx context.Context, subject, blobContext, hold string, plaintexts ...[]byte) ([][]byte, error) {
	req := &pb.EncryptRequest{SubjectId: subject, Items: make([]*pb.EncryptItem, len(plaintexts))}
	for i, p := range plaintexts {
		req.Items[i] = &pb.EncryptItem{Plaintext: p, Context: blobContext, Hold: hold}
	}
	var resp *pb.EncryptResponse
	err := c.do(ctx, false, func(ctx context.Context) (err error) {
		resp, err = c.rpc.Encrypt(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.GetBlobs(), nil
}

// Decrypt decrypts blobs made under context, for purpose.
func (c *Client) Decrypt(ctx context.Context, purpose, blobContext string, blobs ...[]byte) ([]Result, error) {
	req := &pb.DecryptRequest{Purpose: purpose, Items: make([]*pb.DecryptItem, len(blobs))}
	for i, b := range blobs {
		req.Items[i] = &pb.DecryptItem{Blob: b, Context: blobContext}
	}
	var resp *pb.DecryptResponse
	err := c.do(ctx, true, func(ctx context.Context) (err error) {
		resp, err = c.rpc.Decrypt(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]Result, len(resp.GetResults()))
	for i, r := range resp.GetResults() {
		out[i] = Result{Value: string(r.GetPlaintext()), Subject: r.GetSubjectId(), Err: itemErr(r.GetStatus())}
	}
	return out, nil
}

// Receipt is what an erasure did: the vault's receipt (package
// vault/receipt; Subject, ErasedAt, Records, Lookups,
// BackupsUndecryptableBy, and the signing KeyID and Signature when the
// vault signs receipts) and the signed receipt file itself.
type Receipt struct {
	receipt.Receipt
	// Signed is the signed receipt file, to keep and check with
	// "tokenvault receipt verify"; nil when the vault does not sign
	// receipts.
	Signed []byte
}

// EraseSubject crypto-shreds a subject.
func (c *Client) EraseSubject(ctx context.Context, subject string) (Receipt, error) {
	var resp *pb.EraseSubjectResponse
	err := c.do(ctx, false, func(ctx context.Context) (err error) {
		resp, err = c.rpc.EraseSubject(ctx, &pb.EraseSubjectRequest{SubjectId: subject})
		return err
	})
	if err != nil {
		return Receipt{}, err
	}
	r := resp.GetReceipt()
	out := Receipt{Receipt: receipt.Receipt{Subject: r.GetSubjectId(), ErasedAt: r.GetErasedAt().AsTime(),
		Records: r.GetRecordsErased(), Lookups: r.GetLookupsErased(), KeyID: r.GetSigningKeyId()},
		Signed: resp.GetSignedReceipt()}
	if t := r.GetBackupsUndecryptableBy(); t != nil {
		out.BackupsUndecryptableBy = t.AsTime()
	}
	out.Held = heldFromPB(r.GetHeld())
	// The signature comes from the signed file. It covers the fields above
	// only if the server sent the same ones in both places, so Verify on
	// the returned receipt checks exactly what the caller is given.
	if p, err := receipt.Parse(out.Signed); err == nil {
		out.Signature = p.Signature
	}
	return out, nil
}
