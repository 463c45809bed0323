package audit

// The audit log in PostgreSQL: one trail across replicas (README "The
// audit log in the database").
//
// With Options.DB the writer puts every group of lines into the table
// tokenvault_audit in one statement (COPY: all or nothing) before it
// appends the same bytes to its file: a reveal's entry is durable in the
// database before its value leaves, and the file stays a local copy of
// the same chain (same seq, same hashes), verified by the same code. A
// replica's chain is keyed by its replica id; rows name subjects and
// tokens by their keyed hashes only.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// OpDBStart is the op of the notice that starts a replica's chain in the
// database when the file already held entries (the sink was switched on
// later): the verifier accepts a replica's first row only if it is seq 1,
// this notice, or a continue entry, so that deleting a replica's oldest
// rows is detected.
const OpDBStart = "audit-db-start"

// The schema: pgschema/NNNN_name.sql, its own version table (the store's
// schema is vault/pgstore's and versioned apart, so either can move
// without the other). A released file is never edited.
//
//go:embed pgschema/*.sql
var pgSchemaFiles embed.FS

// ErrDBSchema: the database's audit schema is not the version this
// binary knows.
var ErrDBSchema = errors.New("audit: database schema version mismatch")

type pgMigration struct {
	version int
	name    string
	sql     string
}

func pgMigrations() ([]pgMigration, error) {
	names, err := fs.Glob(pgSchemaFiles, "pgschema/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []pgMigration
	for _, n := range names {
		base := path.Base(n)
		v, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return nil, fmt.Errorf("audit: schema file %s: no version number", base)
		}
		b, err := pgSchemaFiles.ReadFile(n)
		if err != nil {
			return nil, err
		}
		ms = append(ms, pgMigration{v, base, string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("audit: schema files not numbered 1, 2, ...: %s", m.name)
		}
	}
	return ms, nil
}

// DBSchemaVersion is the audit schema version this binary knows.
func DBSchemaVersion() int {
	ms, err := pgMigrations()
	if err != nil || len(ms) == 0 {
		panic("audit: embedded schema: " + fmt.Sprint(err))
	}
	return ms[len(ms)-1].version
}

const pgUndefinedTable = "42P01"

func pgAuditVersion(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, lock bool) (int, error) {
	sql := `SELECT version FROM tokenvault_audit_schema_version`
	if lock {
		sql += ` FOR UPDATE`
	}
	var v int64
	err := q.QueryRow(ctx, sql).Scan(&v)
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe) && pe.Code == pgUndefinedTable, errors.Is(err, pgx.ErrNoRows):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("audit: reading the schema version: %w", err)
	}
	return int(v), nil
}

// MigratePostgres brings the audit tables of the database named by dsn
// to this binary's version (tokenvault store migrate calls it), each
// step in one transaction, and returns the versions before and after.
func MigratePostgres(ctx context.Context, dsn string) (from, to int, err error) {
	ms, err := pgMigrations()
	if err != nil {
		return 0, 0, err
	}
	pool, err := pgOpenPool(ctx, dsn)
	if err != nil {
		return 0, 0, err
	}
	defer pool.Close()
	if from, err = pgAuditVersion(ctx, pool, false); err != nil {
		return 0, 0, err
	}
	want := ms[len(ms)-1].version
	if from > want {
		return from, from, fmt.Errorf("%w: the database's audit schema is version %d, newer than this tokenvault knows (%d)", ErrDBSchema, from, want)
	}
	to = from
	for _, m := range ms[from:] {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if m.version == 1 {
				if _, err := tx.Exec(ctx, `CREATE TABLE tokenvault_audit_schema_version (version bigint NOT NULL)`); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `INSERT INTO tokenvault_audit_schema_version (version) VALUES (0)`); err != nil {
					return err
				}
			}
			// The version row guards the step against a concurrent
			// migration (as in vault/pgstore).
			v, err := pgAuditVersion(ctx, tx, true)
			if err != nil {
				return err
			}
			if v != m.version-1 {
				return fmt.Errorf("audit: the schema version changed to %d during the migration (another migration ran): run it again", v)
			}
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `UPDATE tokenvault_audit_schema_version SET version = $1`, int64(m.version))
			return err
		})
		if err != nil {
			return from, to, fmt.Errorf("audit: applying schema %s: %w", m.name, err)
		}
		to = m.version
	}
	return from, to, nil
}

func pgOpenPool(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors quote the DSN, which may hold a secret.
		return nil, errors.New("audit: the DSN is not a valid PostgreSQL connection string (key=value or postgres:// URL)")
	}
	cfg.MaxConns = 4 // one writer, plus the console's and verify's queries
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("audit: connecting to the database: %w", err)
	}
	return pool, nil
}

