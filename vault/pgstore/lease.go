package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Leases let background jobs (the retention purge, resuming purges a
// crashed replica left, and the like) run on one replica at a time: a
// replica runs the job only while it holds the job's lease, renews it
// while it works, and when it dies the lease expires after its TTL and
// another replica takes it.
//
// A lease is a row of tokenvault_leases taken with one conditional
// upsert, against the database's clock (now()), so replicas' clocks do
// not matter. Portable on purpose: no advisory locks, which distributed
// PostgreSQL-compatible engines lack or scope differently. A holder that
// stalls past the TTL (a long GC pause, a partition) can overlap with
// the next holder for the rest of a statement, so the jobs behind leases
// are idempotent; the lease keeps them from running everywhere at once,
// it is not what makes them correct.

// TryLease takes the lease name for holder for ttl, or renews it if
// holder has it. It reports whether holder holds it now; false when
// another holder's lease has not expired.
func (s *Store) TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if name == "" || holder == "" || ttl <= 0 {
		return false, errors.New("pgstore: a lease needs a name, a holder and a positive TTL")
	}
	var got string
	err := s.pool.QueryRow(ctx, `INSERT INTO tokenvault_leases (name, holder, expires_at) VALUES ($1, $2, now() + $3::interval)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE tokenvault_leases.holder = excluded.holder OR tokenvault_leases.expires_at < now()
		RETURNING holder`, name, holder, ttl).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("pgstore: lease %s: %w", name, err)
	}
	return got == holder, nil
}

// ReleaseLease gives up holder's lease name (at shutdown, so that another
// replica need not wait for it to expire). Releasing a lease one does not
// hold does nothing.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM tokenvault_leases WHERE name = $1 AND holder = $2`, name, holder)
	if err != nil {
		return fmt.Errorf("pgstore: lease %s: %w", name, err)
	}
	return nil
}
