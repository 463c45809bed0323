package main

import (
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tokenvault/tokenvault/internal/backup"
	"github.com/tokenvault/tokenvault/internal/pgtest"
	"github.com/tokenvault/tokenvault/internal/testpki"
)

// The CLI is tested as users run it, with the scripts in testdata/*.txt:
// the test binary doubles as the tokenvault binary, so "exec tokenvault
// serve &" is a real server process, signals and all.
func TestMain(m *testing.M) {
	// pgtest.Main stops the PostgreSQL the pgdb command started.
	testscript.Main(pgtestM{m}, map[string]func(){
		"tokenvault": func() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

type pgtestM struct{ m *testing.M }

func (p pgtestM) Run() int { return pgtest.Main(p.m) }

func TestScripts(t *testing.T) {
	// One PKI for every script (key generation is the slow part): a CA, a
	// server certificate for 127.0.0.1 and two client identities.
	pki := t.TempDir()
	ca := testpki.New(t, pki)
	srvCert, srvKey := ca.Issue(t, "server", testpki.Leaf{Server: true, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	ordersCert, ordersKey := ca.Issue(t, "orders", testpki.Leaf{URIs: []string{"spiffe://cli.test/orders"}})
	payCert, payKey := ca.Issue(t, "payments", testpki.Leaf{URIs: []string{"spiffe://cli.test/payments"}})
	deploy, err := filepath.Abs(filepath.Join("..", "..", "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata",
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		Condition:           pgCondition,
		Setup: func(e *testscript.Env) error {
			// Free loopback addresses: two for servers, one nothing listens on.
			for _, name := range []string{"ADDR", "ADDR2", "NOBODY"} {
				addr, err := freeAddr()
				if err != nil {
					return err
				}
				e.Setenv(name, addr)
			}
			for k, v := range map[string]string{"DEPLOY": deploy, "CA": ca.CAFile, "SERVER_CERT": srvCert, "SERVER_KEY": srvKey,
				"ORDERS_CERT": ordersCert, "ORDERS_KEY": ordersKey, "PAY_CERT": payCert, "PAY_KEY": payKey} {
				e.Setenv(k, v)
			}
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitlisten": cmdWaitListen,
			"signal":     cmdSignal,
			"capture":    cmdCapture,
			"eventually": cmdEventually,
			"sleep":      cmdSleep,
			"replace":    cmdReplace,
			"dropline":   cmdDropLine,
			"agekeygen":  cmdAgeKeygen,
			"legacybak":  cmdLegacyBackup,
			"b64std":     cmdB64Std,
			"perm":       cmdPerm,
			"pgdb":       func(ts *testscript.TestScript, neg bool, args []string) { cmdPgDB(t, ts, neg, args) },
			"pgdump":     cmdPgDump,
			"pgrestore":  cmdPgRestore,
		},
	})
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// bound is how long a script waits for a server to come up or a reload to
// take effect: generous, for a loaded machine; a test that passes never
// waits that long.
const bound = 20 * time.Second

// waitlisten ADDR: wait until something accepts connections at ADDR.
func cmdWaitListen(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitlisten ADDR")
	}
	for deadline := time.Now().Add(bound); ; {
		if c, err := net.Dial("tcp", args[0]); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("nothing listens at %s", args[0])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// signal TERM|HUP: send the signal to the running background commands
// (testscript's kill knows only INT and KILL).
func cmdSignal(ts *testscript.TestScript, neg bool, args []string) {
	sigs := map[string]syscall.Signal{"TERM": syscall.SIGTERM, "HUP": syscall.SIGHUP}
	if neg || len(args) != 1 || sigs[args[0]] == 0 {
		ts.Fatalf("usage: signal TERM|HUP")
	}
	n := 0
	for _, c := range ts.BackgroundCmds() {
		if c.Process != nil && c.ProcessState == nil {
			ts.Check(c.Process.Signal(sigs[args[0]]))
			n++
		}
	}
	if n == 0 {
		ts.Fatalf("no background command running")
	}
}

// capture NAME REGEXP: set $NAME to the first group of REGEXP's first
// match in the last command's stdout.
func cmdCapture(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: capture NAME REGEXP")
	}
	m := regexp.MustCompile("(?m)" + args[1]).FindStringSubmatch(ts.ReadFile("stdout"))
	if len(m) < 2 {
		ts.Fatalf("stdout has no match for %s", args[1])
	}
	ts.Setenv(args[0], m[1])
}

// eventually PROGRAM ARGS...: run the program until it succeeds.
func cmdEventually(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: eventually PROGRAM [ARGS...]")
	}
	for deadline := time.Now().Add(bound); ; {
		err := ts.Exec(args[0], args[1:]...)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s still fails: %v", strings.Join(args, " "), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sleep DURATION: let time pass (past a retention, say).
func cmdSleep(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: sleep DURATION")
	}
	d, err := time.ParseDuration(args[0])
	ts.Check(err)
	time.Sleep(d)
}

// replace FILE OLD NEW OUT: write FILE to OUT with the first OLD replaced
// by NEW; OLD must occur.
func cmdReplace(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 4 {
		ts.Fatalf("usage: replace FILE OLD NEW OUT")
	}
	s := ts.ReadFile(args[0])
	if !strings.Contains(s, args[1]) {
		ts.Fatalf("%s does not contain %q", args[0], args[1])
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[3]), []byte(strings.Replace(s, args[1], args[2], 1)), 0o600))
}

// dropline FILE N OUT: write FILE to OUT without its line N (from 1).
func cmdDropLine(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: dropline FILE N OUT")
	}
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	lines := strings.SplitAfter(ts.ReadFile(args[0]), "\n")
	if n < 1 || n > len(lines) {
		ts.Fatalf("%s has no line %d", args[0], n)
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[2]), []byte(strings.Join(append(lines[:n-1:n-1], lines[n:]...), "")), 0o600))
}

// agekeygen FILE VAR: write a new age identity to FILE, its recipient to
// $VAR.
func cmdAgeKeygen(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: agekeygen FILE VAR")
	}
	id, err := age.GenerateX25519Identity()
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), []byte(id.String()+"\n"), 0o600))
	ts.Setenv(args[1], id.Recipient().String())
}

