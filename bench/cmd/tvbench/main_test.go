package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/bench/echo"
	"github.com/tokenvault/tokenvault/bench/loadgen"
	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/internal/app"
	"github.com/tokenvault/tokenvault/internal/auth"
	"github.com/tokenvault/tokenvault/internal/config"
	"github.com/tokenvault/tokenvault/internal/testpki"
	"github.com/tokenvault/tokenvault/internal/vaulttest"
)

// TestMain lets the test binary serve as the echo child process that
// tvbench starts by default (echoproc.go).
func TestMain(m *testing.M) {
	if os.Getenv(echoChildEnv) == "1" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(vaulttest.Main(m)) // m.Run, then a line if Vault tests were skipped
}

// startTokenvault runs a real server (badger on disk, age keyring) on
// loopback, through the same wiring as `tokenvault serve`.
func startTokenvault(t *testing.T) string {
	addr, _ := startTokenvaultMetrics(t, "off")
	return addr
}

// startTokenvaultMetrics also serves /metrics on metrics (unless "off")
// and returns its address.
func startTokenvaultMetrics(t *testing.T, metrics string) (addr, metricsAddr string) {
	t.Helper()
	dir := t.TempDir()
	a, err := app.Start(context.Background(), config.Config{
		Listen:  "127.0.0.1:0",
		DataDir: filepath.Join(dir, "data"),
		KEK:     config.KEKConfig{Keyring: agekeyring.Config{Path: filepath.Join(dir, "keys", "keyring.age"), IdentityFile: filepath.Join(dir, "keys", "identity.txt")}},
		Metrics: config.MetricsConfig{Listen: metrics},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Stop() })
	return a.Addr(), a.MetricsAddr()
}

// tvbench runs the command and decodes its JSON report. The short
// durations and request caps keep the smoke small; nothing here asserts a
// timing, only that the report is complete and the calls succeeded.
func tvbench(t *testing.T, args ...string) *loadgen.Report {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("tvbench %v: exit %d\n%s", args, code, stderr.String())
	}
	var rep loadgen.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, stdout.String())
	}
	if rep.Tool != "tvbench" || rep.Host.CPUs < 1 {
		t.Fatalf("report header: %+v", rep)
	}
	return &rep
}

var short = []string{"-d", "300ms", "-warmup", "0s", "-max-requests", "400", "-c", "4", "-pool", "20", "-subjects", "5", "-quiet", "-json", "-"}

func checkRun(t *testing.T, r *loadgen.RunResult, wantOps ...loadgen.Op) {
	t.Helper()
	if len(r.Ops) != len(wantOps) {
		t.Fatalf("%s: ops %v, want %v", r.Name, r.Ops, wantOps)
	}
	for _, op := range wantOps {
		o := r.PerOp[op]
		if o == nil || o.OKCalls == 0 || len(o.Errors) != 0 || len(o.ItemErrors) != 0 {
			t.Fatalf("%s %s: %+v", r.Name, op, o)
		}
		if o.Latency.P50 <= 0 || o.Latency.P90 < o.Latency.P50 || o.Latency.P99 < o.Latency.P90 || o.Latency.P999 < o.Latency.P99 {
			t.Fatalf("%s %s: percentiles out of order: %+v", r.Name, op, o.Latency)
		}
	}
	if r.Calls > 400 || len(r.Series) == 0 || r.Profile == nil {
		t.Fatalf("%s: calls %d (cap 400), %d series points, profile %v", r.Name, r.Calls, len(r.Series), r.Profile)
	}
}

