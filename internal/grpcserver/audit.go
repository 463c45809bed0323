package grpcserver

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/internal/audit"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault"
)

// The audit entries of calls.
//
// An entry says who asked (the guard's identity), what for (the request's
// purpose and subject) and, item by item, what the vault did: each handler
// records the vault's own results in the call's record (recordRevealed,
// recordDecrypted, recordRectified), as the vault returned them, and the
// guard builds the entry from that record once the handler returned. So
// the entry says what the domain did, not what a response was made to
// say. A call refused before its handler ran, or whose handler failed
// before the vault answered item by item, lists what it asked for
// (attempted) as not attempted: which tokens someone tried to see is
// evidence too.

// auditMode says when a method's calls are written to the audit log
// (refused calls always are).
type auditMode int

const (
	auditNever     auditMode = iota
	auditAlways              // reveals, erasure, admin
	auditOnDenials           // when some item was refused (mask)
	// auditDeterministic: tokenize calls with deterministic fields. Handing
	// back the existing token confirms a guessed value (README, "Who may
	// see what"): such calls are recorded like reveals, field by field
	// (kind and the token's keyed hash).
	auditDeterministic
)

// auditFinishTimeout bounds the wait for the audit entry of a call that
// has already run. The wait does not follow the caller's context: the
// operation took effect (an erasure, a rotation) whether or not the caller
// is still there, so its entry must be written regardless; a reveal whose
// caller left is withheld either way.
const auditFinishTimeout = 30 * time.Second

// finishSlack: a call waits for its entry at least auditFinishTimeout −
// finishSlack and at most auditFinishTimeout (see finishBound).
const finishSlack = time.Second

// finishBound hands out the context that bounds audit waits: one shared
// by the audited calls that start within finishSlack of each other, not
// one made per call (context.WithTimeout was five allocations, a runtime
// timer to start and stop, and ~1% of a detokenize call's server CPU).
// Nobody cancels a shared context early: it ends by itself at its
// deadline, whoever still waits on it.
type finishBound struct {
	cur atomic.Pointer[boundCtx]
}

type boundCtx struct {
	ctx    context.Context
	until  time.Time          // ctx's deadline
	cancel context.CancelFunc // kept, never called: see finishBound
}

// get returns a context whose deadline is between now +
// auditFinishTimeout − finishSlack and now + auditFinishTimeout.
func (f *finishBound) get(now time.Time) context.Context {
	for {
		b := f.cur.Load()
		if b != nil && b.until.Sub(now) >= auditFinishTimeout-finishSlack {
			return b.ctx
		}
		until := now.Add(auditFinishTimeout)
		ctx, cancel := context.WithDeadline(context.Background(), until)
		if f.cur.CompareAndSwap(b, &boundCtx{ctx: ctx, until: until, cancel: cancel}) {
			return ctx
		}
		cancel() // another call renewed it first; this one was never shared
	}
}

// notAttempted is the outcome of an item the call never got to.
const notAttempted = "not_attempted"

// record is what a handler learned during an audited call: the items as
// the vault answered them, and the subject when the request does not name
// it (the subject behind a rectified token). The guard puts one in the
// context of every audited call.
type record struct {
	hash func(token string) string // the audit log's keyed token hash

	mu       sync.Mutex
	subject  string
	items    []audit.Item
	omitted  int
	recorded bool // the handler recorded its items
}

type recordKey struct{}

func withRecord(ctx context.Context, r *record) context.Context {
	if r == nil {
		return ctx
	}
	return context.WithValue(ctx, recordKey{}, r)
}

// recordOf is the call's record, nil for calls that are not audited.
func recordOf(ctx context.Context) *record {
	r, _ := ctx.Value(recordKey{}).(*record)
	return r
}

func (r *record) set(items []audit.Item, omitted int) {
	r.mu.Lock()
	r.items, r.omitted, r.recorded = items, omitted, true
	r.mu.Unlock()
}

// recordRevealed records the vault's results for tokens (Detokenize,
// Mask): each token's outcome and, where it was revealed, its kind.
func recordRevealed(ctx context.Context, tokens []string, res []vault.Revealed) {
	if r := recordOf(ctx); r != nil {
		r.set(tokenItems(r.hash, tokens, res))
	}
}

// recordDecrypted records the vault's results for blobs (Decrypt): each
// blob's context, outcome and, where it was decrypted, its subject.
func recordDecrypted(ctx context.Context, items []vault.DecryptItem, res []vault.Decrypted) {
	if r := recordOf(ctx); r != nil {
		r.set(blobItems(items, res))
	}
}

// recordTokenized records the deterministic fields of a tokenize call:
// kind and the keyed hash of the token handed back.
func recordTokenized(ctx context.Context, fields []vault.Field, tokens []string) {
	r := recordOf(ctx)
	if r == nil {
		return
	}
	var items []audit.Item
	omitted := 0
	for i, f := range fields {
		if !f.Deterministic || i >= len(tokens) {
			continue
		}
		if len(items) == audit.MaxItems {
			omitted++
			continue
		}
		items = append(items, audit.Item{Token: r.hash(tokens[i]), Kind: f.Kind.String(), Outcome: codes.OK.String()})
	}
	r.set(items, omitted)
}

// recordRectified records a rectification: the token and its subject.
func recordRectified(ctx context.Context, token string, res vault.Rectified) {
	r := recordOf(ctx)
	if r == nil {
		return
	}
	r.set([]audit.Item{{Token: r.hash(token), Outcome: codes.OK.String()}}, 0)
	r.mu.Lock()
	r.subject = res.Subject
	r.mu.Unlock()
}

