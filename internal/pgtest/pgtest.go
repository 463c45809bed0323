// Package pgtest gives integration tests a real PostgreSQL: one throwaway
// server per test binary, one fresh database per test.
//
// [New] picks, in order:
//
//  1. a running server named by TOKENVAULT_PG_ADMIN_DSN (a DSN of a role
//     that may create databases), shared with whatever else uses it;
//  2. a server this package starts on first use with
//     deploy/postgres-dev/start.sh, from the binaries in
//     TOKENVAULT_PG_BIN or Debian's /usr/lib/postgresql/15/bin, in a
//     temporary directory, on a free loopback port, fsync on. [Main]
//     stops it and removes its directory after the tests.
//
// Without either, tests are skipped with a message saying how to get a
// server, except when CI=true: CI must run them, so there they fail. No
// test stands a fake in for PostgreSQL.
package pgtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const modulePath = "github.com/tokenvault/tokenvault"

// DB is one fresh database for one test.
type DB struct {
	// DSN connects to the database (as a role that owns it).
	DSN string
	// Name is the database's name.
	Name string
	srv  *server
}

// server is the PostgreSQL server of this test binary.
type server struct {
	admin   string // DSN of the postgres database, to create the others
	dir     string // the started server's directory ("" for an external one)
	port    string
	binDir  string
	started bool // by this package: Main stops it
}

var (
	once    sync.Once
	srv     *server
	srvErr  error // why there is no server (skip or fail)
	missing bool  // srvErr is "no PostgreSQL here" (skip locally) rather than a failure
	skips   struct {
		sync.Mutex
		n int
	}
)

// Available reports why there is no PostgreSQL for tests (nil: there
// is one, starting it if needed), and whether t should skip rather than
// fail for it: true only for a missing installation outside CI. For
// callers that cannot let New skip (a testscript command).
func Available() (err error, skip bool) {
	once.Do(start)
	return srvErr, srvErr != nil && missing && os.Getenv("CI") != "true"
}

// New returns a new, empty database for t, dropped when t ends. It skips
// t (fails it under CI=true) when no PostgreSQL is available.
func New(t testing.TB) *DB {
	t.Helper()
	once.Do(start)
	if srvErr != nil {
		if missing && os.Getenv("CI") != "true" {
			skips.Lock()
			skips.n++
			skips.Unlock()
			t.Skip("pgtest: " + srvErr.Error())
		}
		t.Fatal("pgtest: " + srvErr.Error())
	}
	name := "tv_" + randomHex(t, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := srv.exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		// FORCE: a test that failed may leave connections open.
		if err := srv.exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("pgtest: drop database %s: %v", name, err)
		}
	})
	dsn, err := withDatabase(srv.admin, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return &DB{DSN: dsn, Name: name, srv: srv}
}

// DataDir is the started server's data directory (every database of the
// test binary), for tests that search what PostgreSQL wrote to disk. It
// skips t for an external server.
func (db *DB) DataDir(t testing.TB) string {
	t.Helper()
	if !db.srv.started {
		t.Skip("pgtest: the data directory of an external server (TOKENVAULT_PG_ADMIN_DSN) is not readable here")
	}
	return filepath.Join(db.srv.dir, "data")
}

// EnableTLS turns TLS on for the started server (every database of the
// test binary; plaintext connections keep working), with the server
// certificate and key in certFile and keyFile (PEM). It skips t for an
// external server.
func (db *DB) EnableTLS(t testing.TB, certFile, keyFile string) {
	t.Helper()
	if !db.srv.started {
		t.Skip("pgtest: TLS settings of an external server (TOKENVAULT_PG_ADMIN_DSN) are not this test's")
	}
	// PostgreSQL insists that its key is private to the server's user.
	for src, dst := range map[string]string{certFile: "server.crt", keyFile: "server.key"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		path := filepath.Join(db.srv.dir, dst)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		if err := chownToServer(path); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, stmt := range []string{
		"ALTER SYSTEM SET ssl_cert_file = '" + filepath.Join(db.srv.dir, "server.crt") + "'",
		"ALTER SYSTEM SET ssl_key_file = '" + filepath.Join(db.srv.dir, "server.key") + "'",
		"ALTER SYSTEM SET ssl = on",
		"SELECT pg_reload_conf()",
	} {
		if err := db.srv.exec(ctx, stmt); err != nil {
			t.Fatalf("pgtest: %s: %v", stmt, err)
		}
	}
}

// chownToServer gives path to the user the server runs as: postgres when
// we are root (start.sh), else ourselves already.
func chownToServer(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(path, uid, gid)
}

// Dump returns a plain-text pg_dump of the database (schema and rows).
func (db *DB) Dump(t testing.TB) []byte {
	t.Helper()
	bin := "pg_dump"
	if db.srv.binDir != "" {
		bin = filepath.Join(db.srv.binDir, "pg_dump")
	}
	out, err := exec.Command(bin, "--no-owner", "--dbname", db.DSN).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("pgtest: pg_dump: %v: %s", err, ee.Stderr)
		}
		t.Fatalf("pgtest: pg_dump: %v", err)
	}
	return out
}

