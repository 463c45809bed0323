package grpcserver

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/tokenvault/tokenvault/internal/auth"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

// Card checkout (issue 17): TokenizeCard is one vault.Tokenize call over
// the card's fields, so it succeeds or fails as a whole, the security
// code's token is volatile (the vault decides by kind), and errors name
// the request's own fields.

// cardField is one field of a TokenizeCardRequest that gets a token.
type cardField struct {
	name  string // the request field
	kind  format.Kind
	value string
}

// cardFields are the fields of r to tokenize, in the order of the
// request: the card number always (empty, the vault refuses it naming
// card_number), the others when given.
func cardFields(r *pb.TokenizeCardRequest) []cardField {
	fs := []cardField{{"card_number", format.PAN, r.GetCardNumber()}}
	for _, f := range []cardField{
		{"expiry", format.CardExpiry, r.GetExpiry()},
		{"security_code", format.CardSecurityCode, r.GetSecurityCode()},
		{"holder_name", format.Name, r.GetHolderName()},
	} {
		if f.value != "" {
			fs = append(fs, f)
		}
	}
	return fs
}

// pbFields are the card's fields as a tokenize request's, for the guard's
// per-identity limits (limits.go).
func pbFields(fs []cardField) []*pb.Field {
	out := make([]*pb.Field, len(fs))
	for i, f := range fs {
		out[i] = &pb.Field{Kind: kindToPB(f.kind)}
	}
	return out
}

// authorizeCard: the kinds of a card are known from the request, so the
// guard checks each as for Tokenize, naming the request field.
func authorizeCard(pol *auth.Policy, id auth.Identity, purpose string, r *pb.TokenizeCardRequest) error {
	for _, f := range cardFields(r) {
		if err := pol.Authorize(id, auth.OpTokenize, f.kind, purpose); err != nil {
			return &fieldError{f.name, err}
		}
	}
	return nil
}

// cardOptionNames: the request fields of the vault's per-field options.
var cardOptionNames = map[string]string{
	".options.ttl":            "security_code_ttl",
	".reveals":                "security_code_reveals",
	".options.checksum_valid": "card_number_checksum_valid",
}

// renameCardField renames the vault's "fields[i]…" in a field error to the
// request field it stands for.
func renameCardField(fs []cardField, err error) error {
	var fe *vault.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	for i, f := range fs {
		rest, ok := strings.CutPrefix(fe.Field, "fields["+strconv.Itoa(i)+"]")
		if !ok {
			continue
		}
		name := f.name
		if n, ok := cardOptionNames[rest]; ok {
			name = n
		}
		return &vault.FieldError{Field: name, Reason: fe.Reason, Err: fe.Err}
	}
	return err
}

func (s *Server) TokenizeCard(ctx context.Context, req *pb.TokenizeCardRequest) (*pb.TokenizeCardResponse, error) {
	fs := cardFields(req)
	fields := make([]vault.Field, len(fs))
	for i, f := range fs {
		fields[i] = vault.Field{Kind: f.kind, Value: f.value}
		switch f.kind {
		case format.PAN:
			fields[i].ChecksumValid = req.GetCardNumberChecksumValid()
		case format.CardSecurityCode:
			fields[i].Reveals = int(req.GetSecurityCodeReveals())
			if ttl := req.GetSecurityCodeTtl(); ttl != nil {
				if err := ttl.CheckValid(); err != nil {
					return nil, s.toStatus("TokenizeCard", &vault.FieldError{Field: "security_code_ttl", Reason: "not a valid duration", Err: vault.ErrInvalidArgument})
				}
				fields[i].TTL = ttl.AsDuration()
				if fields[i].TTL <= 0 {
					return nil, s.toStatus("TokenizeCard", &vault.FieldError{Field: "security_code_ttl", Reason: "must be positive (leave it unset for the server's default)", Err: vault.ErrInvalidArgument})
				}
			}
		}
	}
	if req.GetSecurityCode() == "" && (req.GetSecurityCodeReveals() != 0 || req.GetSecurityCodeTtl() != nil) {
		return nil, s.toStatus("TokenizeCard", &vault.FieldError{Field: "security_code", Reason: "empty, but security_code_reveals or security_code_ttl is set", Err: vault.ErrInvalidArgument})
	}
	s.observeBatch("TokenizeCard", len(fields))
	tokens, err := s.v.Tokenize(ctx, req.GetSubjectId(), fields)
	if err != nil {
		return nil, s.toStatus("TokenizeCard", renameCardField(fs, err))
	}
	out := &pb.TokenizeCardResponse{}
	for i, f := range fs {
		switch f.name {
		case "card_number":
			out.CardNumberToken = tokens[i]
		case "expiry":
			out.ExpiryToken = tokens[i]
		case "security_code":
			out.SecurityCodeToken = tokens[i]
		case "holder_name":
			out.HolderNameToken = tokens[i]
		}
	}
	return out, nil
}