// tokenItems lists tokens by keyed hash with their outcomes (res nil: none
// was attempted). Items beyond audit.MaxItems are counted, not listed.
func tokenItems(hash func(string) string, tokens []string, res []vault.Revealed) ([]audit.Item, int) {
	n := min(len(tokens), audit.MaxItems)
	items := make([]audit.Item, n)
	for i, t := range tokens[:n] {
		items[i] = audit.Item{Token: hash(t), Outcome: notAttempted}
		if i < len(res) {
			items[i].Outcome = outcomeCode(res[i].Err).String()
			if res[i].Err == nil {
				items[i].Kind = res[i].Kind.String()
			}
		}
	}
	return items, len(tokens) - n
}

// blobItems lists blobs by context with their outcomes (res nil: none was
// attempted).
func blobItems(blobs []vault.DecryptItem, res []vault.Decrypted) ([]audit.Item, int) {
	n := min(len(blobs), audit.MaxItems)
	items := make([]audit.Item, n)
	for i, b := range blobs[:n] {
		items[i] = audit.Item{Context: audit.Clip(b.Context), Outcome: notAttempted}
		if i < len(res) {
			items[i].Outcome = outcomeCode(res[i].Err).String()
			items[i].Subject = audit.Clip(res[i].Subject)
		}
	}
	return items, len(blobs) - n
}

// attempted lists the items a request names, none of them attempted.
func attempted(h Auditor, req any) ([]audit.Item, int) {
	switch r := req.(type) {
	case interface{ GetTokens() []string }: // Detokenize, Mask
		return tokenItems(h.TokenHash, r.GetTokens(), nil)
	case interface{ GetToken() string }: // RectifyToken
		return tokenItems(h.TokenHash, []string{r.GetToken()}, nil)
	case interface{ GetItems() []*pb.DecryptItem }: // Decrypt
		blobs := make([]vault.DecryptItem, len(r.GetItems()))
		for i, it := range r.GetItems() {
			blobs[i].Context = it.GetContext()
		}
		return blobItems(blobs, nil)
	}
	return nil, 0
}

// refuse audits and logs a refused call and returns its status.
func (g *Guard) refuse(c *call, err error) error {
	c.withPeer()
	if c.req != nil {
		c.entry.Items, c.entry.ItemsOmitted = attempted(g.cfg.Audit, c.req)
	}
	return g.refuseEntry(c.method, c.entry, err)
}

// refuseEntry audits (without waiting, see refusals.go) and logs a refused
// call and returns its status. The entry's outcome is the status's code.
func (g *Guard) refuseEntry(method string, e audit.Entry, err error) error {
	o := g.classify(method, err)
	e.Outcome, e.Reason = o.code.String(), audit.Clip(err.Error())
	g.refusals.add(e)
	return o.status()
}

// started writes the entry of a stream that is always audited before the
// stream sends anything: a stream sends as it goes (values, a backup, the
// ledger, rewrap progress), so nothing leaves unaudited even if it dies.
func (g *Guard) started(ctx context.Context, c *call) error {
	if c.spec.audit != auditAlways {
		return nil
	}
	c.withPeer()
	e := c.entry
	e.Outcome = "STARTED"
	if err := g.cfg.Audit.Write(ctx, e); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			// The caller gave up waiting: its own deadline, not an
			// unavailable log (which a client would retry).
			return g.toStatus(c.method, cerr)
		}
		return g.toStatus(c.method, fmt.Errorf("%w; nothing was sent", errAuditUnavailable))
	}
	return nil
}

// finish writes the audit entry of an admitted call. A non-nil return
// replaces the call's result: an unaudited result is never sent.
func (g *Guard) finish(c *call, callErr error) error {
	if c.rec == nil {
		return nil
	}
	c.rec.mu.Lock()
	items, omitted, subject, recorded := c.rec.items, c.rec.omitted, c.rec.subject, c.rec.recorded
	c.rec.mu.Unlock()
	if !recorded && c.req != nil {
		items, omitted = attempted(g.cfg.Audit, c.req)
	}
	if !c.always && (c.spec.audit == auditOnDenials && !anyDenied(items) ||
		c.spec.audit == auditDeterministic && !recorded) {
		return nil // a failed tokenize handed nothing back
	}
	c.withPeer()
	// The code the caller gets (handlers return statuses).
	c.entry.Outcome = status.Code(callErr).String()
	if subject != "" && c.entry.Subject == "" {
		c.entry.Subject = audit.Clip(subject)
	}
	c.entry.Items, c.entry.ItemsOmitted = items, omitted
	if err := g.cfg.Audit.Write(g.bound.get(time.Now()), c.entry); err != nil {
		g.log.Error("audit log write failed; withholding the call's result", "method", c.method, "caller", c.entry.Caller, "err", err)
		if c.spec.op.Reveal() {
			return g.toStatus(c.method, fmt.Errorf("%w; nothing was revealed", errAuditUnavailable))
		}
		return g.toStatus(c.method, fmt.Errorf("%w; the operation may have taken effect but its result is withheld", errAuditUnavailable))
	}
	return nil
}

func anyDenied(items []audit.Item) bool {
	for _, it := range items {
		if it.Outcome == codes.PermissionDenied.String() {
			return true
		}
	}
	return false
}