func TestRunSmoke(t *testing.T) {
	addr := startTokenvault(t)
	html := filepath.Join(t.TempDir(), "report.html")
	all := []loadgen.Op{loadgen.OpTokenize, loadgen.OpDetokenize, loadgen.OpMask, loadgen.OpEncrypt, loadgen.OpDecrypt}
	rep := tvbench(t, append([]string{"run", "-addr", addr, "-mix", "tokenize=2,detokenize,mask,encrypt,decrypt",
		"-batch", "3", "-kinds", "pan,email,phone,name,address", "-conns", "2", "-html", html}, short...)...)
	if len(rep.Runs) != 2 || rep.Runs[0].Target != "echo" || rep.Runs[1].Target != "tokenvault" || rep.Runs[1].Address != addr {
		t.Fatalf("runs: %+v", rep.Runs)
	}
	for _, r := range rep.Runs {
		checkRun(t, r, all...)
	}
	if len(rep.Ratios) != 2*len(all) {
		t.Fatalf("ratios: %+v", rep.Ratios)
	}
	for _, x := range rep.Ratios {
		if x.Value <= 0 {
			t.Fatalf("ratio %+v", x)
		}
	}
	b, err := os.ReadFile(html)
	if err != nil || !strings.Contains(string(b), "<svg") || !strings.Contains(string(b), "tokenvault") {
		t.Fatalf("HTML report: %v", err)
	}
}

