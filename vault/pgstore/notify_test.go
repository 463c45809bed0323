package pgstore_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/internal/pgtest"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
	"github.com/tokenvault/tokenvault/vault/pgstore"
)

// twoVaults are two replicas' vaults on one database, with their stores.
func twoVaults(t *testing.T) (db *pgtest.DB, a, b *vault.Vault, sa, sb *pgstore.Store) {
	t.Helper()
	_, db = open(t)
	dir := t.TempDir()
	kr, _, err := agekeyring.OpenOrCreate(agekeyring.Config{Path: filepath.Join(dir, "keyring.age"), IdentityFile: filepath.Join(dir, "id.txt")}, true)
	if err != nil {
		t.Fatal(err)
	}
	mk := func() (*vault.Vault, *pgstore.Store) {
		s := openOn(t, db)
		v, err := vault.New(context.Background(), s, kr, vault.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(v.Close)
		return v, s
	}
	a, sa = mk()
	b, sb = mk()
	return db, a, b, sa, sb
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not after 30s: %s", what)
		}
	}
}

// TestChangeNotificationsDropCaches: a restriction or an erasure on
// replica A makes replica B drop the subject's cached key (B listens);
// a change B cannot have heard (the counter moved without a
// notification it got, or while its listener was reconnecting) drops
// B's whole cache.
func TestChangeNotificationsDropCaches(t *testing.T) {
	ctx := context.Background()
	db, a, b, _, sb := twoVaults(t)
	lctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); sb.Listen(lctx, b) }()
	t.Cleanup(func() { stop(); <-done })
	eventually(t, "B's listener connected", func() bool { return sb.ListenerStats().Connected })
	if !sb.ListenerStats().Enabled {
		t.Fatal("PostgreSQL has NOTIFY, but the store did not turn notifications on")
	}

	warm := func(subject string) string {
		t.Helper()
		toks, err := a.Tokenize(ctx, subject, []vault.Field{{Kind: format.Email, Value: subject + "@example.com"}})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := reveal(t, b, toks[0]); err != nil || got != subject+"@example.com" {
			t.Fatalf("reveal on B = %q, %v", got, err)
		}
		return toks[0]
	}
	warm("alice")
	warm("carol") // stays cached through alice's changes
	if n := b.CachedKeys(); n != 2 {
		t.Fatalf("B caches %d keys, want 2", n)
	}
	if _, err := a.RestrictSubject(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "B dropped alice's key after the restriction on A", func() bool { return b.CachedKeys() == 1 })
	if err := a.UnrestrictSubject(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	// Heard before bob's reveal: a notification landing during a reveal
	// moves the cache generation, and the reveal then does not cache.
	eventually(t, "B heard the lifting of the restriction", func() bool { return sb.ListenerStats().Notifications >= 2 })
	warm("bob")
	eventually(t, "B holds carol's and bob's keys", func() bool { return b.CachedKeys() == 2 })
	if _, _, err := a.EraseSubject(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "B dropped bob's key after the erasure on A", func() bool { return b.CachedKeys() == 1 })
	st := sb.ListenerStats()
	if st.Notifications < 3 || st.Resyncs != 0 || st.LastNotification.IsZero() {
		t.Fatalf("listener stats %+v: want 3 notifications, no resync", st)
	}

	// A gap in the counter (a change never notified), then a change: B
	// cannot know what it missed, so it drops everything, carol too.
	db.Exec(t, `UPDATE tokenvault_meta SET value = convert_to('1000', 'UTF8') WHERE name = 'change_counter'`)
	warm("dave")
	if _, err := a.RestrictSubject(ctx, "dave"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "B dropped its whole cache after the gap", func() bool { return b.CachedKeys() == 0 })
	if st := sb.ListenerStats(); st.Resyncs != 1 {
		t.Fatalf("resyncs %d after a gap, want 1", st.Resyncs)
	}

	// The listener's connection ended, and a change made meanwhile (in
	// the same transaction as the end): after reconnecting, B notices the
	// counter moved and drops everything.
	warm("erin")
	db.Exec(t, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'tokenvault-listener' AND datname = current_database();
		UPDATE tokenvault_meta SET value = convert_to((convert_from(value, 'UTF8')::bigint + 1)::text, 'UTF8') WHERE name = 'change_counter'`)
	eventually(t, "B dropped its whole cache after missing a change while reconnecting", func() bool { return b.CachedKeys() == 0 })
	eventually(t, "B's listener connected again", func() bool { return sb.ListenerStats().Connected })
	if st := sb.ListenerStats(); st.Resyncs != 2 {
		t.Fatalf("resyncs %d after a missed change, want 2", st.Resyncs)
	}
}

// TestKEKLeaseOneReplicaAtATime: while replica A rotates, rewraps or
// retires the KEK, replica B's attempt is refused with ErrKEKBusy; once
// A is done, B's runs.
func TestKEKLeaseOneReplicaAtATime(t *testing.T) {
	ctx := context.Background()
	_, a, b, _, _ := twoVaults(t)
	inside, release := make(chan struct{}), make(chan struct{})
	aDone := make(chan error, 1)
	go func() {
		aDone <- a.WithKEKLease(ctx, func(context.Context) error {
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside
	ran := false
	if err := b.WithKEKLease(ctx, func(context.Context) error { ran = true; return nil }); !errors.Is(err, vault.ErrKEKBusy) || ran {
		t.Fatalf("B while A holds the KEK lease: %v (ran %v), want ErrKEKBusy", err, ran)
	}
	close(release)
	if err := <-aDone; err != nil {
		t.Fatal(err)
	}
	if err := b.WithKEKLease(ctx, func(ctx context.Context) error {
		_, err := b.RewrapKeys(ctx, nil)
		return err
	}); err != nil {
		t.Fatalf("B after A finished: %v", err)
	}
}