// DB is the audit table of one PostgreSQL database: where a Log with
// Options.DB commits, and where Verify and the trail queries read.
type DB struct {
	pool *pgxpool.Pool
	// Timeout bounds each of the writer's statements (default 5s): a
	// database that hangs refuses audited calls instead of holding them.
	Timeout time.Duration
}

// OpenDB connects to the database named by dsn and checks that its
// audit schema is this binary's (else: run tokenvault store migrate).
func OpenDB(ctx context.Context, dsn string) (*DB, error) {
	pool, err := pgOpenPool(ctx, dsn)
	if err != nil {
		return nil, err
	}
	v, err := pgAuditVersion(ctx, pool, false)
	if err == nil && v != DBSchemaVersion() {
		err = fmt.Errorf("%w: the database's audit schema is version %d, this tokenvault needs %d: run `tokenvault store migrate --config FILE` with this binary", ErrDBSchema, v, DBSchemaVersion())
	}
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &DB{pool: pool, Timeout: 5 * time.Second}, nil
}

// Close closes the connections.
func (d *DB) Close() { d.pool.Close() }

// dbRow is one line of a group, by its place in the group's buffer.
type dbRow struct {
	seq              uint64
	start, end       int // the line, without its newline
	subjects, tokens []string
}

// rowOf lists the keyed hashes an entry is found by.
func rowOf(e *Entry, start, end int) dbRow {
	r := dbRow{seq: e.Seq, start: start, end: end}
	add := func(list []string, h string) []string {
		if h == "" || (len(list) > 0 && list[len(list)-1] == h) {
			return list
		}
		for _, x := range list {
			if x == h {
				return list
			}
		}
		return append(list, h)
	}
	r.subjects = add(r.subjects, e.SubjectHash)
	for _, it := range e.Items {
		r.subjects = add(r.subjects, it.SubjectHash)
		r.tokens = add(r.tokens, it.Token)
	}
	return r
}

func (d *DB) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d.Timeout)
}

// insert writes a group's rows in one COPY: all of them or none.
func (d *DB) insert(replica string, t time.Time, rows []dbRow, buf []byte) error {
	ctx, cancel := d.ctx()
	defer cancel()
	src := make([][]any, len(rows))
	for i, r := range rows {
		src[i] = []any{replica, int64(r.seq), t, nonNil(r.subjects), nonNil(r.tokens), buf[r.start:r.end]}
	}
	_, err := d.pool.CopyFrom(ctx, pgx.Identifier{"tokenvault_audit"},
		[]string{"replica", "seq", "time", "subject_hashes", "token_hashes", "line"}, pgx.CopyFromRows(src))
	return err
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// tail returns the last row of replica's chain (seq 0: none).
func (d *DB) tail(ctx context.Context, replica string) (uint64, []byte, error) {
	var seq int64
	var line []byte
	err := d.pool.QueryRow(ctx, `SELECT seq, line FROM tokenvault_audit WHERE replica = $1 ORDER BY seq DESC LIMIT 1`, replica).Scan(&seq, &line)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, err
	}
	return uint64(seq), line, nil
}

// after returns up to limit lines of replica's chain after seq, in order.
func (d *DB) after(ctx context.Context, replica string, seq uint64, limit int) ([][]byte, error) {
	rows, err := d.pool.Query(ctx, `SELECT line FROM tokenvault_audit WHERE replica = $1 AND seq > $2 ORDER BY seq LIMIT $3`, replica, int64(seq), limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]byte, error) {
		var b []byte
		err := r.Scan(&b)
		return b, err
	})
}