// TestRunSmokeTLS: over TLS the echo child process serves TLS too, and it
// is gone when tvbench returns.
func TestRunSmokeTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.New(t, filepath.Join(dir, "pki"))
	cert, key := ca.Issue(t, "server", testpki.Leaf{Server: true, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	apiKey, hash, err := auth.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	keyFile, policy := filepath.Join(dir, "api-key.txt"), filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(keyFile, []byte(apiKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = os.WriteFile(policy, []byte("version: 1\nidentities:\n  - api_key: bench\n    roles: [bench]\n"+
		"roles:\n  bench:\n    - operations: [tokenize]\n    - operations: [detokenize]\n      purposes: [tvbench]\n"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.Start(context.Background(), config.Config{
		Listen:  "127.0.0.1:0",
		DataDir: filepath.Join(dir, "data"),
		KEK:     config.KEKConfig{Keyring: agekeyring.Config{Path: filepath.Join(dir, "keys", "keyring.age"), IdentityFile: filepath.Join(dir, "keys", "identity.txt")}},
		Metrics: config.MetricsConfig{Listen: "off"},
		Auth: config.AuthConfig{TLS: auth.TLSFiles{Cert: cert, Key: key}, PolicyFile: policy, PolicyPollInterval: -1,
			APIKeys: []auth.APIKey{{Name: "bench", Hash: hash}}},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Stop() })
	rep := tvbench(t, append([]string{"run", "-addr", a.Addr(), "-ca", ca.CAFile, "-api-key-file", keyFile, "-mix", "tokenize,detokenize"}, short...)...)
	if len(rep.Runs) != 2 || rep.Runs[0].Target != "echo" {
		t.Fatalf("runs: %+v", rep.Runs)
	}
	for _, r := range rep.Runs {
		checkRun(t, r, loadgen.OpTokenize, loadgen.OpDetokenize)
	}
	if c, err := net.DialTimeout("tcp", rep.Runs[0].Address, time.Second); err == nil {
		c.Close()
		t.Fatalf("echo process still listening on %s after tvbench returned", rep.Runs[0].Address)
	}
}

func TestTargetsSmokeWithVaultTransit(t *testing.T) {
	// The server runs in this process, so its CPU (read from its metrics
	// endpoint) includes the load generator's: a smoke of the plumbing,
	// not a measurement.
	addr, metrics := startTokenvaultMetrics(t, "127.0.0.1:0")
	srv := vaulttest.Start(t)
	t.Setenv("VAULT_TOKEN", srv.Token)
	rep := tvbench(t, append([]string{"targets", "-addr", addr, "-vault-addr", srv.Addr, "-vault-mount", "tvbench-transit",
		"-vault-create-key", "-metrics", metrics, "-rss-pid", strconv.Itoa(os.Getpid())}, short...)...)
	want := []string{"echo tokenize x1", "tokenvault tokenize x1", "echo tokenize x1 matched", "echo detokenize x1",
		"tokenvault detokenize x1", "echo detokenize x1 matched", "echo encrypt x1",
		"tokenvault encrypt x1", "vault-transit encrypt x1", "tokenvault tokenize x100"}
	if len(rep.Runs) != len(want) {
		t.Fatalf("%d runs, want %d", len(rep.Runs), len(want))
	}
	for i, r := range rep.Runs {
		if r.Name != want[i] {
			t.Fatalf("run %d is %q, want %q", i, r.Name, want[i])
		}
		checkRun(t, r, r.Ops[0])
	}
	if got := rep.Runs[9].Items; got != 100*rep.Runs[9].OKCalls {
		t.Fatalf("tokenize x100: %d items in %d calls", got, rep.Runs[9].OKCalls)
	}
	for _, r := range rep.Runs {
		if r.Name == "vault-transit encrypt x1" {
			continue // no CPU source for Vault
		}
		if c := r.ServerCPU; c == nil || c.Error != "" || c.PerCallUS <= 0 {
			t.Fatalf("%s: server CPU %+v", r.Name, c)
		}
	}
	// The matched echo runs: a separate echo process (its own address),
	// the same operation, their delay recorded, and a note each that says
	// it is context, not a target.
	for _, i := range []int{2, 5} {
		m := rep.Runs[i]
		if m.Target != "echo" || m.Address == rep.Runs[0].Address || m.Ops[0] != rep.Runs[i-1].Ops[0] {
			t.Fatalf("matched run %+v", m)
		}
		if _, ok := m.Extra["delay_ms"]; !ok {
			t.Fatalf("%s: no delay_ms in %v", m.Name, m.Extra)
		}
	}
	notes := 0
	for _, n := range rep.Notes {
		if strings.Contains(n, "(context, not a target): cpu per call") && strings.Contains(n, "at tokenvault's throughput") {
			notes++
		}
	}
	if notes != 2 {
		t.Fatalf("notes %q: want two matched-echo lines", rep.Notes)
	}
	// Every target of issue 18 has its line, measured or with a reason.
	wantChecks := map[string]string{
		"tokenize x1": "", "detokenize x1": "", "tokenize x100": "",
		"tokenize x1 throughput": "", "tokenize x1 p99": "", "detokenize x1 throughput": "",
		"encrypt x1 throughput": "", "encrypt / Vault transit": "",
		"RssAnon, 10 M tokens, mixed": "the store holds", "peak RSS, 10 M bulk load": "bulk load",
		"start-up with 10 M tokens": "does not start",
	}
	if len(rep.Checks) != len(wantChecks) {
		t.Fatalf("%d targets, want %d: %+v", len(rep.Checks), len(wantChecks), rep.Checks)
	}
	for _, c := range rep.Checks {
		reason, ok := wantChecks[c.Name]
		switch {
		case !ok:
			t.Fatalf("unexpected target %+v", c)
		case reason != "":
			if c.Status != loadgen.StatusNotMeasured || !strings.Contains(c.Reason, reason) {
				t.Fatalf("target %+v: want NOT MEASURED, %q", c, reason)
			}
		case c.Measured <= 0 || c.Target == "" || c.Margin == "" || (c.Status != loadgen.StatusMet && c.Status != loadgen.StatusNotMet):
			t.Fatalf("target %+v", c)
		}
	}
}

// TestMetricsOfAnotherServerNoticed: a -metrics address that belongs to
// another server (here a second tokenvault, as on a shared host with the
// default port) gives no CPU figure rather than the wrong one.
func TestMetricsOfAnotherServerNoticed(t *testing.T) {
	addr := startTokenvault(t)
	_, otherMetrics := startTokenvaultMetrics(t, "127.0.0.1:0")
	// At least 50 calls, however slow the machine: with none the other
	// server could not be told apart (the window has nothing to count).
	long := append(append([]string(nil), short...), "-d", "3s", "-max-requests", "50")
	rep := tvbench(t, append([]string{"run", "-addr", addr, "-metrics", otherMetrics}, long...)...)
	c := rep.Runs[1].ServerCPU
	if c == nil || !strings.Contains(c.Error, "not the server under test") || c.PerCallUS != 0 {
		t.Fatalf("server CPU from another server's metrics: %+v", c)
	}
	addr2, metrics2 := startTokenvaultMetrics(t, "127.0.0.1:0")
	rep = tvbench(t, append([]string{"run", "-addr", addr2, "-metrics", metrics2}, short...)...)
	if c := rep.Runs[1].ServerCPU; c == nil || c.Error != "" || c.PerCallUS <= 0 {
		t.Fatalf("server CPU from its own metrics: %+v", c)
	}
}

// TestRunSeveralAddressesWithCPUAndRSS: -addr a,b spreads the calls over
// two servers, -pid reads their CPU from /proc (both are this process
// here), -db-pid a database's, and the RSS chart and CSV are written.
func TestRunSeveralAddressesWithCPUAndRSS(t *testing.T) {
	a, b := startTokenvault(t), startTokenvault(t)
	dir := t.TempDir()
	pid := strconv.Itoa(os.Getpid())
	svg, csv := filepath.Join(dir, "rss.svg"), filepath.Join(dir, "rss.csv")
	rep := tvbench(t, append([]string{"run", "-addr", a + "," + b, "-pid", pid + "," + pid, "-db-pid", pid, "-mix", "tokenize", "-batch", "10",
		"-interval", "50ms", "-rss-svg", svg, "-rss-csv", csv}, short...)...)
	tv := rep.Runs[1]
	checkRun(t, tv, loadgen.OpTokenize)
	if c := tv.ServerCPU; c == nil || c.Error != "" || len(c.Sources) != 2 || c.PerItemUS <= 0 {
		t.Fatalf("server CPU: %+v", c)
	}
	// -db-pid: read for tokenvault's runs only (here this process and its
	// children, at least one server's share).
	if c := tv.DBCPU; c == nil || c.Error != "" || len(c.Sources) != 1 || c.PerItemUS <= 0 {
		t.Fatalf("database CPU: %+v", c)
	}
	if c := rep.Runs[0].DBCPU; c != nil {
		t.Fatalf("database CPU of the echo run: %+v", c)
	}
	if c := rep.Runs[0].ServerCPU; c == nil || c.Error != "" || c.PerCallUS <= 0 {
		t.Fatalf("echo CPU: %+v", c)
	}
	var cpuRatio bool
	for _, r := range rep.Ratios {
		cpuRatio = cpuRatio || strings.Contains(r.Name, "cpu per call") && r.Value > 0
	}
	if !cpuRatio {
		t.Fatalf("no CPU ratio: %+v", rep.Ratios)
	}
	for _, f := range []string{svg, csv} {
		if b, err := os.ReadFile(f); err != nil || len(b) < 50 {
			t.Fatalf("%s: %v (%d bytes)", f, err, len(b))
		}
	}
}

func TestTargetMargins(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    loadgen.Check
		met  bool
		want string
	}{
		{"near miss", atLeast("x", 0.498, 1, 0.5), false, "0.4% short of the target"},
		{"clear miss", atLeast("x", 0.25, 1, 0.5), false, "50% short of the target"},
		{"met", atLeast("x", 0.6, 1, 0.5), true, "20% above the target"},
		{"exactly met", atLeast("x", 0.5, 1, 0.5), true, "0.0% above the target"},
		{"under the limit", atMost("x", 1.5, 1, 2), true, "25% under the limit"},
		{"just over", atMost("x", 2.01, 1, 2), false, "0.5% over the limit"},
		{"no baseline", atLeast("x", 5, 0, 0.5), false, "100% short of the target"},
		{"no baseline for a limit", atMost("x", 5, 0, 2), false, "no baseline measured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.c.Met != tc.met || tc.c.Margin != tc.want {
				t.Fatalf("met %v, margin %q; want %v, %q", tc.c.Met, tc.c.Margin, tc.met, tc.want)
			}
		})
	}
}

func TestFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "-mix", "erase"}, "-mix"},
		{[]string{"run", "-d", "0s"}, "-d:"},
		{[]string{"run", "-kinds", "iban"}, "-kinds"},
		{[]string{"run", "-vault-addr", "http://127.0.0.1:1"}, "VAULT_TOKEN"},
		{[]string{"targets", "-echo", "off"}, "-echo"},
		{[]string{"run", "-addr", "127.0.0.1:1,127.0.0.1:2", "-pid", "1"}, "one per address"},
		{[]string{"run", "-pid", "x"}, "-pid"},
		{[]string{"run", "-rss-svg", "x.svg"}, "-rss-pid"},
		{[]string{"run", "-addr", "127.0.0.1:1,127.0.0.1:2", "-metrics", "127.0.0.1:3"}, "-metrics"},
		{[]string{"echo", "-delay", "-1ms"}, "-delay"},
		{[]string{"sync", "-n", "0"}, "-n 0"},
		{[]string{"sync", "-size", "0"}, "-size 0"},
		{[]string{"sync", "-dir", "/nonexistent/dir"}, "-dir"},
		{[]string{"sync", "-n", "1000000", "-size", "1048576"}, "at most 1024 MiB"},
		{[]string{"bogus"}, "unknown command"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Setenv("VAULT_TOKEN", "")
			var stderr bytes.Buffer
			if code := run(context.Background(), tc.args, io.Discard, &stderr); code == 0 || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q, want it to mention %q", code, stderr.String(), tc.want)
			}
		})
	}
}

