package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/client"
)

// TestKillUnderLoad: a real "tokenvault serve" process (this test binary,
// as TestMain makes it) is killed with SIGKILL while several clients
// tokenize and erase, then restarted on the same data directory and audit
// log, a few rounds over. After every restart: the server starts without
// being told to accept an unverified audit history (a crash tail is
// repaired, not refused); every token whose Tokenize was acknowledged
// reveals its value, unless its subject's erasure was acknowledged, in
// which case it reveals nothing (erased, or not found once purged); an
// erasure cut short by the kill is all or nothing for its subject. At the
// end, after a clean stop, "tokenvault audit verify" accepts the log; and
// no server log line ever holds a value, a token or a subject id.
// crashRounds: more rounds reproduce what only repeated crashes show.
var crashRounds = flag.Int("crash.rounds", 3, "TestKillUnderLoad: kill -9 rounds")

func TestKillUnderLoad(t *testing.T) {
	bin, err := exec.LookPath("tokenvault")
	if err != nil || !strings.Contains(bin, "testscript-main") {
		// Never some other tokenvault that happens to be installed.
		t.Fatalf("tokenvault on PATH is %q (%v), want the copy of this test binary that TestMain installs", bin, err)
	}
	rounds := *crashRounds
	const (
		workers = 6
		// Each round kills after between minAcks and 2*minAcks
		// acknowledged Tokenize calls, or after maxRound, whichever
		// comes first (a slow machine still gets its kill mid-load).
		minAcks  = 120
		maxRound = 8 * time.Second
	)
	dir := t.TempDir()
	h := &crashHarness{t: t, bin: bin, dir: dir, addr: mustFreeAddr(t),
		tokens: map[string]ackedToken{}, erased: map[string]bool{}, unsure: map[string]bool{}}
	t.Cleanup(func() {
		if h.running {
			h.cmd.Process.Kill()
			<-h.exited
		}
	})
	// A brand-new log starts with a signed checkpoint, so even a kill in
	// the server's first seconds leaves a crash tail the restart accepts.
	h.start()
	h.load(0, workers, minAcks/4, maxRound)
	h.kill()
	h.start() // fails the test if the restart is refused
	h.check()
	for round := range rounds {
		target := minAcks + rand.IntN(minAcks)
		acks := h.load(round+1, workers, target, maxRound)
		h.kill()
		t.Logf("round %d: killed after %d acknowledged tokenizes (%d tokens, %d subjects erased so far, %d erasures cut by the kill)", round, acks, len(h.tokens), len(h.erased), len(h.unsure))
		h.start() // fails the test if the restart is refused
		h.check()
	}
	h.stop()
	verify := exec.Command(bin, "audit", "verify", "--pubkey", filepath.Join(dir, "keys", "audit-signing.key.pub"), h.auditLog())
	out, err := verify.CombinedOutput()
	if err != nil || !bytes.HasPrefix(out, []byte("OK: ")) {
		t.Fatalf("audit verify after %d kills: %v\n%s", rounds, err, out)
	}
	h.checkLogs()
	if h.unsignedTails < rounds {
		t.Fatalf("only %d of %d kills left entries after the last checkpoint: the crash-tail path was not exercised", h.unsignedTails, rounds)
	}
	// What a crash leaves is accepted; a rewritten log is not: with its
	// checkpoints removed, the real server refuses to start on it.
	logData, err := os.ReadFile(h.auditLog())
	if err != nil {
		t.Fatal(err)
	}
	var kept []byte
	for _, ln := range bytes.SplitAfter(logData, []byte("\n")) {
		if !bytes.Contains(ln, []byte(`"type":"checkpoint"`)) {
			kept = append(kept, ln...)
		}
	}
	if err := os.WriteFile(h.auditLog(), kept, 0o600); err != nil {
		t.Fatal(err)
	}
	if out := h.startRefused(); !strings.Contains(out, "audit log history does not verify") {
		t.Fatalf("start on a log without its checkpoints: want a refusal, got:\n%s", out)
	}
}

type ackedToken struct{ subject, value string }

// crashHarness runs the server process and keeps what it acknowledged.
type crashHarness struct {
	t        *testing.T
	bin, dir string
	addr     string
	cmd      *exec.Cmd
	exited   chan error
	running  bool
	starts   int
	load1    *client.Client // the load's client, closed after the kill
	workers  sync.WaitGroup // the load's workers
	killing  atomic.Bool    // set before SIGKILL: later failures are the kill's
	// unsignedTails counts kills that left entries after the last
	// checkpoint: the restart then verified a crash tail.
	unsignedTails int
	mu            sync.Mutex
	tokens        map[string]ackedToken // acknowledged token → its subject and value
	erased        map[string]bool       // subjects whose erasure was acknowledged
	unsure        map[string]bool       // subjects whose erasure the kill cut short
	loadFails     []error               // failures before the kill: none expected
}

