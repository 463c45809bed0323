package console

import (
	"context"
	"fmt"

	"github.com/tokenvault/tokenvault/internal/audit"
)

// AuditDBTrail reads the trail from the audit table in PostgreSQL
// (auth.audit.sink postgres): every replica's entries about the subject,
// found by an indexed query on the subject's keyed hash (SubjectHash)
// and on the keyed hashes of its tokens, newest first. Token hashes are
// keyed by each replica's audit signing key: entries that name a token
// only (no subject) are found across replicas when they share that key.
type AuditDBTrail struct {
	DB          *audit.DB
	SubjectHash func(subject string) (string, error)
}

var _ Trail = AuditDBTrail{}

func (a AuditDBTrail) SubjectTrail(ctx context.Context, q TrailQuery, limit int) ([]TrailEntry, error) {
	hash, err := a.SubjectHash(q.Subject)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	tokens := make([]string, 0, len(q.Tokens))
	for t := range q.Tokens {
		tokens = append(tokens, t)
	}
	rows, err := a.DB.Trail(ctx, hash, tokens, limit)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	out := make([]TrailEntry, 0, len(rows))
	for i := len(rows) - 1; i >= 0; i-- {
		// match applies the file trail's rules (calls only; which tokens
		// the entry names), so both trails show the same entries.
		if te, ok := match(rows[i].Entry.Expanded(), hash, "", q.Tokens); ok {
			out = append(out, te)
		}
	}
	return out, nil
}