// TestPidMustBeTheServer: a -pid that listens on no TCP port (the shell of
// `cd dir && tokenvault serve &`, tee, sudo) is refused before any call,
// instead of reading a CPU figure of nearly nothing; one that listens, but
// not on its -addr's port, is warned about.
func TestPidMustBeTheServer(t *testing.T) {
	a := startTokenvault(t)
	sleep := exec.Command("sleep", "30")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleep.Process.Kill(); sleep.Wait() })
	var stderr bytes.Buffer
	args := append([]string{"run", "-addr", a, "-pid", strconv.Itoa(sleep.Process.Pid)}, short...)
	if code := run(context.Background(), args, io.Discard, &stderr); code == 0 || !strings.Contains(stderr.String(), "listens on no TCP port") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	// The server's own process (this one, in-process) is accepted.
	checkRun(t, tvbench(t, append([]string{"run", "-addr", a, "-pid", strconv.Itoa(os.Getpid())}, short...)...).Runs[1], loadgen.OpTokenize)
	// This process listens (on a's port), but not on port 1.
	stderr.Reset()
	if err := (&common{addr: "127.0.0.1:1", pidList: []int{os.Getpid()}}).checkPidPorts(&stderr); err != nil ||
		!strings.Contains(stderr.String(), "does not listen on port 1 of -addr 127.0.0.1:1") {
		t.Fatalf("no warning: %v, %q", err, stderr.String())
	}
	stderr.Reset()
	if err := (&common{addr: a, pidList: []int{os.Getpid()}}).checkPidPorts(&stderr); err != nil || stderr.Len() != 0 {
		t.Fatalf("warning for the server's own port: %v, %q", err, stderr.String())
	}
}