func (h *crashHarness) auditLog() string { return filepath.Join(h.dir, "audit", "audit.jsonl") }

func (h *crashHarness) serveCmd(extra ...string) *exec.Cmd {
	h.t.Helper()
	h.starts++
	logf, err := os.Create(filepath.Join(h.dir, fmt.Sprintf("serve-%d.log", h.starts)))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { logf.Close() })
	cmd := exec.Command(h.bin, append([]string{"serve", "--listen", h.addr, "--data-dir", filepath.Join(h.dir, "data"),
		"--keyring", filepath.Join(h.dir, "keys", "keyring.age"), "--metrics-listen", "off", "--audit-log", h.auditLog()}, extra...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	return cmd
}

// startRefused runs "tokenvault serve", wants it to fail, and returns its
// output.
func (h *crashHarness) startRefused() string {
	h.t.Helper()
	if err := h.serveCmd().Run(); err == nil {
		h.t.Fatal("serve exited cleanly; want a refusal")
	}
	return h.logTail()
}

// start runs "tokenvault serve" and waits until it accepts connections.
func (h *crashHarness) start(extra ...string) {
	h.t.Helper()
	h.cmd = h.serveCmd(extra...)
	if err := h.cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	exited := make(chan error, 1)
	h.exited, h.running = exited, true
	go func() { exited <- h.cmd.Wait() }()
	for deadline := time.Now().Add(bound); ; {
		if c, err := net.Dial("tcp", h.addr); err == nil {
			c.Close()
			return
		}
		select {
		case err := <-exited:
			h.running = false
			h.t.Fatalf("start %d: the server exited (%v):\n%s", h.starts, err, h.logTail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("start %d: nothing listens at %s after %v:\n%s", h.starts, h.addr, bound, h.logTail())
		}
	}
}

func (h *crashHarness) logTail() string {
	b, _ := os.ReadFile(filepath.Join(h.dir, fmt.Sprintf("serve-%d.log", h.starts)))
	return string(b[max(0, len(b)-4000):])
}

// kill sends SIGKILL: no drain, no closing checkpoint, no clean badger
// close.
func (h *crashHarness) kill() {
	h.t.Helper()
	h.killing.Store(true)
	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		h.t.Fatal(err)
	}
	err := <-h.exited
	h.running = false
	if err == nil {
		h.t.Fatal("the server exited cleanly before it was killed")
	}
	if h.lastAuditType() != "checkpoint" {
		h.unsignedTails++
	}
	// Every worker's call now fails; wait for them, so that check sees
	// every acknowledgement.
	h.workers.Wait()
	h.load1.Close()
	h.killing.Store(false)
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.loadFails) > 0 {
		h.t.Fatalf("calls failed before the kill: %v\n%s", errors.Join(h.loadFails...), h.logTail())
	}
}

// stop sends SIGTERM and wants a clean exit (closing checkpoint).
func (h *crashHarness) stop() {
	h.t.Helper()
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		h.t.Fatal(err)
	}
	err := <-h.exited
	h.running = false
	if err != nil {
		h.t.Fatalf("stop: %v\n%s", err, h.logTail())
	}
}