// legacybak IN OUT: rewrite the backup file IN with the unsigned header of
// tokenvault-backup/v1, as tokenvault wrote it before signing backups.
func cmdLegacyBackup(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: legacybak IN OUT")
	}
	in := ts.MkAbs(args[0])
	h, err := backup.HeaderOf(in)
	ts.Check(err)
	b, err := os.ReadFile(in)
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), append(backup.Header{Since: h.Since, Next: h.Next}.Marshal(), b[h.Size():]...), 0o600))
}

// b64std VAR BLOB: set $VAR to BLOB (base64url, as encrypt prints it)
// re-encoded in padded standard base64, as protobuf JSON shows bytes.
func cmdB64Std(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: b64std VAR BLOB")
	}
	b, err := base64.RawURLEncoding.DecodeString(args[1])
	ts.Check(err)
	ts.Setenv(args[0], base64.StdEncoding.EncodeToString(b))
}

// perm FILE MODE: FILE's permission bits are MODE (octal, e.g. 0600).
func cmdPerm(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: perm FILE MODE")
	}
	want, err := strconv.ParseUint(args[1], 8, 32)
	ts.Check(err)
	st, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	if got := st.Mode().Perm(); got != os.FileMode(want) {
		ts.Fatalf("%s has mode %#o, want %#o", args[0], got, want)
	}
}

// pgdb VAR: set $VAR to the DSN of a new, empty PostgreSQL database
// (internal/pgtest), dropped when the scripts end. Scripts guard it with
// "[!pg] skip": see pgCondition.
func cmdPgDB(t *testing.T, ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: pgdb VAR")
	}
	if err, _ := pgtest.Available(); err != nil {
		ts.Fatalf("pgtest: %v (a script guards pgdb with [!pg] skip)", err)
	}
	ts.Setenv(args[0], pgtest.New(t).DSN)
}

// pgdump DSN FILE: a custom-format pg_dump of the database.
func cmdPgDump(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: pgdump DSN FILE")
	}
	ts.Check(pgtest.PgDump(args[0], ts.MkAbs(args[1])))
}

// pgrestore FILE DSN: pg_restore the dump into the (empty) database.
func cmdPgRestore(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: pgrestore FILE DSN")
	}
	ts.Check(pgtest.PgRestore(ts.MkAbs(args[0]), args[1]))
}

// pgCondition answers [pg]: whether PostgreSQL is here for tests. Under
// CI=true a missing one is an error (the script fails) rather than false.
func pgCondition(cond string) (bool, error) {
	if cond != "pg" {
		return false, fmt.Errorf("unknown condition %q", cond)
	}
	err, skip := pgtest.Available()
	if err != nil && !skip {
		return false, err
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
	}
	return err == nil, nil
}