func TestMatchedDelay(t *testing.T) {
	run := func(meanMS float64) *loadgen.RunResult {
		return &loadgen.RunResult{OpResult: loadgen.OpResult{Latency: loadgen.Latency{Mean: meanMS}}}
	}
	for _, tc := range []struct {
		name     string
		tv, echo float64
		want     time.Duration
	}{
		{"slower server", 6.4, 2.5, 3900 * time.Microsecond},
		{"rounded to 10 µs", 2.123456, 1, 1120 * time.Microsecond},
		{"as fast", 2, 2, 0},
		{"faster server", 1, 2, -time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := matchedDelay(run(tc.tv), run(tc.echo)); got != tc.want {
				t.Fatalf("matchedDelay = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestTargetsMatchedEchoNeedsItsOwnEcho: with a remote echo there is no
// echo to restart with a delay, and the note says so instead of a figure.
func TestTargetsMatchedEchoNeedsItsOwnEcho(t *testing.T) {
	addr, metrics := startTokenvaultMetrics(t, "127.0.0.1:0")
	echoAddr := startEchoForTest(t)
	rep := tvbench(t, append([]string{"targets", "-addr", addr, "-metrics", metrics, "-echo", echoAddr}, short...)...)
	for _, r := range rep.Runs {
		if strings.HasSuffix(r.Name, " matched") {
			t.Fatalf("a matched run against a remote echo: %+v", r)
		}
	}
	n := 0
	for _, note := range rep.Notes {
		if strings.Contains(note, "matched: not measured: needs the echo as tvbench's own child process") {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("notes %q: want two lines saying why there is no matched run", rep.Notes)
	}
}

// startEchoForTest serves the plain echo on loopback, standing for an
// echo on another machine.
func startEchoForTest(t *testing.T) string {
	t.Helper()
	gs, addr, err := echo.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gs.Stop)
	return addr
}

// TestSync: both ways of syncing run on a real file, each reports a
// positive wall time per sync, and nothing is left in -dir.
func TestSync(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("tvbench sync measures per-thread CPU time, which only Linux reports")
	}
	dir := t.TempDir()
	var out, stderr bytes.Buffer
	if code := run(context.Background(), []string{"sync", "-dir", dir, "-n", "5", "-size", "100"}, &out, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, m := range syncMethods {
		var line string
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), m.name) {
				line = l
			}
		}
		_, rest, ok := strings.Cut(line, "wall ")
		if !ok {
			t.Fatalf("no line for %q in %q", m.name, out.String())
		}
		var wall float64
		if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%f", &wall); err != nil || wall <= 0 {
			t.Fatalf("%q: wall %v (%v)", line, wall, err)
		}
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("left in -dir: %v", left)
	}
}

func TestMatchedOff(t *testing.T) {
	at := func(callsPerS float64) *loadgen.RunResult {
		return &loadgen.RunResult{OpResult: loadgen.OpResult{CallsPerS: callsPerS}}
	}
	for _, tc := range []struct {
		m, tv, want float64
	}{{1000, 1000, 0}, {1100, 1000, 0.1}, {900, 1000, 0.1}, {500, 1000, 0.5}} {
		if got := off(at(tc.m), at(tc.tv)); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("off(%v, %v) = %v, want %v", tc.m, tc.tv, got, tc.want)
		}
	}
}

