package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/errinfo"
	"github.com/tokenvault/tokenvault/internal/pgtest"
	"github.com/tokenvault/tokenvault/vault/pgstore"
)

// Replicas on PostgreSQL, as real "tokenvault serve" processes (this test
// binary, as TestMain makes it): two of them on one database, sharing the
// files every replica needs (keyring and its identity, ledger key,
// receipt signing key; each has its own audit log and audit signing
// key), under a bounded tokenize load sent round-robin through both.

// TestReplicasKillOne: one replica killed with SIGKILL under load; the
// other keeps serving (none of its calls fails), and every acknowledged
// token, through either replica, is revealed afterwards through the
// survivor: nothing is lost. Before the kill, an erasure on A is refused
// on B at once, although B has just revealed the subject's token.
func TestReplicasKillOne(t *testing.T) {
	bin := testBinary(t)
	db := pgtest.New(t)
	if _, _, err := pgstore.Migrate(context.Background(), db.DSN); err != nil {
		t.Fatal(err)
	}
	rs := startReplicas(t, bin, db.DSN)
	a, b := rs.clients[0], rs.clients[1]
	ctx := context.Background()

	// Erase on A, refused on B immediately.
	toks, err := b.Tokenize(ctx, "replica-erased-subject-7c1e", client.Field{Kind: "email", Value: "erased-7c1e@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.DetokenizeOne(ctx, "test", toks[0]); err != nil || got != "erased-7c1e@example.com" {
		t.Fatalf("reveal on B before the erasure = %q, %v", got, err)
	}
	if _, err := a.EraseSubject(ctx, "replica-erased-subject-7c1e"); err != nil {
		t.Fatal(err)
	}
	if got, err := b.DetokenizeOne(ctx, "test", toks[0]); err == nil || got != "" ||
		!(errors.Is(err, client.ErrErased) || errors.Is(err, client.ErrNotFound)) {
		t.Fatalf("reveal on B right after the erasure on A = %q, %v; want erased or not found", got, err)
	}

	// B heard of the erasure (its listener is an accelerator: the refusal
	// above did not wait for it), and exports its pool.
	waitMetrics(t, rs.procs[1], `tokenvault_store_listener_connected 1`, `tokenvault_store_listener_notifications_total [1-9]`,
		`tokenvault_store_pool_connections\{state="total"\} [1-9]`, `tokenvault_store_pool_acquires_total [1-9]`)

	ld := startLoad(rs.clients, 4, 5*time.Second)
	ld.waitAcks(t, 150)
	killAt := time.Now()
	rs.procs[1].kill(t)
	// The survivor keeps serving the workers' calls sent to it.
	ld.waitAcksAfter(t, 0, killAt, 150)
	ld.stop()
	for _, f := range ld.failures() {
		if f.replica == 0 || f.start.Before(killAt.Add(-time.Second)) {
			t.Fatalf("replica %d: a call failed (%v after the kill): %v", f.replica, f.start.Sub(killAt), f.err)
		}
	}
	ld.checkAll(t, a)
	t.Logf("%d acknowledged tokens, all revealed through the survivor; %d calls to the killed replica failed", len(ld.tokens), len(ld.failures()))
	rs.checkLogs(t, ld)
}

// TestReplicasFailover: two replicas on a primary with a synchronous
// standby, their DSN naming both with target_session_attrs=read-write.
// Under load the primary's postmaster is killed with SIGKILL, and a
// moment later the standby promoted. Every call fails fast with
// UNAVAILABLE (reason STORE_UNAVAILABLE, or the connection's own
// UNAVAILABLE) during the switch, none with its deadline; after it both
// replicas serve again without a restart, and every acknowledged token
// is revealed through both: zero lost. The failover window (first to
// last UNAVAILABLE) is logged, not asserted.
func TestReplicasFailover(t *testing.T) {
	bin := testBinary(t)
	cl := pgtest.NewCluster(t)
	cl.CreateDatabase(t, "tvfailover")
	dsn := cl.DSN("tvfailover")
	if _, _, err := pgstore.Migrate(context.Background(), dsn); err != nil {
		t.Fatal(err)
	}
	rs := startReplicas(t, bin, dsn)
	const deadline = 4 * time.Second
	ld := startLoad(rs.clients, 4, deadline)
	ld.waitAcks(t, 150)
	killAt := time.Now()
	cl.KillPrimary(t)
	// Long enough that calls meet the dead primary, through both replicas.
	time.Sleep(time.Second)
	promoteAt := time.Now()
	cl.Promote(t)
	for r := range rs.clients {
		ld.waitAcksAfter(t, r, promoteAt, 50)
	}
	ld.stop()
	fails := ld.failures()
	var first, last time.Time
	storeReason := 0
	for _, f := range fails {
		if f.start.Before(killAt) && f.end.Before(killAt) {
			t.Fatalf("replica %d: a call failed before the kill: %v", f.replica, f.err)
		}
		var ce *client.Error
		if !errors.Is(f.err, client.ErrUnavailable) || !errors.As(f.err, &ce) {
			t.Fatalf("replica %d: a call %v after the kill failed with %v, not UNAVAILABLE (it took %v, deadline %v)", f.replica, f.start.Sub(killAt), f.err, f.end.Sub(f.start), deadline)
		}
		if ce.Reason == errinfo.StoreUnavailable {
			storeReason++
		}
		if first.IsZero() || f.start.Before(first) {
			first = f.start
		}
		if f.end.After(last) {
			last = f.end
		}
	}
	if storeReason == 0 {
		t.Fatalf("no call failed with %s during the failover (%d failures): the switch was not observed", errinfo.StoreUnavailable, len(fails))
	}
	t.Logf("failover window: %.2fs of UNAVAILABLE (%d calls failed, %d with %s; kill to promote %.2fs, promote took %.2fs); %d acknowledged tokens",
		last.Sub(first).Seconds(), len(fails), storeReason, errinfo.StoreUnavailable, promoteAt.Sub(killAt).Seconds(), time.Since(promoteAt).Seconds(), len(ld.tokens))
	for _, c := range rs.clients {
		ld.checkAll(t, c)
	}
	// The change listeners found the new primary too.
	for _, p := range rs.procs {
		waitMetrics(t, p, `tokenvault_store_listener_connected 1`)
	}
	rs.checkLogs(t, ld)
}

// waitMetrics waits until p's /metrics matches every pattern.
func waitMetrics(t *testing.T, p *serveProc, patterns ...string) {
	t.Helper()
	var body []byte
	for deadline := time.Now().Add(bound); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + p.metrics + "/metrics")
		if err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			missing := ""
			for _, pat := range patterns {
				if !regexp.MustCompile(`(?m)^` + pat).Match(body) {
					missing = pat
					break
				}
			}
			if missing == "" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %s's metrics lack %s:\n%s", p.name, missing, grepLines(body, "tokenvault_store_"))
			}
		} else if time.Now().After(deadline) {
			t.Fatalf("replica %s's metrics: %v", p.name, err)
		}
	}
}