// load runs workers that each tokenize two values for a fresh subject and
// erase every third subject, until target Tokenize calls are acknowledged
// or maxRound passes (round ≥ 0 names its subjects and values); it returns with the calls still in flight, for kill
// (which waits for the workers).
func (h *crashHarness) load(round, workers, target int, maxRound time.Duration) int {
	h.t.Helper()
	// No retries: a call cut by the kill fails, and its outcome is
	// unknown.
	c, err := client.Dial(h.addr, client.WithRetry(1, 0, 0))
	if err != nil {
		h.t.Fatal(err)
	}
	h.load1 = c
	var reached sync.Once
	killed := make(chan struct{})
	acks := 0
	for w := range workers {
		h.workers.Add(1)
		go func() {
			defer h.workers.Done()
			for i := 0; ; i++ {
				subject := fmt.Sprintf("crash-r%d-w%d-s%d", round, w, i)
				values := []string{fmt.Sprintf("+1415%03d%04d", round*10+w, i%10000), fmt.Sprintf("c%d.%d.%d@example.com", round, w, i)}
				toks, err := c.Tokenize(context.Background(), subject, client.Field{Kind: "phone", Value: values[0]}, client.Field{Kind: "email", Value: values[1]})
				h.mu.Lock()
				if err == nil {
					for j, tok := range toks {
						h.tokens[tok] = ackedToken{subject, values[j]}
					}
					if acks++; acks == target {
						reached.Do(func() { close(killed) })
					}
				}
				h.mu.Unlock()
				if err != nil {
					h.failed(err)
					return
				}
				if i%3 != 2 {
					continue
				}
				_, err = c.EraseSubject(context.Background(), subject)
				h.mu.Lock()
				if err == nil {
					h.erased[subject] = true
				} else {
					h.unsure[subject] = true
				}
				h.mu.Unlock()
				if err != nil {
					h.failed(err)
					return
				}
			}
		}()
	}
	select {
	case <-killed:
	case <-time.After(maxRound):
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return acks
}

// failed records a worker's error unless the kill was under way: then
// the call's outcome is unknown, and the worker just stops.
func (h *crashHarness) failed(err error) {
	if h.killing.Load() {
		return
	}
	h.mu.Lock()
	h.loadFails = append(h.loadFails, err)
	h.mu.Unlock()
}

// check reveals every acknowledged token on the restarted server.
func (h *crashHarness) check() {
	h.t.Helper()
	c, err := client.Dial(h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	defer c.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	var all []string
	for tok := range h.tokens {
		all = append(all, tok)
	}
	revealed := map[string]int{} // subject → tokens revealed
	hidden := map[string]int{}   // subject → tokens not revealed
	for i := 0; i < len(all); i += 1000 {
		batch := all[i:min(i+1000, len(all))]
		res, err := c.Detokenize(context.Background(), "crash-test", batch...)
		if err != nil {
			h.t.Fatalf("detokenize after restart %d: %v", h.starts, err)
		}
		for j, r := range res {
			want := h.tokens[batch[j]]
			switch {
			case r.Err == nil && r.Value == want.value:
				revealed[want.subject]++
			case r.Err == nil:
				h.t.Fatalf("after restart %d, a token of %s reveals a different value", h.starts, want.subject)
			case errors.Is(r.Err, client.ErrErased) || errors.Is(r.Err, client.ErrNotFound):
				hidden[want.subject]++
			default:
				h.t.Fatalf("after restart %d, detokenize of a token of %s: %v", h.starts, want.subject, r.Err)
			}
		}
	}
	for _, tok := range all {
		s := h.tokens[tok].subject
		switch {
		case h.erased[s] && revealed[s] > 0:
			h.t.Fatalf("after restart %d, the acknowledged erasure of %s is undone: %d tokens reveal", h.starts, s, revealed[s])
		case !h.erased[s] && !h.unsure[s] && hidden[s] > 0:
			h.t.Fatalf("after restart %d, %d acknowledged tokens of %s are lost", h.starts, hidden[s], s)
		case h.unsure[s] && revealed[s] > 0 && hidden[s] > 0:
			h.t.Fatalf("after restart %d, the erasure of %s cut by the kill is half done: %d tokens reveal, %d do not", h.starts, s, revealed[s], hidden[s])
		}
	}
	// An erasure cut short is now settled one way or the other; later
	// rounds must keep it so.
	for s := range h.unsure {
		if hidden[s] > 0 {
			h.erased[s] = true
		}
		delete(h.unsure, s)
	}
}

// checkLogs: the server logs of every start (the access line included)
// name no value, token or subject id.
func (h *crashHarness) checkLogs() {
	h.t.Helper()
	var logs []byte
	for i := 1; i <= h.starts; i++ {
		b, err := os.ReadFile(filepath.Join(h.dir, fmt.Sprintf("serve-%d.log", i)))
		if err != nil {
			h.t.Fatal(err)
		}
		logs = append(logs, b...)
	}
	if !bytes.Contains(logs, []byte("method=/tokenvault.v1.TokenVault/Tokenize")) || !bytes.Contains(logs, []byte("code=OK")) {
		h.t.Fatal("no access line for a successful Tokenize at the default level")
	}
	for tok, at := range h.tokens {
		for _, secret := range []string{tok, at.value, at.subject} {
			if bytes.Contains(logs, []byte(secret)) {
				h.t.Fatalf("a server log holds a value, token or subject id")
			}
		}
	}
}

// lastAuditType is the type of the audit log's last complete line.
func (h *crashHarness) lastAuditType() string {
	h.t.Helper()
	b, err := os.ReadFile(h.auditLog())
	if err != nil {
		h.t.Fatal(err)
	}
	b = b[:bytes.LastIndexByte(b, '\n')+1] // a torn line is not an entry
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	var e struct{ Type string }
	if err := json.Unmarshal(lines[len(lines)-1], &e); err != nil {
		h.t.Fatalf("audit log's last line: %v", err)
	}
	return e.Type
}

func mustFreeAddr(t *testing.T) string {
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
