package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/vault/receipt"
)

// watchN watches as consumer until n events came, acknowledging each,
// and returns them.
func watchN(t *testing.T, c *client.Client, consumer string, n int) []client.ErasureEvent {
	t.Helper()
	var got []client.ErasureEvent
	wctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	err := c.WatchErasures(wctx, consumer, func(ev client.ErasureEvent) error {
		got = append(got, ev)
		if len(got) == n {
			cancel() // after this callback returns nil: acknowledged
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || len(got) != n {
		t.Fatalf("watching as %s: %d of %d events, %v", consumer, len(got), n, err)
	}
	return got
}

// TestLateConsumer: a consumer that connects after the erasures (and
// one that reconnects after being away) gets every event it missed, in
// commit order, each with a receipt that verifies; events acknowledged
// by every consumer are gone, and the metrics show the backlog.
//
// On badger and on PostgreSQL (withEachStore).
func TestLateConsumer(t *testing.T) { withEachStore(t, testLateConsumer) }

// withEachStore runs fn on each store, with the local keyring: the KEK
// is not what these tests are about (no Vault variant, to keep CI short).
func withEachStore(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Run("store=badger", func(t *testing.T) { fn(t, newEnv(t)) })
	t.Run("store=postgres", func(t *testing.T) { fn(t, newPostgresEnv(t)) })
}

func testLateConsumer(t *testing.T, e *env) {
	srv, c := e.start(t)
	cx := ctx(t)
	subjects := []string{"late-a-5b1c", "late-b-8d2e", "late-c-0f3a"}
	for _, s := range subjects {
		if _, err := c.Tokenize(cx, s, client.Field{Kind: "email", Value: s + "@example.com"}); err != nil {
			t.Fatal(err)
		}
		eraseVerified(t, cx, c, s)
	}
	pub, err := c.ReceiptPublicKey(cx)
	if err != nil {
		t.Fatal(err)
	}
	got := watchN(t, c, "crm", len(subjects))
	for i, ev := range got {
		r, err := receipt.Parse(ev.SignedReceipt)
		if ev.Sequence != uint64(i+1) || ev.Subject != subjects[i] || err != nil || r.Verify(pub) != nil || r.Subject != subjects[i] || len(ev.BlobKeyID) != 32 {
			t.Fatalf("event %d: %+v (receipt %v)", i, ev, err)
		}
	}
	// One more erasure while crm is away.
	if _, err := c.Tokenize(cx, "late-d-77aa", client.Field{Kind: "name", Value: "D"}); err != nil {
		t.Fatal(err)
	}
	eraseVerified(t, cx, c, "late-d-77aa")
	_, body := httpGet(t, "http://"+srv.MetricsAddr()+"/metrics")
	if !strings.Contains(body, `tokenvault_erasure_events_pending{consumer="crm"} 1`) ||
		!strings.Contains(body, `tokenvault_erasure_events_oldest_pending_age_seconds{consumer="crm"}`) {
		t.Fatalf("/metrics lacks the backlog:\n%s", grepLines(body, "erasure_events"))
	}
	// The acknowledged events never come again: the first one now is
	// the new one.
	if evs := watchN(t, c, "crm", 1); evs[0].Subject != "late-d-77aa" || evs[0].Sequence != 4 {
		t.Fatalf("after reconnecting: %+v", evs)
	}
	// Every consumer acknowledged every event: none is kept, and no
	// subject id is anywhere in the data directory (or the database).
	srv.Stop()
	for _, s := range append(subjects, "late-d-77aa") {
		if hits := atRest(t, e, s); len(hits) > 0 {
			t.Fatalf("subject id %s found at rest in %v", s, hits)
		}
	}
}

// atRest reports where e's store holds needle in the clear: files of the
// data directory (badger), or a dump of the database (PostgreSQL).
func atRest(t *testing.T, e *env, needle string) []string {
	t.Helper()
	if e.pgDB == nil {
		return grepDir(t, e.dataDir, []byte(needle))
	}
	if bytes.Contains(e.pgDB.Dump(t), []byte(needle)) {
		return []string{"pg_dump of " + e.pgDB.Name}
	}
	return nil
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return fmt.Sprint(out)
}