// Replicas lists the replica ids that have rows.
func (d *DB) Replicas(ctx context.Context) ([]string, error) {
	rows, err := d.pool.Query(ctx, `SELECT DISTINCT replica FROM tokenvault_audit ORDER BY replica`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// ReplicaReport is Verify's result for one replica's chain.
type ReplicaReport struct {
	Replica string
	Report
	// Starts says where the chain in the database begins when not at
	// seq 1: the entries before it are in the replica's files.
	Starts string
	Err    error
}

// Verify checks every replica's chain in the table (only replica's if
// it is not ""), with the file verifier: every line's hash, seq and prev,
// every checkpoint's signature when pub is set, and that each row's
// replica and seq columns are the line's own (a row moved or renumbered
// is detected as such). It returns one report per replica; err is set if
// any chain failed (or the table could not be read).
func (d *DB) Verify(ctx context.Context, pub ed25519.PublicKey, replica string) ([]ReplicaReport, error) {
	replicas := []string{replica}
	if replica == "" {
		var err error
		if replicas, err = d.Replicas(ctx); err != nil {
			return nil, err
		}
	}
	var out []ReplicaReport
	var errs []error
	for _, r := range replicas {
		rep := d.verifyReplica(ctx, pub, r)
		if rep.Err != nil {
			errs = append(errs, fmt.Errorf("replica %q: %w", Clip(r), rep.Err))
		}
		out = append(out, rep)
	}
	return out, errors.Join(errs...)
}

func (d *DB) verifyReplica(ctx context.Context, pub ed25519.PublicKey, replica string) ReplicaReport {
	out := ReplicaReport{Replica: replica}
	rows, err := d.pool.Query(ctx, `SELECT replica, seq, line FROM tokenvault_audit WHERE replica = $1 ORDER BY seq`, replica)
	if err != nil {
		out.Err = err
		return out
	}
	defer rows.Close()
	rr := &rowReader{rows: rows}
	c := newChain(pub)
	c.stream, c.recent = true, make([]recentLine, recentLines)
	first, err := rr.peek()
	switch {
	case err == io.EOF:
		out.Err = fmt.Errorf("%w: no rows", ErrTampered)
		return out
	case err != nil:
		out.Err = err
		return out
	case first.Seq == 1, first.Type == TypeContinue:
		// The chain's start, or a rotated file's continue entry (the
		// verifier takes its word for what came before, as for files).
	case first.Type == TypeNotice && first.Op == OpDBStart:
		c.rep.Entries, c.rep.LastHash = first.Seq-1, first.Prev
		out.Starts = fmt.Sprintf("at entry %d (the sink was switched on then; the entries before are in the replica's files)", first.Seq)
	default:
		out.Err = fmt.Errorf("%w: the first row is entry %d, neither the chain's start nor where the database sink started: rows were deleted", ErrTampered, first.Seq)
		return out
	}
	out.Report, out.Err = c.file(rr, "", false)
	if out.Err == nil && rr.err != nil {
		out.Err = rr.err
	}
	return out
}

// rowReader streams a replica's rows as the lines of a file, checking
// that each row's columns are its line's.
type rowReader struct {
	rows pgx.Rows
	buf  bytes.Buffer
	err  error
	n    int
}

// peek reads the first row without consuming it.
func (r *rowReader) peek() (Entry, error) {
	if err := r.next(); err != nil {
		return Entry{}, err
	}
	e, err := ParseLine(bytes.TrimSuffix(r.buf.Bytes(), []byte("\n")))
	if err != nil {
		return Entry{}, fmt.Errorf("%w: the first row: %v", ErrTampered, err)
	}
	return e, nil
}

func (r *rowReader) next() error {
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return io.EOF
	}
	r.n++
	var replica string
	var seq int64
	var line []byte
	if err := r.rows.Scan(&replica, &seq, &line); err != nil {
		return err
	}
	e, err := ParseLine(line)
	if err == nil && (e.Seq != uint64(seq) || e.Replica != replica) {
		err = fmt.Errorf("row %d (seq column %d) holds entry %d of replica %q: rows were moved or renumbered", r.n, seq, e.Seq, Clip(e.Replica))
	}
	if err != nil && !errors.Is(err, ErrFormat) {
		return fmt.Errorf("%w: %v", ErrTampered, err)
	}
	// A malformed line goes to the verifier, which names it.
	r.buf.Write(line)
	r.buf.WriteByte('\n')
	return nil
}

func (r *rowReader) Read(p []byte) (int, error) {
	for r.buf.Len() == 0 {
		if err := r.next(); err != nil {
			if err != io.EOF {
				r.err = err
			}
			return 0, err
		}
	}
	return r.buf.Read(p)
}

// Trail returns the rows of every replica that name the subject whose
// keyed hash is subjectHash, or one of tokens (keyed token hashes), in
// the entry or an item: the newest limit of them (limit <= 0: all),
// oldest first. An indexed query (GIN on the hash arrays); Replica in
// each entry says which server wrote it. It does not verify the chains
// (Verify does).
func (d *DB) Trail(ctx context.Context, subjectHash string, tokens []string, limit int) ([]TrailEntry, error) {
	lim := any(nil) // LIMIT NULL: all
	if limit > 0 {
		lim = limit
	}
	rows, err := d.pool.Query(ctx, `SELECT line FROM tokenvault_audit
		WHERE subject_hashes @> ARRAY[$1::text] OR token_hashes && $2::text[]
		ORDER BY time DESC, replica, seq DESC LIMIT $3`, subjectHash, nonNil(tokens), lim)
	if err != nil {
		return nil, fmt.Errorf("audit: reading the trail: %w", err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("audit: reading the trail: %w", err)
	}
	out := make([]TrailEntry, len(lines))
	for i, ln := range lines {
		e, err := ParseLine(ln)
		if err != nil {
			return nil, fmt.Errorf("audit: a trail row: %w", err)
		}
		out[len(lines)-1-i] = TrailEntry{Entry: e}
	}
	return out, nil
}
