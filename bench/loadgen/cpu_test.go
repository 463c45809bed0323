package loadgen

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestParseProcStat(t *testing.T) {
	// utime 250 and stime 50 ticks; the command holds spaces and a ')'.
	line := "4242 (tv (bench) x) S 1 4242 4242 0 -1 4194560 1200 0 0 0 250 50 0 0 20 0 9 0 12345 1000000 300 18446744073709551615\n"
	got, err := parseProcStat(line)
	if err != nil || got != 3.0 {
		t.Fatalf("got %v, %v; want 3 s", got, err)
	}
	for _, bad := range []string{"", "12 (x) S 1 2", "12 (x) S 1 2 3 4 5 6 7 8 9 10 u s"} {
		if _, err := parseProcStat(bad); err == nil {
			t.Fatalf("%q: accepted", bad)
		}
	}
}

func TestProcCPUReadsThisProcess(t *testing.T) {
	src := ProcCPU(os.Getpid())
	before, err := src.CPUSeconds(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for i := range 200_000_000 { // burn at least a few clock ticks
		x ^= i
	}
	after, err := src.CPUSeconds(context.Background())
	if err != nil || after <= before {
		t.Fatalf("before %v, after %v (x=%d), err %v: the counter did not advance", before, after, x, err)
	}
	if _, err := ProcCPU(1 << 30).CPUSeconds(context.Background()); err == nil {
		t.Fatal("a process that does not exist was read")
	}
}

func TestMetricsCPU(t *testing.T) {
	body := "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n" +
		"# TYPE process_cpu_seconds_total counter\n" +
		"process_cpu_seconds_total_other 9\n" +
		"process_cpu_seconds_total 12.34\n" +
		"tokenvault_tokens_stored 1e+07\n" +
		"grpc_server_started_total{grpc_method=\"Tokenize\",grpc_service=\"tokenvault.v1.TokenVault\",grpc_type=\"unary\"} 40\n" +
		"grpc_server_started_total{grpc_method=\"Detokenize\",grpc_service=\"tokenvault.v1.TokenVault\",grpc_type=\"unary\"} 2\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, body)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	if v, err := MetricsCPU(addr).CPUSeconds(context.Background()); err != nil || v != 12.34 {
		t.Fatalf("got %v, %v", v, err)
	}
	if v, err := ScrapeGauge(context.Background(), srv.URL+"/metrics", "tokenvault_tokens_stored"); err != nil || v != 1e7 {
		t.Fatalf("gauge: %v, %v", v, err)
	}
	if _, err := ScrapeGauge(context.Background(), addr, "absent_metric"); err == nil || !strings.Contains(err.Error(), "absent_metric") {
		t.Fatalf("missing sample: %v", err)
	}
	if n, ok, err := MetricsCPU(addr).(callCounter).CallsStarted(context.Background()); err != nil || !ok || n != 42 {
		t.Fatalf("calls started: %v, %v, %v; want 42", n, ok, err)
	}
	if _, err := MetricsCPU(srv.URL + "/nope").CPUSeconds(context.Background()); err == nil {
		t.Fatal("HTTP 404 accepted")
	}
}

// fixedCPU is a CPU source that reads from a list.
type fixedCPU struct{ vals []float64 }

func (f *fixedCPU) String() string { return "fixed" }
func (f *fixedCPU) CPUSeconds(context.Context) (float64, error) {
	v := f.vals[0]
	f.vals = f.vals[1:]
	return v, nil
}

func TestCPUMeterAddsServers(t *testing.T) {
	m := &cpuMeter{srcs: []CPUSource{&fixedCPU{[]float64{10, 11}}, &fixedCPU{[]float64{5, 5.5}}}}
	m.start(context.Background())
	c := m.finish(context.Background(), 1000, 100_000)
	if c.Error != "" || c.Seconds != 1.5 || c.PerCallUS != 1500 || c.PerItemUS != 15 {
		t.Fatalf("%+v", c)
	}
	// A process that spent nothing while the calls were made is not the
	// server (a wrapper's pid): refused, not 0 µs per call.
	m = &cpuMeter{srcs: []CPUSource{&fixedCPU{[]float64{3, 3}}}, busy: true}
	m.start(context.Background())
	if c := m.finish(context.Background(), 1000, 1000); c.Error == "" || c.PerCallUS != 0 || !strings.Contains(c.Error, "no CPU time") {
		t.Fatalf("idle source: %+v", c)
	}
	// …also when it is one of several (a replica's wrapper among servers).
	m = &cpuMeter{srcs: []CPUSource{&fixedCPU{[]float64{10, 11}}, &fixedCPU{[]float64{3, 3}}}, busy: true}
	m.start(context.Background())
	if c := m.finish(context.Background(), 1000, 1000); c.Error == "" || c.PerCallUS != 0 || !strings.Contains(c.Error, "no CPU time") {
		t.Fatalf("one idle source of two: %+v", c)
	}
	// A counter that went back (a restarted server behind -metrics).
	m = &cpuMeter{srcs: []CPUSource{&fixedCPU{[]float64{30, 2}}}, busy: true}
	m.start(context.Background())
	if c := m.finish(context.Background(), 1000, 1000); c.Error == "" || c.PerCallUS != 0 || !strings.Contains(c.Error, "went back") {
		t.Fatalf("counter went back: %+v", c)
	}
	// A database a cached load left idle is a figure, 0, not an error.
	m = &cpuMeter{srcs: []CPUSource{&fixedCPU{[]float64{3, 3}}}}
	m.start(context.Background())
	if c := m.finish(context.Background(), 1000, 1000); c.Error != "" || c.Seconds != 0 {
		t.Fatalf("idle database: %+v", c)
	}
	m = &cpuMeter{srcs: []CPUSource{ProcCPU(1 << 30)}}
	m.start(context.Background())
	if c := m.finish(context.Background(), 1, 1); c.Error == "" || c.PerCallUS != 0 {
		t.Fatalf("unreadable source: %+v", c)
	}
}

