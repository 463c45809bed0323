package console

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/tokenvault/tokenvault/internal/audit"
)

// AuditFileTrail reads the trail from the audit log in Dir: its rotated
// files, oldest first, then the current one (audit.Scan). Entries name a
// subject by its keyed hash (SubjectHash, the log's own hasher); entries
// written before subjects were hashed name it in the clear and are found
// too. It reads the files per query: fine for a console page.
type AuditFileTrail struct {
	Dir         string
	SubjectHash func(subject string) (string, error)
}

var _ Trail = AuditFileTrail{}

func (a AuditFileTrail) SubjectTrail(ctx context.Context, q TrailQuery, limit int) ([]TrailEntry, error) {
	hash, err := a.SubjectHash(q.Subject)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	subject := audit.Clip(q.Subject)
	var out []TrailEntry
	n := 0
	err = audit.Scan(a.Dir, func(_ string, e audit.Entry) bool {
		if n++; n%1024 == 0 && ctx.Err() != nil {
			return false
		}
		te, ok := match(e.Expanded(), hash, subject, q.Tokens)
		if !ok {
			return true
		}
		out = append(out, te)
		if len(out) > limit {
			out = out[1:]
		}
		return true
	})
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, audit.ErrNoLog) {
		return nil, nil // nothing audited yet
	}
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// match: the entry names the subject, or one of its tokens, or (decrypt)
// the subject of an item.
func match(e audit.Entry, hash, subject string, tokens map[string]bool) (TrailEntry, bool) {
	if e.Type != audit.TypeCall {
		return TrailEntry{}, false
	}
	te := TrailEntry{Caller: e.Caller, Op: e.Op, Purpose: e.Purpose, Outcome: e.Outcome, Reason: e.Reason}
	te.Time, _ = time.Parse(time.RFC3339Nano, e.Time)
	is := func(h, s string) bool { return h != "" && h == hash || s != "" && s == subject }
	ok := is(e.SubjectHash, e.Subject)
	for _, it := range e.Items {
		if it.Token != "" && tokens[it.Token] {
			te.Tokens = append(te.Tokens, it.Token)
			ok = true
		}
		if is(it.SubjectHash, it.Subject) {
			ok = true
		}
	}
	return te, ok
}
