package pgstore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/tokenvault/tokenvault/vault"
)

// Change notifications: an accelerator, never what correctness rests on.
//
// Every transaction that changes what a replica may have cached about a
// subject (an erasure, a restriction or its lifting, a rectification)
// bumps a change counter (the tokenvault_meta row change_counter) and,
// where the database has it, sends a notification on changeChannel
// carrying the new counter value and the subject's key id (random, never
// the subject id). Both are part of the transaction: the notification is
// delivered at commit, and only then.
//
// Each replica keeps one connection of its own LISTENing ([Store.Listen])
// and drops the cached keys a notification names, so that the unwrapped
// key of an erased subject leaves every replica's memory at once rather
// than at its cache TTL. A gap in the counter, a reconnect after which the
// counter moved, or a counter that moved without a notification for two
// polls, drops the whole cache: whatever was missed is covered.
//
// Nothing depends on a notification arriving: the store is shared (not
// [vault.ExclusiveStore]), so every reveal reads the subject's key from
// the database, and an erased or restricted subject is refused whatever
// the cache holds. A database without LISTEN/NOTIFY (CockroachDB) works
// the same, with keys leaving the cache at its TTL: Open probes pg_notify
// and leaves notifications off where it fails.

// changeChannel is the notification channel.
const changeChannel = "tokenvault_changes"

// changeCounter is the tokenvault_meta row of the change counter (a
// decimal number).
const changeCounter = "change_counter"

// listenerPoll is how often the listener reads the counter when no
// notification comes: the check that it still hears everything (and that
// its connection is alive).
const listenerPoll = 5 * time.Second

// bumpSQL bumps the change counter and returns its new value;
// bumpNotifySQL also notifies ($1: the key id in hex).
const (
	bumpCTE = `WITH c AS (INSERT INTO tokenvault_meta (name, value) VALUES ('` + changeCounter + `', convert_to('1', 'UTF8'))
		ON CONFLICT (name) DO UPDATE SET value = convert_to((convert_from(tokenvault_meta.value, 'UTF8')::bigint + 1)::text, 'UTF8')
		RETURNING convert_from(value, 'UTF8')::bigint AS n) `
	bumpSQL       = bumpCTE + `SELECT c.n, $1::text FROM c`
	bumpNotifySQL = bumpCTE + `SELECT c.n, pg_notify('` + changeChannel + `', c.n::text || ':' || $1::text) FROM c`
)

// noteChange records, in tx, a change to the subject whose key is id.
// The counter row is locked until tx ends, so counter order is commit
// order, which is the order notifications are delivered in. That one row
// serializes erasures, restrictions and rectifications across replicas
// (one commit at a time): they are rare next to tokenizes and reveals,
// which never touch it.
func (s *Store) noteChange(ctx context.Context, tx pgx.Tx, id vault.KeyID) error {
	q := bumpSQL
	if s.notify {
		q = bumpNotifySQL
	}
	var n int64
	var ignored *string
	if err := tx.QueryRow(ctx, q, hex.EncodeToString(id[:])).Scan(&n, &ignored); err != nil {
		return fmt.Errorf("pgstore: noting the change: %w", err)
	}
	return nil
}

// probeNotify reports whether the database has pg_notify. The probe's
// empty notification is ignored by listeners.
func probeNotify(ctx context.Context, p dbPool) bool {
	_, err := p.Exec(ctx, `SELECT pg_notify('`+changeChannel+`', '')`)
	return err == nil
}

// ChangeHandler is told what the listener hears: ForgetKey for one
// subject's key, ForgetKeys when it may have missed changes. The vault
// ([vault.Vault.ForgetKey], [vault.Vault.ForgetKeys]) is one.
type ChangeHandler interface {
	ForgetKey(id vault.KeyID)
	ForgetKeys()
}

// ListenerStats describe the listener, for metrics.
type ListenerStats struct {
	// Connected: the listener's connection is up and LISTENing.
	Connected bool
	// Enabled: the database has notifications (false on engines without
	// them; the listener then does not run).
	Enabled bool
	// LastNotification is when the last notification came (zero: none).
	LastNotification time.Time
	// Notifications counts those received; Resyncs the whole-cache drops
	// for changes that may have been missed.
	Notifications, Resyncs int64
	// Lag is how far the counter, at the last poll, was ahead of what
	// the listener had heard.
	Lag int64
}

