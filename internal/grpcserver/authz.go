package grpcserver

import (
	"context"
	"fmt"

	"github.com/tokenvault/tokenvault/internal/audit"
	"github.com/tokenvault/tokenvault/internal/auth"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

// Authorization: whether the caller may make the call. Every refusal here
// is audited (audit.go) and answered through the one table (status.go).

// admit authenticates and authorizes the call. A refused call is audited
// and answered with the status admit returns.
func (g *Guard) admit(ctx context.Context, c *call, req any) (context.Context, error) {
	if !c.known {
		// The tap refuses these first; this covers a server built without
		// the tap handle.
		return nil, g.refuse(c, unknownMethod(c.method))
	}
	var id auth.Identity
	var caller string
	if t, ok := identityFrom(ctx); ok {
		id, caller = t.id, t.caller
	} else {
		var err error
		if id, err = g.authenticate(ctx); err != nil {
			return nil, g.refuse(c, err)
		}
		caller = id.String()
	}
	c.id = id
	c.entry.Caller, c.entry.Auth = caller, string(id.Method)
	if err := checkPurpose(c); err != nil {
		return nil, g.refuse(c, err)
	}
	if g.cfg.Policy == nil {
		ctx = auth.WithAccess(ctx, auth.DevAccess(id))
	} else {
		pol := g.cfg.Policy.Current()
		if pol == nil {
			// Cannot happen with a loaded source; fail closed if it does.
			return nil, g.refuse(c, fmt.Errorf("%w: no policy in force", auth.ErrPermissionDenied))
		}
		// Handlers can check what they learn later (auth.AccessFrom).
		ctx = auth.WithAccess(ctx, auth.NewAccess(id, pol))
		var err error
		if ctx, err = g.authorize(ctx, pol, c, req); err != nil {
			return nil, g.refuse(c, err)
		}
	}
	if c.spec.audit == auditAlways {
		// Do not even start an operation that could not be audited.
		if err := g.cfg.Audit.Healthy(); err != nil {
			g.log.Error("refusing an audited call: audit log unavailable", "method", c.method, "caller", c.entry.Caller)
			return nil, g.toStatus(c.method, fmt.Errorf("%w; the call was not carried out", errAuditUnavailable))
		}
	}
	return ctx, nil
}

// purposeOf is the purpose a request states ("" for requests without one).
func purposeOf(req any) string {
	if r, ok := req.(interface{ GetPurpose() string }); ok {
		return r.GetPurpose()
	}
	return ""
}

// checkPurpose is the guard's one check of the purpose: every reveal says
// why, in every mode, before the policy is asked (which would otherwise
// answer a missing purpose with a denial). The rule is the vault's
// (vault.Purpose: trimmed, not blank), and the call goes on with the
// purpose it returns: the policy decides on, and the audit log records,
// the purpose the vault checks, never "  " or " payment". A refused call
// is audited with the purpose as sent.
func checkPurpose(c *call) error {
	if !c.spec.op.Reveal() {
		return nil
	}
	p, err := vault.Purpose(c.purpose)
	if err != nil {
		return err
	}
	c.purpose, c.entry.Purpose = p, audit.Clip(p)
	return nil
}

// authorize asks the policy about the call, and about what its request
// names item by item where that is known up front; where it is known only
// once the records are read (kinds of tokens, contexts of blobs), it hands
// the vault a filter that asks the same policy per item.
func (g *Guard) authorize(ctx context.Context, pol *auth.Policy, c *call, req any) (context.Context, error) {
	id, op, purpose := c.id, c.spec.op, c.purpose
	if err := pol.Authorize(id, op, auth.AnyKind, purpose); err != nil {
		return nil, err
	}
	switch op {
	case auth.OpTokenize:
		if r, ok := req.(*pb.TokenizeRequest); ok {
			if err := authorizeFields(pol, id, purpose, r.GetFields()); err != nil {
				return nil, err
			}
			if err := g.cfg.Limiter.admitTokenize(id, r.GetFields()); err != nil {
				return nil, err
			}
		}
		if r, ok := req.(*pb.TokenizeCardRequest); ok { // card.go
			if err := authorizeCard(pol, id, purpose, r); err != nil {
				return nil, err
			}
			if err := g.cfg.Limiter.admitTokenize(id, pbFields(cardFields(r))); err != nil {
				return nil, err
			}
		}
	case auth.OpEncrypt:
		// Contexts are in the request, as kinds are for tokenize.
		if r, ok := req.(*pb.EncryptRequest); ok {
			for i, it := range r.GetItems() {
				if err := pol.AuthorizeContext(id, op, it.GetContext(), purpose); err != nil {
					return nil, &fieldError{fmt.Sprintf("items[%d].context", i), err}
				}
			}
		}
	case auth.OpDecrypt:
		// Checked per item, like kinds for detokenize, so that one blob
		// of another context does not fail the batch.
		ctx = vault.WithContextFilter(ctx, func(blobContext string) bool {
			return pol.AuthorizeContext(id, op, blobContext, purpose) == nil
		})
	case auth.OpWatchErasures:
		// Which consumers an identity may watch (and acknowledge) as.
		if r, ok := req.(interface{ GetConsumer() string }); ok {
			if err := pol.AuthorizeConsumer(id, r.GetConsumer()); err != nil {
				return nil, &fieldError{"consumer", err}
			}
		}
	case auth.OpDetokenize, auth.OpMask:
		// Kinds are known per item, once the record is read.
		ctx = vault.WithKindFilter(ctx, func(k format.Kind) bool {
			return pol.Authorize(id, op, k, purpose) == nil
		})
	}
	return ctx, nil
}

// authorizeFields: kinds and modes are in a tokenize request, so the whole
// call is refused, naming the field, before anything is written.
// Deterministic mode is a permission of its own
// (auth.OpTokenizeDeterministic).
func authorizeFields(pol *auth.Policy, id auth.Identity, purpose string, fields []*pb.Field) error {
	for i, f := range fields {
		k := kindFromPB(f.GetKind())
		if !k.Valid() {
			continue // the vault answers InvalidArgument, naming the field
		}
		op, field := auth.OpTokenize, "kind"
		if deterministic(f) {
			op, field = auth.OpTokenizeDeterministic, "options.mode"
		}
		if err := pol.Authorize(id, op, k, purpose); err != nil {
			return &fieldError{fmt.Sprintf("fields[%d].%s", i, field), err}
		}
	}
	return nil
}
