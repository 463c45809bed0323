package pgstore_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenvault/tokenvault/internal/pgtest"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/pgstore"
	"github.com/tokenvault/tokenvault/vault/storetest"
)

// The store is a storetest.HoldReceiptCopier (copies between stores), so
// that suite group runs rather than skips.
var _ storetest.HoldReceiptCopier = (*pgstore.Store)(nil)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// open migrates a fresh database and opens a store on it.
func open(t *testing.T) (*pgstore.Store, *pgtest.DB) {
	t.Helper()
	db := pgtest.New(t)
	if _, _, err := pgstore.Migrate(context.Background(), db.DSN); err != nil {
		t.Fatal(err)
	}
	return openOn(t, db), db
}

func openOn(t *testing.T, db *pgtest.DB) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(context.Background(), db.DSN, pgstore.Options{MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// The shared suite against a real PostgreSQL, every group: the store
// implements each interface it checks (asserted in pgstore.go), and
// storetest.Snapshotter through atRest below.
func TestSuite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) vault.Store {
		s, db := open(t)
		return atRest{s, db, t}
	})
}

// TestAtRestInBackups: RunAtRest on the store's own backup snapshot (the
// suite above searches the database itself).
func TestAtRestInBackups(t *testing.T) {
	storetest.RunAtRest(t, func(t *testing.T) vault.Store {
		s, _ := open(t)
		return s
	})
}

func TestIncrementalBackupRefused(t *testing.T) {
	s, _ := open(t)
	if _, err := s.Snapshot(io.Discard, 7); !errors.Is(err, pgstore.ErrIncremental) {
		t.Fatalf("incremental snapshot: %v", err)
	}
}

// atRest gives RunAtRest what PostgreSQL holds, in place of a backup
// snapshot: a pg_dump of the database (bytea columns in hex, so the
// search also looks for the hex of the id) and every file of the data
// directory after a checkpoint, the write-ahead log and the dead row
// versions an erasure leaves behind included.
type atRest struct {
	*pgstore.Store
	db *pgtest.DB
	t  *testing.T
}

func (a atRest) Snapshot(w io.Writer, _ uint64) (uint64, error) {
	dump := a.db.Dump(a.t)
	w.Write(dump)
	// The hex of every run of the dump's \x… literals, decoded, so that an
	// id inside a bytea value is found as the bytes it is.
	for _, f := range strings.Fields(string(dump)) {
		if h, ok := strings.CutPrefix(f, `\\x`); ok {
			if b, err := hex.DecodeString(h); err == nil {
				w.Write(b)
			}
		}
	}
	a.db.Exec(a.t, "CHECKPOINT")
	dir := a.db.DataDir(a.t)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil // a file that went away (the server owns the directory)
		}
		_, err = w.Write(b)
		return err
	})
	return 0, err
}

// TestAtRestSearchFindsIDs: the at-rest search above sees an id that a
// table does hold in the clear (it would be blind otherwise).
func TestAtRestSearchFindsIDs(t *testing.T) {
	s, db := open(t)
	db.Exec(t, `CREATE TABLE leak (a text, b bytea)`)
	db.Exec(t, `INSERT INTO leak VALUES ('zz-text-subject-1', convert_to('zz-bytea-subject-2', 'UTF8'))`)
	db.Exec(t, `DELETE FROM leak`)
	var b bytes.Buffer
	if _, err := (atRest{s, db, t}).Snapshot(&b, 0); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"zz-text-subject-1", "zz-bytea-subject-2"} {
		if !bytes.Contains(b.Bytes(), []byte(id)) {
			t.Errorf("the search misses %s (deleted row)", id)
		}
	}
}

func TestSchemaVersionChecked(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	_, err := pgstore.Open(ctx, db.DSN, pgstore.Options{})
	var se *pgstore.SchemaError
	if !errors.As(err, &se) || !errors.Is(err, pgstore.ErrSchema) || se.Database != 0 || !strings.Contains(err.Error(), "tokenvault store migrate --config FILE") {
		t.Fatalf("Open of an unmigrated database: %v", err)
	}
	from, to, err := pgstore.Migrate(ctx, db.DSN)
	if err != nil || from != 0 || to != pgstore.SchemaVersion() {
		t.Fatalf("Migrate = %d, %d, %v", from, to, err)
	}
	if from, to, err := pgstore.Migrate(ctx, db.DSN); err != nil || from != to {
		t.Fatalf("second Migrate = %d, %d, %v; want nothing to do", from, to, err)
	}
	openOn(t, db)
	// A database migrated by a newer release.
	db.Exec(t, `UPDATE tokenvault_schema_version SET version = version + 1`)
	_, err = pgstore.Open(ctx, db.DSN, pgstore.Options{})
	if !errors.As(err, &se) || se.Database != pgstore.SchemaVersion()+1 || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open of a newer schema: %v", err)
	}
	if _, _, err := pgstore.Migrate(ctx, db.DSN); !errors.Is(err, pgstore.ErrSchema) {
		t.Fatalf("Migrate of a newer schema: %v", err)
	}
}

func TestBadDSN(t *testing.T) {
	const secret = "hunter2-secret"
	for _, dsn := range []string{
		"postgres://u:" + secret + "@127.0.0.1:1/db?sslmode=bogus",
		"host=127.0.0.1 port=notaport password=" + secret,
	} {
		_, err := pgstore.Open(context.Background(), dsn, pgstore.Options{})
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("Open(bad DSN) = %v; want an error without the password", err)
		}
	}
}