// listener is the state behind ListenerStats.
type listener struct {
	connected     atomic.Bool
	notifications atomic.Int64
	resyncs       atomic.Int64
	lag           atomic.Int64
	mu            sync.Mutex
	last          time.Time
}

// ListenerStats reports the listener's state.
func (s *Store) ListenerStats() ListenerStats {
	s.lst.mu.Lock()
	last := s.lst.last
	s.lst.mu.Unlock()
	return ListenerStats{Connected: s.lst.connected.Load(), Enabled: s.notify, LastNotification: last,
		Notifications: s.lst.notifications.Load(), Resyncs: s.lst.resyncs.Load(), Lag: s.lst.lag.Load()}
}

// Listen listens for change notifications on a connection of its own and
// tells h, until ctx ends, reconnecting after a failure (with backoff; a
// multi-host DSN finds the new primary). On a database without
// notifications it returns at once.
func (s *Store) Listen(ctx context.Context, h ChangeHandler) {
	if !s.notify {
		return
	}
	var seen *int64 // the counter heard up to, across reconnects
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := s.listenOnce(ctx, h, &seen)
		s.lst.connected.Store(false)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			backoff = 100 * time.Millisecond
		}
		s.log.Warn("change listener: connection lost, reconnecting (caches drop keys at their TTL meanwhile; correctness does not depend on it)", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (s *Store) listenOnce(ctx context.Context, h ChangeHandler, seen **int64) error {
	cfg := s.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = "tokenvault-listener"
	// A timed-out wait only sets the socket's deadline: the default
	// handler would send a cancel request, which could cancel the poll
	// that follows it.
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return classify(err)
	}
	defer func() {
		// Bounded: the database may be gone.
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, `LISTEN `+changeChannel); err != nil {
		return classify(err)
	}
	// Read after LISTEN: a change committed in between is both counted
	// here and notified.
	n, err := readCounter(ctx, conn)
	if err != nil {
		return err
	}
	if *seen != nil && n != **seen {
		// Changes while no one listened: drop everything.
		h.ForgetKeys()
		s.lst.resyncs.Add(1)
	}
	heard := n
	*seen = &heard
	s.lst.connected.Store(true)
	s.lst.lag.Store(0)
	var lagging int64 = -1 // heard, when the last poll found the counter ahead
	for {
		wctx, cancel := context.WithTimeout(ctx, listenerPoll)
		note, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil && pgconn.Timeout(err):
			pctx, cancel := context.WithTimeout(ctx, listenerPoll)
			n, err := readCounter(pctx, conn)
			cancel()
			if err != nil {
				return err
			}
			lag := max(0, n-heard)
			s.lst.lag.Store(lag)
			if lag > 0 && lagging == heard {
				// Ahead for two polls with nothing heard: missed.
				h.ForgetKeys()
				s.lst.resyncs.Add(1)
				heard, lag = n, 0
				s.lst.lag.Store(0)
			}
			lagging = -1
			if lag > 0 {
				lagging = heard
			}
		case err != nil:
			return classify(err)
		default:
			s.hear(h, note.Payload, &heard)
		}
		**seen = heard
	}
}

// hear handles one notification's payload, "COUNTER:KEYID".
func (s *Store) hear(h ChangeHandler, payload string, heard *int64) {
	nstr, idHex, ok := strings.Cut(payload, ":")
	n, err := strconv.ParseInt(nstr, 10, 64)
	b, herr := hex.DecodeString(idHex)
	var id vault.KeyID
	if !ok || err != nil || herr != nil || len(b) != len(id) {
		return // the probe's empty payload, or not ours
	}
	copy(id[:], b)
	s.lst.notifications.Add(1)
	s.lst.mu.Lock()
	s.lst.last = time.Now()
	s.lst.mu.Unlock()
	if n > *heard+1 {
		h.ForgetKeys() // a gap: some change was not heard
		s.lst.resyncs.Add(1)
	} else {
		h.ForgetKey(id)
	}
	*heard = max(*heard, n)
}

func readCounter(ctx context.Context, conn *pgx.Conn) (int64, error) {
	var v []byte
	err := conn.QueryRow(ctx, `SELECT value FROM tokenvault_meta WHERE name = $1`, changeCounter).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, classify(err)
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: change counter", vault.ErrCorrupt)
	}
	return n, nil
}
