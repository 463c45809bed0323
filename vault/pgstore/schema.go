package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The schema: schema/NNNN_name.sql, applied in order, each in one
// transaction with the version it reaches. A migration is never edited
// once released; a change is a new file.
//
//go:embed schema/*.sql
var schemaFiles embed.FS

// migration is one schema file.
type migration struct {
	version int
	name    string
	sql     string
}

func migrations() ([]migration, error) {
	names, err := fs.Glob(schemaFiles, "schema/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, n := range names {
		base := path.Base(n)
		v, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return nil, fmt.Errorf("pgstore: schema file %s: no version number", base)
		}
		b, err := schemaFiles.ReadFile(n)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("pgstore: schema files not numbered 1, 2, ...: %s", m.name)
		}
	}
	return ms, nil
}

// SchemaVersion is the schema version this binary knows (the number of
// its last schema file).
func SchemaVersion() int {
	ms, err := migrations()
	if err != nil || len(ms) == 0 {
		panic("pgstore: embedded schema: " + fmt.Sprint(err))
	}
	return ms[len(ms)-1].version
}

// ErrSchema: the database's schema is not the version this binary
// knows. The message says what to do.
var ErrSchema = errors.New("pgstore: database schema version mismatch")

// SchemaError says which versions differ.
type SchemaError struct {
	Database, Binary int
}

func (e *SchemaError) Error() string {
	if e.Database < e.Binary {
		what := fmt.Sprintf("is at schema version %d", e.Database)
		if e.Database == 0 {
			what = "has no tokenvault schema"
		}
		return fmt.Sprintf("pgstore: the database %s, this tokenvault needs version %d: run `tokenvault store migrate --config FILE` (with this binary) first", what, e.Binary)
	}
	return fmt.Sprintf("pgstore: the database is at schema version %d, newer than this tokenvault knows (%d): run a tokenvault release that knows it (the database was migrated by a newer one)", e.Database, e.Binary)
}

func (e *SchemaError) Is(target error) bool { return target == ErrSchema }

// undefinedTable is PostgreSQL's SQLSTATE for a missing relation.
const undefinedTable = "42P01"

// databaseVersion reads the schema version; 0 for a database without
// tokenvault's schema.
func databaseVersion(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (int, error) {
	var v int64
	err := q.QueryRow(ctx, `SELECT version FROM tokenvault_schema_version`).Scan(&v)
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe) && pe.Code == undefinedTable, errors.Is(err, pgx.ErrNoRows):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("pgstore: reading the schema version: %w", err)
	}
	return int(v), nil
}

func checkSchema(ctx context.Context, pool *pgxpool.Pool) error {
	v, err := databaseVersion(ctx, pool)
	if err != nil {
		return err
	}
	if want := SchemaVersion(); v != want {
		return &SchemaError{Database: v, Binary: want}
	}
	return nil
}

// Migrate brings the database named by dsn to this binary's schema
// version and returns the versions before and after. A database at a
// newer version is refused (*SchemaError). Each step is one transaction
// (PostgreSQL's DDL is transactional): a failed migration leaves the
// database at the version before it. Two migrations at once do not
// both apply a step: the second fails on the first's tables and changes
// nothing.
func Migrate(ctx context.Context, dsn string) (from, to int, err error) {
	return migrateTo(ctx, dsn, 0)
}

// migrateTo is Migrate up to version target (0: the last one); tests make
// databases of older versions with it.
func migrateTo(ctx context.Context, dsn string, target int) (from, to int, err error) {
	ms, err := migrations()
	if err != nil {
		return 0, 0, err
	}
	if target > 0 && target < len(ms) {
		ms = ms[:target]
	}
	pool, err := openPool(ctx, dsn, 2, nil)
	if err != nil {
		return 0, 0, err
	}
	defer pool.Close()
	from, err = databaseVersion(ctx, pool)
	if err != nil {
		return 0, 0, err
	}
	want := ms[len(ms)-1].version
	if from > want {
		return from, from, &SchemaError{Database: from, Binary: want}
	}
	to = from
	for _, m := range ms[from:] {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if m.version == 1 {
				if _, err := tx.Exec(ctx, `CREATE TABLE tokenvault_schema_version (version bigint NOT NULL)`); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `INSERT INTO tokenvault_schema_version (version) VALUES (0)`); err != nil {
					return err
				}
			}
			// The version row guards the step: a concurrent migration
			// waits here and then finds the version moved on.
			v, err := lockedVersion(ctx, tx)
			if err != nil {
				return err
			}
			if v != m.version-1 {
				return fmt.Errorf("pgstore: the schema version changed to %d during the migration (another migration ran): run it again", v)
			}
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `UPDATE tokenvault_schema_version SET version = $1`, int64(m.version))
			return err
		})
		if err != nil {
			return from, to, fmt.Errorf("pgstore: applying schema %s: %w", m.name, err)
		}
		to = m.version
	}
	return from, to, nil
}

func lockedVersion(ctx context.Context, tx pgx.Tx) (int, error) {
	var v int64
	err := tx.QueryRow(ctx, `SELECT version FROM tokenvault_schema_version FOR UPDATE`).Scan(&v)
	return int(v), err
}
