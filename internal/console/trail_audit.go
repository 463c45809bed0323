package console

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/tokenvault/tokenvault/internal/audit"
)

// AuditFileTrail reads the trail from the audit log file at Path (one
// file, subjects recorded as given). It reads the whole file per query:
// fine for a console page, and the one place to change when the audit log
// changes shape.
type AuditFileTrail struct{ Path string }

var _ Trail = AuditFileTrail{}

func (a AuditFileTrail) SubjectTrail(ctx context.Context, q TrailQuery, limit int) ([]TrailEntry, error) {
	f, err := os.Open(a.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	subject := audit.Clip(q.Subject)
	var out []TrailEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), audit.MaxLine)
	for n := 0; sc.Scan(); n++ {
		if n%1024 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		e, err := audit.ParseLine(sc.Bytes())
		if err != nil {
			// The trail is a view; `tokenvault audit verify` judges the
			// log. A line that does not parse is not about anyone.
			continue
		}
		te, ok := match(e, subject, q.Tokens)
		if !ok {
			continue
		}
		out = append(out, te)
		if len(out) > limit {
			out = out[1:]
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// match: the entry names the subject, or one of its tokens, or (decrypt)
// the subject of an item.
func match(e audit.Entry, subject string, tokens map[string]bool) (TrailEntry, bool) {
	if e.Type != audit.TypeCall {
		return TrailEntry{}, false
	}
	te := TrailEntry{Caller: e.Caller, Op: e.Op, Purpose: e.Purpose, Outcome: e.Outcome, Reason: e.Reason}
	te.Time, _ = time.Parse(time.RFC3339Nano, e.Time)
	ok := e.Subject == subject
	for _, it := range e.Items {
		if it.Token != "" && tokens[it.Token] {
			te.Tokens = append(te.Tokens, it.Token)
			ok = true
		}
		if it.Subject != "" && it.Subject == subject {
			ok = true
		}
	}
	return te, ok
}