// Exec runs one statement on the database as its owner (test setup only).
func (db *DB) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, db.DSN)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

// Main runs the tests (call it as os.Exit(pgtest.Main(m)) from TestMain),
// then stops a server it started and removes its directory, and says how
// many tests were skipped for want of PostgreSQL and how to run them.
// m is a *testing.M, or what wraps one (testscript.Main takes the same).
func Main(m interface{ Run() int }) int {
	code := m.Run()
	if srv != nil && srv.started {
		srv.stop()
	}
	skips.Lock()
	n := skips.n
	skips.Unlock()
	if n > 0 {
		var w io.Writer = os.Stderr
		if !testing.Verbose() {
			if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
				defer tty.Close()
				w = tty
			}
		}
		fmt.Fprintf(w, "pgtest: skipped %d test(s) that need PostgreSQL (%v); with CI=true they fail instead\n", n, srvErr)
	}
	return code
}

func start() {
	if dsn := os.Getenv("TOKENVAULT_PG_ADMIN_DSN"); dsn != "" {
		srv = &server{admin: dsn}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.exec(ctx, "SELECT 1"); err != nil {
			srvErr = fmt.Errorf("TOKENVAULT_PG_ADMIN_DSN: %w", redact(err, dsn))
		}
		return
	}
	binDir := os.Getenv("TOKENVAULT_PG_BIN")
	if binDir == "" {
		binDir = "/usr/lib/postgresql/15/bin"
	}
	if _, err := os.Stat(filepath.Join(binDir, "initdb")); err != nil {
		missing = true
		srvErr = fmt.Errorf("no PostgreSQL binaries in %s: `apt-get install postgresql-15`, set TOKENVAULT_PG_BIN to a directory with initdb, pg_ctl and pg_dump, or TOKENVAULT_PG_ADMIN_DSN to a server", binDir)
		return
	}
	root, err := moduleRoot()
	if err != nil {
		srvErr = err
		return
	}
	parent, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		srvErr = err
		return
	}
	// The server runs as postgres when we are root: it must be able to
	// reach its directory.
	if err := os.Chmod(parent, 0o755); err != nil {
		srvErr = err
		return
	}
	dir := filepath.Join(parent, "pg")
	cmd := exec.Command("bash", filepath.Join(root, "deploy/postgres-dev/start.sh"), "start", dir)
	cmd.Env = append(os.Environ(), "TOKENVAULT_PG_BIN="+binDir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		os.RemoveAll(parent)
		srvErr = fmt.Errorf("starting PostgreSQL: %v: %s", err, strings.TrimSpace(stderr.String()))
		return
	}
	port := strings.TrimSpace(string(out))
	srv = &server{dir: dir, port: port, binDir: binDir, started: true,
		admin: "postgres://postgres@127.0.0.1:" + port + "/postgres?sslmode=disable"}
}

func (s *server) stop() {
	root, err := moduleRoot()
	if err == nil {
		cmd := exec.Command("bash", filepath.Join(root, "deploy/postgres-dev/start.sh"), "stop", s.dir)
		cmd.Env = append(os.Environ(), "TOKENVAULT_PG_BIN="+s.binDir)
		cmd.Run()
	}
	os.RemoveAll(filepath.Dir(s.dir))
}

func (s *server) exec(ctx context.Context, sql string) error {
	c, err := pgx.Connect(ctx, s.admin)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, sql)
	return err
}

// withDatabase is dsn (a URL or key=value DSN) naming database name.
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", errors.New("TOKENVAULT_PG_ADMIN_DSN is not a valid URL")
		}
		u.Path = "/" + name
		return u.String(), nil
	}
	return dsn + " dbname=" + name, nil
}

// redact keeps a DSN (it may hold a password) out of an error text.
func redact(err error, dsn string) error {
	if strings.Contains(err.Error(), dsn) {
		return errors.New(strings.ReplaceAll(err.Error(), dsn, "<dsn>"))
	}
	return err
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && declaresModule(data) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the " + modulePath + " module (deploy/postgres-dev/start.sh not found)")
		}
		dir = parent
	}
}

func declaresModule(gomod []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == modulePath
		}
	}
	return false
}

// PgDump writes a custom-format pg_dump of the database dsn names to
// file (the database-level backup an operator takes).
func PgDump(dsn, file string) error {
	return runTool("pg_dump", "--format=custom", "--no-owner", "--file", file, "--dbname", dsn)
}

// PgRestore restores file (from PgDump) into the empty database dsn
// names, stopping at the first error.
func PgRestore(file, dsn string) error {
	return runTool("pg_restore", "--no-owner", "--exit-on-error", "--dbname", dsn, file)
}

// runTool runs one of PostgreSQL's client programs from the binaries
// of the started server (else TOKENVAULT_PG_BIN, Debian's directory, or
// PATH).
func runTool(name string, args ...string) error {
	dir := os.Getenv("TOKENVAULT_PG_BIN")
	if srv != nil && srv.binDir != "" {
		dir = srv.binDir
	} else if dir == "" {
		dir = "/usr/lib/postgresql/15/bin"
	}
	bin := filepath.Join(dir, name)
	if _, err := os.Stat(bin); err != nil {
		bin = name
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %v: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