func TestReadRSS(t *testing.T) {
	m, err := readRSS(os.Getpid())
	if err != nil || m.RSS <= 0 || m.Anon <= 0 || m.Anon+m.File > m.RSS+(1<<20) {
		t.Fatalf("%+v, %v", m, err)
	}
}

func TestEchoMetricsExposeCPU(t *testing.T) {
	srv := httptest.NewServer(echoMetricsHandler())
	defer srv.Close()
	if v, err := MetricsCPU(srv.URL + "/metrics").CPUSeconds(context.Background()); err != nil || v <= 0 {
		t.Fatalf("echo metrics: %v, %v", v, err)
	}
}

func TestParseProcStatTree(t *testing.T) {
	// ppid 7, utime 250, stime 50, cutime 30, cstime 20 ticks.
	line := "4242 (postgres: x (y)) S 7 4242 4242 0 -1 4194560 1200 0 0 0 250 50 30 20 20 0 9 0 12345 1000000 300\n"
	own, reaped, ppid, err := parseProcStatTree(line)
	if err != nil || own != 3.0 || reaped != 0.5 || ppid != 7 {
		t.Fatalf("got %v, %v, %v, %v; want 3 s, 0.5 s, 7", own, reaped, ppid, err)
	}
	for _, bad := range []string{"", "12 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13", "12 (x) S p 2 3 4 5 6 7 8 9 10 11 12 13 14 15"} {
		if _, _, _, err := parseProcStatTree(bad); err == nil {
			t.Fatalf("%q: accepted", bad)
		}
	}
}

// A child's CPU counts while it runs and after it has exited and been
// waited for (the parent's cutime), and not in the parent's own figure.
func TestProcTreeCPUCountsChildren(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to run a child")
	}
	ctx := context.Background()
	tree, own := ProcTreeCPU(os.Getpid()), ProcCPU(os.Getpid())
	tree0, err := tree.CPUSeconds(ctx)
	if err != nil {
		t.Fatal(err)
	}
	own0, _ := own.CPUSeconds(ctx)
	// A child that burns CPU, then waits to be told to exit.
	cmd := exec.Command(sh, "-c", `i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done; echo burnt; cat >/dev/null`)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 6)
	if _, err := io.ReadFull(stdout, line); err != nil {
		t.Fatal(err)
	}
	live, err := tree.CPUSeconds(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	reaped, _ := tree.CPUSeconds(ctx)
	own1, _ := own.CPUSeconds(ctx)
	child := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	if child < 0.05 {
		t.Skipf("the child burnt only %.3f s: too little to tell apart", child)
	}
	// /proc rounds each process to 10 ms ticks.
	const slack = 0.03
	if live-tree0 < child-slack || reaped-tree0 < child-slack {
		t.Fatalf("child burnt %.2f s; tree moved by %.2f s while it ran, %.2f s after it was reaped", child, live-tree0, reaped-tree0)
	}
	if reaped < live {
		t.Fatalf("the tree's figure went down from %.2f to %.2f s when the child was reaped", live, reaped)
	}
	if own1-own0 > (reaped-tree0)-child+slack {
		t.Fatalf("ProcCPU moved by %.2f s, more than the tree net of the child (%.2f s): ProcCPU counts children?", own1-own0, reaped-tree0-child)
	}
	if _, err := ProcTreeCPU(1 << 30).CPUSeconds(ctx); err == nil {
		t.Fatal("a process that does not exist was read")
	}
}

// TestListeningPorts: this process's listening port is found, a process
// that listens on nothing (a child `sleep`, as a shell in front of a
// server would be) has none, and a closed listener's port is gone.
func TestListeningPorts(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/PID/net and /proc/PID/fd: Linux only")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if ports, told := ListeningPorts(os.Getpid()); !told || !slices.Contains(ports, port) {
		t.Fatalf("this process: %v (told %v), want %d among them", ports, told, port)
	}
	sleep := exec.Command("sleep", "30")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleep.Process.Kill(); sleep.Wait() })
	if ports, told := ListeningPorts(sleep.Process.Pid); !told || len(ports) != 0 {
		t.Fatalf("a child that does not listen: %v, told %v", ports, told)
	}
	ln.Close()
	if ports, told := ListeningPorts(os.Getpid()); !told || slices.Contains(ports, port) {
		t.Fatalf("after closing the listener: %v, told %v", ports, told)
	}
	if _, told := ListeningPorts(1 << 30); told {
		t.Fatal("a process that does not exist: told")
	}
}
