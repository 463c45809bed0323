package pgstore

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokenvault/tokenvault/vault"
)

// Errors of an unreachable database.
//
// A database that is down, restarting or failing over to its standby
// shows up in pgx as a refused or timed-out connection, a connection that
// ends mid-statement, or a server error of the connection or shutdown
// classes. The store reports all of them as [vault.ErrStoreUnavailable]
// (still unwrapping to pgx's error), so that callers get UNAVAILABLE and
// retry, rather than INTERNAL, which says "a bug": a failover is an
// expected event. Every statement goes through [dbPool], which does the
// mapping in one place.

// unavailableError is a pgx error of an unreachable database.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string {
	return "pgstore: the database is unavailable: " + e.err.Error()
}

func (e *unavailableError) Unwrap() []error { return []error{vault.ErrStoreUnavailable, e.err} }

// classify wraps err as unavailable when it says the database cannot be
// reached; other errors are returned as they are. A context that ended
// stays what it is (the caller's deadline, not the database).
func classify(err error) error {
	if err == nil || errors.Is(err, vault.ErrStoreUnavailable) || !unreachable(err) {
		return err
	}
	return &unavailableError{err}
}

func unreachable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case len(pe.Code) == 5 && pe.Code[:2] == "08": // connection exception
			return true
		case pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03": // admin or crash shutdown, cannot connect now
			return true
		case pe.Code == "53300": // too many connections
			return true
		case pe.Code == "25006": // read-only transaction: a standby, or a primary being demoted
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// dbPool is the pool with every statement's error classified. Methods it
// does not override are pgxpool's own.
type dbPool struct{ *pgxpool.Pool }

func (p dbPool) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	tag, err := p.Pool.Exec(ctx, sql, args...)
	return tag, classify(err)
}

func (p dbPool) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	rows, err := p.Pool.Query(ctx, sql, args...)
	if err != nil {
		return rows, classify(err)
	}
	return classifiedRows{rows}, nil
}

func (p dbPool) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return classifiedRow{p.Pool.QueryRow(ctx, sql, args...)}
}

func (p dbPool) Begin(ctx context.Context) (pgx.Tx, error) {
	tx, err := p.Pool.Begin(ctx)
	return tx, classify(err)
}

func (p dbPool) BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error) {
	tx, err := p.Pool.BeginTx(ctx, opts)
	return tx, classify(err)
}

type classifiedRow struct{ pgx.Row }

func (r classifiedRow) Scan(dest ...any) error { return classify(r.Row.Scan(dest...)) }

type classifiedRows struct{ pgx.Rows }

func (r classifiedRows) Err() error { return classify(r.Rows.Err()) }

func (r classifiedRows) Scan(dest ...any) error { return classify(r.Rows.Scan(dest...)) }