func grepLines(b []byte, sub string) string {
	var out []string
	for _, ln := range strings.Split(string(b), "\n") {
		if strings.Contains(ln, sub) {
			out = append(out, ln)
		}
	}
	return strings.Join(out, "\n")
}

func testBinary(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("tokenvault")
	if err != nil || !strings.Contains(bin, "testscript-main") {
		t.Fatalf("tokenvault on PATH is %q (%v), want the copy of this test binary that TestMain installs", bin, err)
	}
	return bin
}

// replicaSet is the running replicas and a client of each.
type replicaSet struct {
	procs   []*serveProc
	clients []*client.Client
}

// startReplicas starts two replicas on dsn: A creates the shared keys,
// which are then copied into B's own key directory (the files a replica
// needs, and no more: B makes its own audit signing key).
func startReplicas(t *testing.T, bin, dsn string) *replicaSet {
	t.Helper()
	dir := t.TempDir()
	rs := &replicaSet{}
	for i, name := range []string{"a", "b"} {
		rdir := filepath.Join(dir, name)
		cfg := filepath.Join(rdir, "tokenvault.yaml")
		if err := os.MkdirAll(filepath.Join(rdir, "keys"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfg, []byte("store:\n  provider: postgres\ndata_dir: "+filepath.Join(rdir, "unused")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			for _, f := range []string{"keyring.age", "identity.txt", "ledger.key", "receipt-signing.pem"} {
				b, err := os.ReadFile(filepath.Join(dir, "a", "keys", f))
				if err != nil {
					t.Fatalf("replica a made no %s: %v", f, err)
				}
				if err := os.WriteFile(filepath.Join(rdir, "keys", f), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		metricsAddr := mustFreeAddr(t)
		p := startServe(t, bin, name, rdir, []string{"TOKENVAULT_STORE_POSTGRES_DSN=" + dsn},
			"serve", "--config", cfg, "--listen", mustFreeAddr(t), "--keyring", filepath.Join(rdir, "keys", "keyring.age"),
			"--metrics-listen", metricsAddr, "--audit-log", filepath.Join(rdir, "audit", "audit.jsonl"))
		p.metrics = metricsAddr
		c, err := client.Dial(p.addr, client.WithRetry(1, 0, 0))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		rs.procs = append(rs.procs, p)
		rs.clients = append(rs.clients, c)
	}
	if bytes.Equal(readFile(t, filepath.Join(dir, "a", "keys", "audit-signing.key")), readFile(t, filepath.Join(dir, "b", "keys", "audit-signing.key"))) {
		t.Fatal("the replicas share an audit signing key the test did not give them")
	}
	return rs
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkLogs: no replica's log holds a value, token or subject id.
func (rs *replicaSet) checkLogs(t *testing.T, ld *rrLoad) {
	t.Helper()
	var logs []byte
	for _, p := range rs.procs {
		logs = append(logs, readFile(t, p.logPath)...)
	}
	ld.mu.Lock()
	defer ld.mu.Unlock()
	for tok, at := range ld.tokens {
		for _, secret := range []string{tok, at.value, at.subject} {
			if bytes.Contains(logs, []byte(secret)) {
				t.Fatal("a replica's log holds a value, token or subject id")
			}
		}
	}
}

// serveProc is one "tokenvault serve" process.
type serveProc struct {
	name, addr, logPath string
	metrics             string // the /metrics listener
	cmd                 *exec.Cmd
	exited              chan error
	running             bool
}

// startServe runs bin with args (which name --listen ADDR) and waits
// until it accepts connections. The process is killed when t ends.
func startServe(t *testing.T, bin, name, dir string, env []string, args ...string) *serveProc {
	t.Helper()
	p := &serveProc{name: name, logPath: filepath.Join(dir, "serve.log")}
	for i, a := range args {
		if a == "--listen" {
			p.addr = args[i+1]
		}
	}
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.exited, p.running = make(chan error, 1), true
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.running {
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	for deadline := time.Now().Add(bound); ; {
		if c, err := net.Dial("tcp", p.addr); err == nil {
			c.Close()
			return p
		}
		select {
		case err := <-p.exited:
			p.running = false
			t.Fatalf("replica %s exited (%v):\n%s", name, err, p.logTail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s: nothing listens at %s after %v:\n%s", name, p.addr, bound, p.logTail())
		}
	}
}

func (p *serveProc) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b[max(0, len(b)-4000):])
}

func (p *serveProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	p.running = false
}

// rrLoad is a bounded tokenize load: workers that each tokenize one value
// for a fresh subject per call, sending call i of worker w to replica
// (w+i) mod n, each call with its own deadline and no client retry.
type rrLoad struct {
	done   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	tokens map[string]ackedToken
	acks   []ack // per acknowledged call: replica and time
	fails  []callFailure
}

type ack struct {
	replica int
	at      time.Time
}

type callFailure struct {
	replica    int
	start, end time.Time
	err        error
}

func startLoad(clients []*client.Client, workers int, deadline time.Duration) *rrLoad {
	ld := &rrLoad{done: make(chan struct{}), tokens: map[string]ackedToken{}}
	for w := range workers {
		ld.wg.Add(1)
		go func() {
			defer ld.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-ld.done:
					return
				default:
				}
				r := (w + i) % len(clients)
				subject := fmt.Sprintf("replica-w%d-s%d", w, i)
				value := fmt.Sprintf("r%d.%d@example.com", w, i)
				start := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				toks, err := clients[r].Tokenize(ctx, subject, client.Field{Kind: "email", Value: value})
				cancel()
				end := time.Now()
				ld.mu.Lock()
				if err == nil {
					ld.tokens[toks[0]] = ackedToken{subject, value}
					ld.acks = append(ld.acks, ack{r, end})
				} else {
					ld.fails = append(ld.fails, callFailure{r, start, end, err})
				}
				ld.mu.Unlock()
				if err != nil {
					// A dead replica or database refuses at once: do not
					// spin on it.
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	return ld
}

// waitAcks waits for n acknowledged calls in all.
func (ld *rrLoad) waitAcks(t *testing.T, n int) {
	t.Helper()
	ld.waitFor(t, fmt.Sprintf("%d acknowledged calls", n), func() bool { return len(ld.acks) >= n })
}

// waitAcksAfter waits for n calls acknowledged by replica r after since.
func (ld *rrLoad) waitAcksAfter(t *testing.T, r int, since time.Time, n int) {
	t.Helper()
	ld.waitFor(t, fmt.Sprintf("%d calls acknowledged by replica %d", n, r), func() bool {
		got := 0
		for _, a := range ld.acks {
			if a.replica == r && a.at.After(since) {
				got++
			}
		}
		return got >= n
	})
}

func (ld *rrLoad) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; {
		ld.mu.Lock()
		ok := cond()
		var last error
		if len(ld.fails) > 0 {
			last = ld.fails[len(ld.fails)-1].err
		}
		ld.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			ld.stop()
			t.Fatalf("no %s after a minute (last failure: %v)", what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the load and waits for its calls.
func (ld *rrLoad) stop() {
	select {
	case <-ld.done:
	default:
		close(ld.done)
	}
	ld.wg.Wait()
}

func (ld *rrLoad) failures() []callFailure {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return append([]callFailure(nil), ld.fails...)
}

// checkAll reveals every acknowledged token through c: each gives its
// value.
func (ld *rrLoad) checkAll(t *testing.T, c *client.Client) {
	t.Helper()
	ld.mu.Lock()
	defer ld.mu.Unlock()
	var all []string
	for tok := range ld.tokens {
		all = append(all, tok)
	}
	lost := 0
	for i := 0; i < len(all); i += 500 {
		batch := all[i:min(i+500, len(all))]
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		res, err := c.Detokenize(ctx, "replica-test", batch...)
		cancel()
		if err != nil {
			t.Fatalf("detokenize: %v", err)
		}
		for j, r := range res {
			switch want := ld.tokens[batch[j]]; {
			case r.Err != nil:
				lost++
			case r.Value != want.value:
				t.Fatalf("a token of %s reveals a different value", want.subject)
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged tokens are lost", lost, len(all))
	}
}
