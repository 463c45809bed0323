package client

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// Card is one card of a checkout, for TokenizeCard. Only Number is
// required.
type Card struct {
	Number       string // kind "pan"
	Expiry       string // kind "card-expiry", MM/YY
	SecurityCode string // kind "card-security-code": a volatile token
	HolderName   string // kind "name"
	// NumberChecksumValid makes the card number's token pass Luhn.
	NumberChecksumValid bool
	// SecurityCodeReveals is how often the code's token may be revealed
	// (1-100); 0: the server's default (once, unless configured).
	SecurityCodeReveals int
	// SecurityCodeTTL is the code token's lifetime (at most 24h); 0: the
	// server's default (1h, unless configured).
	SecurityCodeTTL time.Duration
}

// CardTokens are the tokens of a Card; a field left empty gets "".
type CardTokens struct {
	Number string
	Expiry string
	// SecurityCode is volatile: it lives only in the memory of the server
	// process that issued it (a restart drops it) and is gone after its
	// last reveal (Detokenize) or its lifetime.
	SecurityCode string
	HolderName   string
}

// TokenizeCard tokenizes a card's fields in one call, all or nothing. It
// is never retried: a repeated call would make a second set of tokens.
func (c *Client) TokenizeCard(ctx context.Context, subject string, card Card) (CardTokens, error) {
	req := &pb.TokenizeCardRequest{SubjectId: subject, CardNumber: card.Number, Expiry: card.Expiry,
		SecurityCode: card.SecurityCode, HolderName: card.HolderName, CardNumberChecksumValid: card.NumberChecksumValid,
		SecurityCodeReveals: int32(min(max(card.SecurityCodeReveals, -1), 1<<30))}
	if card.SecurityCodeTTL != 0 {
		req.SecurityCodeTtl = durationpb.New(card.SecurityCodeTTL)
	}
	var resp *pb.TokenizeCardResponse
	err := c.do(ctx, false, func(ctx context.Context) (err error) {
		resp, err = c.rpc.TokenizeCard(ctx, req)
		return err
	})
	if err != nil {
		return CardTokens{}, err
	}
	return CardTokens{Number: resp.GetCardNumberToken(), Expiry: resp.GetExpiryToken(),
		SecurityCode: resp.GetSecurityCodeToken(), HolderName: resp.GetHolderNameToken()}, nil
}
