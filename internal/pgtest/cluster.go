package pgtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Cluster is a primary with a synchronous streaming standby, started for
// one test (a failover test kills the primary, so it cannot be the
// binary's shared server): deploy/postgres-dev/start.sh starts the
// primary, then the standby from pg_basebackup -R, and makes the primary
// wait for the standby on every commit (synchronous_standby_names, with
// synchronous_commit on). So what the primary acknowledges, the standby
// holds, and promoting the standby loses nothing acknowledged.
type Cluster struct {
	PrimaryPort, StandbyPort string
	dir, binDir, script      string
	killed                   bool
}

// NewCluster starts a primary and its standby for t, stopped and removed
// when t ends. It skips t (fails it under CI=true) without PostgreSQL
// binaries: an external server (TOKENVAULT_PG_ADMIN_DSN) cannot be
// killed and promoted, so it does not count.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	binDir := os.Getenv("TOKENVAULT_PG_BIN")
	if binDir == "" {
		binDir = "/usr/lib/postgresql/15/bin"
	}
	if _, err := os.Stat(filepath.Join(binDir, "pg_basebackup")); err != nil {
		msg := fmt.Sprintf("pgtest: a primary and standby need PostgreSQL's binaries (initdb, pg_ctl, pg_basebackup) in %s: `apt-get install postgresql-15`, or set TOKENVAULT_PG_BIN", binDir)
		if os.Getenv("CI") != "true" {
			skips.Lock()
			skips.n++
			skips.Unlock()
			t.Skip(msg)
		}
		t.Fatal(msg)
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal("pgtest: ", err)
	}
	parent, err := os.MkdirTemp("", "pgtest-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	// The servers run as postgres when we are root.
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	c := &Cluster{dir: parent, binDir: binDir, script: filepath.Join(root, "deploy/postgres-dev/start.sh")}
	t.Cleanup(func() {
		c.run(t, "stop", c.standbyDir())
		if !c.killed {
			c.run(t, "stop", c.primaryDir())
		}
		os.RemoveAll(parent)
	})
	out, err := c.run(t, "start", c.primaryDir())
	if err != nil {
		t.Fatalf("pgtest: starting the primary: %v", err)
	}
	c.PrimaryPort = out
	if out, err = c.run(t, "standby", c.PrimaryPort, c.standbyDir()); err != nil {
		t.Fatalf("pgtest: starting the standby: %v", err)
	}
	c.StandbyPort = out
	return c
}

func (c *Cluster) primaryDir() string { return filepath.Join(c.dir, "primary") }
func (c *Cluster) standbyDir() string { return filepath.Join(c.dir, "standby") }

// run runs start.sh and returns its trimmed output.
func (c *Cluster) run(t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{c.script}, args...)...)
	cmd.Env = append(os.Environ(), "TOKENVAULT_PG_BIN="+c.binDir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// DSN connects to database on whichever of the two servers is the
// primary: both hosts, with target_session_attrs=read-write, as a
// deployment's DSN names a primary and its standby.
func (c *Cluster) DSN(database string) string {
	return "host=127.0.0.1,127.0.0.1 port=" + c.PrimaryPort + "," + c.StandbyPort +
		" user=postgres dbname=" + database + " sslmode=disable target_session_attrs=read-write connect_timeout=2"
}

// PrimaryDSN connects to database on the primary alone (setup).
func (c *Cluster) PrimaryDSN(database string) string {
	return "host=127.0.0.1 port=" + c.PrimaryPort + " user=postgres dbname=" + database + " sslmode=disable"
}

// KillPrimary sends SIGKILL to the primary's postmaster, as a crash of
// its machine would end it: no shutdown checkpoint, connections cut. Its
// backends notice the postmaster's death and exit on their own.
func (c *Cluster) KillPrimary(t testing.TB) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.primaryDir(), "data", "postmaster.pid"))
	if err != nil {
		t.Fatalf("pgtest: the primary's pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil || pid <= 1 {
		t.Fatalf("pgtest: the primary's pid file: %q", b)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("pgtest: kill -9 the primary: %v", err)
	}
	c.killed = true
	// Until its port is closed, a new connection could still reach it.
	for deadline := time.Now().Add(30 * time.Second); syscall.Kill(pid, 0) == nil; {
		if time.Now().After(deadline) {
			t.Fatal("pgtest: the killed primary is still there")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Promote promotes the standby to primary (pg_ctl promote, waiting until
// it accepts writes).
func (c *Cluster) Promote(t testing.TB) {
	t.Helper()
	if _, err := c.run(t, "promote", c.standbyDir()); err != nil {
		t.Fatalf("pgtest: promoting the standby: %v", err)
	}
}

// CreateDatabase creates database on the primary.
func (c *Cluster) CreateDatabase(t testing.TB, database string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := &server{admin: c.PrimaryDSN("postgres")}
	if err := s.exec(ctx, "CREATE DATABASE "+database); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
}