// TestMatchedNote: a matched run whose throughput ended up more than the
// tolerance away from tokenvault's is flagged in its note, not passed off
// as the echo's CPU at tokenvault's throughput.
func TestMatchedNote(t *testing.T) {
	run := func(callsPerS, cpuUS float64) *loadgen.RunResult {
		return &loadgen.RunResult{OpResult: loadgen.OpResult{CallsPerS: callsPerS},
			ServerCPU: &loadgen.ServerCPU{PerCallUS: cpuUS}, Extra: map[string]float64{"delay_ms": 5}}
	}
	tv := run(5714, 107.7)
	for _, tc := range []struct {
		name    string
		m       *loadgen.RunResult
		flagged string // "" when the note must carry no flag
	}{
		{"within 5%", run(5900, 64.8), ""},
		{"5.4% faster", run(6020, 64.8), "NOT MATCHED: the throughputs differ by 5.4%"},
		{"10% slower", run(5143, 64.8), "NOT MATCHED: the throughputs differ by 10.0%"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			note := matchedNote("tokenize x1", tv, tc.m)
			if !strings.Contains(note, "cpu per call 107.7 µs = 1.66 x") {
				t.Fatalf("note %q: no ratio", note)
			}
			if got := strings.Contains(note, "NOT MATCHED"); got != (tc.flagged != "") || !strings.Contains(note, tc.flagged) {
				t.Fatalf("note %q: want flag %q", note, tc.flagged)
			}
		})
	}
}
