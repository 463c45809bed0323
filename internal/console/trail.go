package console

import (
	"context"
	"time"
)

// Trail is where the subject page's trail comes from: who revealed,
// exported, rectified, restricted or erased what of one subject, and when
// and why. It is an interface so that the audit log's layout (files,
// rotation, how subjects are recorded) stays the audit package's business:
// trail_audit.go is the one implementation over today's log.
type Trail interface {
	// SubjectTrail returns up to limit entries about q, newest first.
	SubjectTrail(ctx context.Context, q TrailQuery, limit int) ([]TrailEntry, error)
}

// TrailQuery names a subject. Calls that name tokens only (detokenize,
// mask) are recorded by the tokens' keyed hashes, so the query carries the
// hashes of the subject's current tokens too.
type TrailQuery struct {
	Subject string
	// Tokens holds the audit log's keyed hashes (audit.Log.TokenHash) of
	// the subject's tokens.
	Tokens map[string]bool
}

// TrailEntry is one audited call, as the console shows it: token hashes,
// never tokens or values.
type TrailEntry struct {
	Time    time.Time
	Caller  string
	Op      string
	Purpose string
	Outcome string
	Reason  string
	Tokens  []string // keyed hashes of the subject's tokens the call named
}
