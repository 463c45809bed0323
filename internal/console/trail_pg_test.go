package console_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/internal/audit"
	"github.com/tokenvault/tokenvault/internal/config"
	"github.com/tokenvault/tokenvault/internal/console"
	"github.com/tokenvault/tokenvault/internal/pgtest"
	"github.com/tokenvault/tokenvault/vault/pgstore"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// The trail over the audit table: both replicas' calls about the
// subject, by its keyed hash or its tokens' hashes, newest first, and
// nothing about another subject.
func TestAuditDBTrail(t *testing.T) {
	pg := pgtest.New(t)
	ctx := context.Background()
	if _, _, err := audit.MigratePostgres(ctx, pg.DSN); err != nil {
		t.Fatal(err)
	}
	db, err := audit.OpenDB(ctx, pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lk, err := aead.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	h, err := audit.NewSubjectHasher(lk)
	lk.Zero()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Zero()
	// Replicas share the signing key (so token hashes agree).
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var tokenHash string
	for _, replica := range []string{"r1", "r2"} {
		l, err := audit.Open(audit.Options{Path: filepath.Join(t.TempDir(), "audit.jsonl"), SigningKey: key, DB: db, Replica: replica,
			SubjectHash: h.Hash, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		tokenHash = l.TokenHash("tok-1")
		for _, e := range []audit.Entry{
			{Caller: "api_key:setup", Op: "tokenize", Outcome: "OK", Subject: "cust-1", Items: []audit.Item{{Token: tokenHash, Kind: "email"}}},
			{Caller: "api_key:support", Op: "detokenize", Purpose: "support-" + replica, Outcome: "OK", Items: []audit.Item{{Token: tokenHash, Kind: "email"}}},
			{Caller: "api_key:setup", Op: "tokenize", Outcome: "OK", Subject: "cust-2"},
		} {
			if err := l.Write(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	tr := console.AuditDBTrail{DB: db, SubjectHash: h.Hash}
	got, err := tr.SubjectTrail(ctx, console.TrailQuery{Subject: "cust-1", Tokens: map[string]bool{tokenHash: true}}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("%d entries, want 4: %+v", len(got), got)
	}
	if got[0].Purpose != "support-r2" || got[0].Tokens[0] != tokenHash || got[3].Op != "tokenize" {
		t.Errorf("not newest first, or tokens missing: %+v", got)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Time.After(got[i-1].Time) {
			t.Errorf("entry %d is newer than the one before", i)
		}
	}
	// Without the tokens: only the entries naming the subject.
	if got, err = tr.SubjectTrail(ctx, console.TrailQuery{Subject: "cust-1"}, 100); err != nil || len(got) != 2 {
		t.Errorf("by subject only: %d entries, %v", len(got), err)
	}
	if got, err = tr.SubjectTrail(ctx, console.TrailQuery{Subject: "cust-1", Tokens: map[string]bool{tokenHash: true}}, 1); err != nil || len(got) != 1 || got[0].Purpose != "support-r2" {
		t.Errorf("limit 1: %+v, %v", got, err)
	}
}

// A server with auth.audit.sink postgres shows the trail from the table:
// a call another replica audited there is on the subject page, beside
// this server's own reveal.
func TestConsoleTrailFromDB(t *testing.T) {
	pg := pgtest.New(t)
	ctx := context.Background()
	if _, _, err := pgstore.Migrate(ctx, pg.DSN); err != nil {
		t.Fatal(err)
	}
	if _, _, err := audit.MigratePostgres(ctx, pg.DSN); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, func(c *config.Config) {
		c.Store = config.StoreConfig{Provider: config.StorePostgres, Postgres: config.PostgresConfig{DSN: pg.DSN}}
		c.Auth.Audit.Sink = config.AuditSinkPostgres
		c.Replica.ID = "r1"
	})
	s.seed(t, "alice", client.Field{Kind: "email", Value: "alice@example.com"})
	// The other replica: its own log on the same table.
	db, err := audit.OpenDB(ctx, pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := audit.Open(audit.Options{Path: filepath.Join(t.TempDir(), "audit.jsonl"), SigningKey: key, DB: db, Replica: "r2",
		SubjectHash: s.app.AuditSubjectHash, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Write(ctx, audit.Entry{Caller: "api_key:elsewhere", Op: "export", Purpose: "replica-two-export", Outcome: "OK", Subject: "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, s.base)
	csrf := b.signIn(officerKey)
	p := b.open(csrf, "alice")
	tok := tokenOnPage(t, p)
	if r := b.do("POST", "/reveal", url.Values{"csrf": {csrf}, "token": {tok}, "purpose": {"support-call"}}); r.code != http.StatusOK {
		t.Fatalf("reveal: %d", r.code)
	}
	p = b.open(csrf, "alice")
	for _, want := range []string{"replica-two-export", "support-call"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the trail lacks %q", want)
		}
	}
	if reps, err := db.Verify(ctx, nil, ""); err != nil || len(reps) != 2 {
		t.Errorf("the table's chains: %v %+v", err, reps)
	}
}
