package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Server CPU per call is the figure that survives a busy machine: a
// throughput ratio on a shared 2-core box mostly measures who gets the
// CPUs, while the CPU a server process spends per call barely moves with
// load. It is read from each server's own counters, before and after the
// measured window: /proc/<pid>/stat when the process is local, otherwise
// the Prometheus process_cpu_seconds_total both tokenvault and the echo
// (tvbench echo -metrics-listen) expose. Both are the kernel's utime+stime
// in clock ticks (10 ms), so an 8 s run at one core resolves ~0.1%.

// CPUSource reads one server process's cumulative CPU time (user+system).
type CPUSource interface {
	CPUSeconds(ctx context.Context) (float64, error)
	// String says where the figure comes from ("/proc/123/stat", a URL).
	String() string
}

// ProcCPU reads a local process's CPU time from /proc/<pid>/stat.
func ProcCPU(pid int) CPUSource { return procCPU(pid) }

type procCPU int

func (p procCPU) String() string { return fmt.Sprintf("/proc/%d/stat", int(p)) }

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports
// (the kernel reports /proc times in it regardless of CONFIG_HZ).
const clockTicks = 100

func (p procCPU) CPUSeconds(context.Context) (float64, error) {
	b, err := os.ReadFile(p.String())
	if err != nil {
		return 0, err
	}
	return parseProcStat(string(b))
}

// parseProcStat returns utime+stime in seconds.
func parseProcStat(s string) (float64, error) {
	own, _, _, err := parseProcStatTree(s)
	return own, err
}

// MetricsCPU reads process_cpu_seconds_total from a Prometheus endpoint:
// addr is host:port (then /metrics is fetched) or a full http(s) URL.
func MetricsCPU(addr string) CPUSource {
	u := addr
	if !strings.Contains(u, "://") {
		u = "http://" + addr + "/metrics"
	}
	return metricsCPU{url: u, c: &http.Client{Timeout: 5 * time.Second}}
}

type metricsCPU struct {
	url string
	c   *http.Client
}

func (m metricsCPU) String() string { return m.url }

func (m metricsCPU) CPUSeconds(ctx context.Context) (float64, error) {
	v, err := scrapeMetric(ctx, m.c, m.url, "process_cpu_seconds_total")
	if err != nil {
		return 0, err
	}
	return v, nil
}

// CallsStarted sums grpc_server_started_total over its labels: how many
// calls the server behind the endpoint has started (ok false if it does
// not export the counter, as the echo does not).
func (m metricsCPU) CallsStarted(ctx context.Context) (n float64, ok bool, err error) {
	body, err := fetch(ctx, m.c, m.url)
	if err != nil {
		return 0, false, err
	}
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		rest, found := strings.CutPrefix(sc.Text(), "grpc_server_started_total{")
		if !found {
			continue
		}
		i := strings.LastIndexByte(rest, '}')
		f := strings.Fields(rest[i+1:])
		if i < 0 || len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, false, fmt.Errorf("grpc_server_started_total: %w", err)
		}
		n, ok = n+v, true
	}
	return n, ok, sc.Err()
}

// callCounter is a CPU source that can also count its server's calls, so
// that a metrics address that is not the server under test (another
// tokenvault on the same host, say on the default port) is noticed.
type callCounter interface {
	CallsStarted(ctx context.Context) (float64, bool, error)
}

func fetch(ctx context.Context, c *http.Client, url string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	// Plain text, not the protobuf or OpenMetrics negotiation.
	req.Header.Set("Accept", "text/plain")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	return resp.Body, nil
}

// scrapeMetric fetches a Prometheus text exposition and returns the value
// of an unlabelled sample named name.
func scrapeMetric(ctx context.Context, c *http.Client, url, name string) (float64, error) {
	body, err := fetch(ctx, c, url)
	if err != nil {
		return 0, err
	}
	defer body.Close()
	return findMetric(body, name)
}

func findMetric(r io.Reader, name string) (float64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name)
		if !ok || (rest != "" && rest[0] != ' ') {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		return strconv.ParseFloat(f[0], 64)
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s sample", name)
}

// ScrapeGauge returns an unlabelled sample of a Prometheus endpoint (addr
// as for MetricsCPU), e.g. tokenvault_tokens_stored.
func ScrapeGauge(ctx context.Context, addr, name string) (float64, error) {
	m := MetricsCPU(addr).(metricsCPU)
	return scrapeMetric(ctx, m.c, m.url, name)
}

// ServerCPU is the CPU the servers of a run spent in its measured window.
type ServerCPU struct {
	// Sources names where the figures came from (one per server process).
	Sources []string `json:"sources"`
	Seconds float64  `json:"cpu_s,omitempty"`
	// PerCallUS and PerItemUS divide Seconds by every call (and item) of
	// the window, failed ones included: the server did their work too.
	PerCallUS float64 `json:"cpu_per_call_us,omitempty"`
	PerItemUS float64 `json:"cpu_per_item_us,omitempty"`
	// Error is why the figure is missing (a source could not be read).
	Error string `json:"error,omitempty"`
}

// cpuMeter takes the before/after readings of several sources (servers
// behind several addresses: their CPU is added up).
type cpuMeter struct {
	srcs   []CPUSource
	before []float64
	err    error
	// calls0 is the sum of the sources' started calls, when every source
	// counts them (counted).
	calls0  float64
	counted bool
	// busy: each source is a server that answered the calls, so a
	// window in which one spent no CPU is refused. Not for a database,
	// which a load served from caches may leave idle.
	busy bool
}

// startedCalls sums the sources' started calls; ok is false unless every
// source counts them.
func (m *cpuMeter) startedCalls(ctx context.Context) (float64, bool) {
	var sum float64
	for _, s := range m.srcs {
		cc, ok := s.(callCounter)
		if !ok {
			return 0, false
		}
		n, ok, err := cc.CallsStarted(ctx)
		if err != nil || !ok {
			return 0, false
		}
		sum += n
	}
	return sum, len(m.srcs) > 0
}

func (m *cpuMeter) read(ctx context.Context) ([]float64, error) {
	out := make([]float64, len(m.srcs))
	for i, s := range m.srcs {
		v, err := s.CPUSeconds(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s, err)
		}
		out[i] = v
	}
	return out, nil
}

func (m *cpuMeter) start(ctx context.Context) {
	m.calls0, m.counted = m.startedCalls(ctx)
	m.before, m.err = m.read(ctx)
}

func (m *cpuMeter) finish(ctx context.Context, calls, items uint64) *ServerCPU {
	c := &ServerCPU{}
	for _, s := range m.srcs {
		c.Sources = append(c.Sources, s.String())
	}
	after, err := m.read(ctx)
	if err = errors.Join(m.err, err); err != nil {
		c.Error = err.Error()
		return c
	}
	if calls == 0 {
		// Nothing to divide by, and nothing to tell the server under test
		// from another one.
		c.Error = "no call completed in the measured window: no CPU per call"
		return c
	}
	if m.counted {
		// Calls in flight at either end make the two counts differ (by
		// many, for a short window on a busy machine); a server that saw
		// fewer than half the calls made is not the one under test.
		if n, ok := m.startedCalls(ctx); ok && n-m.calls0 < 0.5*float64(calls) {
			c.Error = fmt.Sprintf("the server behind %s started %.0f calls while tvbench made %d: not the server under test? (give -metrics or -pid)",
				strings.Join(c.Sources, ", "), n-m.calls0, calls)
			return c
		}
	}
	for i := range after {
		d := after[i] - m.before[i]
		if d < 0 {
			// A counter that went back: the process behind it restarted
			// (a metrics endpoint), or the pid was reused.
			c.Seconds = 0
			c.Error = fmt.Sprintf("%s: its CPU counter went back during the measured window (%.2f s to %.2f s): the server restarted?",
				c.Sources[i], m.before[i], after[i])
			return c
		}
		if d == 0 && m.busy {
			// A server that answered calls spent CPU on them (calls go
			// round robin, so every address got its share); none at all,
			// not one 10 ms clock tick, means the counters are another
			// process's: most often -pid named the shell or wrapper that
			// started the server. Reporting 0 µs per call would read as
			// every CPU target met.
			c.Seconds = 0
			c.Error = fmt.Sprintf("%s: no CPU time in the measured window while tvbench made %d calls: not the server's own process "+
				"(a shell or wrapper that started it?), or too few calls for the counters' 10 ms resolution",
				c.Sources[i], calls)
			return c
		}
		c.Seconds += d
	}
	if calls > 0 {
		c.PerCallUS = c.Seconds * 1e6 / float64(calls)
	}
	if items > 0 {
		c.PerItemUS = c.Seconds * 1e6 / float64(items)
	}
	return c
}

// ProcTreeCPU reads the CPU time of a local process and of its children:
// a database server whose work is done in child processes, as
// PostgreSQL's postmaster forks one backend per connection. The sum is
// the process's own utime+stime, its cutime+cstime (children it has
// already waited for: a backend that exits in the window keeps its
// share), and utime+stime+cutime+cstime of every live child
// (/proc/<pid>/task/*/children, Linux ≥ 3.5 with
// CONFIG_PROC_CHILDREN; else a scan of /proc for the parent id). A child
// that started and exited between two scans in the window is still
// counted, through the parent's cutime; one that exited unreaped in the
// window is not (a zombie's times only reach the parent when it is
// reaped, a moment later).
func ProcTreeCPU(pid int) CPUSource { return procTreeCPU(pid) }

type procTreeCPU int

func (p procTreeCPU) String() string {
	return fmt.Sprintf("/proc/%d/stat and its children's", int(p))
}

func (p procTreeCPU) CPUSeconds(context.Context) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", int(p)))
	if err != nil {
		return 0, err
	}
	own, reaped, _, err := parseProcStatTree(string(b))
	if err != nil {
		return 0, err
	}
	total := own + reaped
	kids, err := childPids(int(p))
	if err != nil {
		return 0, err
	}
	for _, k := range kids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", k))
		if err != nil {
			continue // exited since the listing: its time is in reaped next read
		}
		o, r, _, err := parseProcStatTree(string(b))
		if err != nil {
			continue
		}
		total += o + r
	}
	return total, nil
}

// childPids lists pid's live children.
func childPids(pid int) ([]int, error) {
	// Each thread lists the children it forked: read every thread's.
	if tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid)); err == nil {
		var out []int
		found := false
		for _, t := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
			if err != nil {
				continue
			}
			found = true
			for _, f := range strings.Fields(string(b)) {
				if k, err := strconv.Atoi(f); err == nil {
					out = append(out, k)
				}
			}
		}
		if found {
			return out, nil
		}
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		k, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if _, _, ppid, err := parseProcStatTree(string(b)); err == nil && ppid == pid {
			out = append(out, k)
		}
	}
	return out, nil
}

// parseProcStatTree returns utime+stime, cutime+cstime (seconds) and the
// parent's pid from a /proc/<pid>/stat line. The command name (field 2)
// is in parentheses and may hold spaces, so fields are counted after the
// last ')'.
func parseProcStatTree(s string) (own, reaped float64, ppid int, err error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, 0, errors.New("/proc stat: no command field")
	}
	f := strings.Fields(s[i+1:])
	// After the command: ppid is field 4, utime..cstime 14..17.
	if len(f) < 15 {
		return 0, 0, 0, errors.New("/proc stat: too few fields")
	}
	var v [4]uint64
	for j := range v {
		if v[j], err = strconv.ParseUint(f[11+j], 10, 64); err != nil {
			return 0, 0, 0, fmt.Errorf("/proc stat: %w", err)
		}
	}
	if ppid, err = strconv.Atoi(f[1]); err != nil {
		return 0, 0, 0, fmt.Errorf("/proc stat: %w", err)
	}
	return float64(v[0]+v[1]) / clockTicks, float64(v[2]+v[3]) / clockTicks, ppid, nil
}

// ListeningPorts lists the TCP ports process pid listens on: the sockets
// of /proc/PID/net/tcp and tcp6 (the process's own network namespace) in
// state LISTEN, matched by inode against the links in /proc/PID/fd. told
// is false when that cannot be said (not Linux, or the process's
// descriptors are not readable by this user). tvbench uses it to refuse a
// -pid that is not the server: a shell, `tee` or `sudo` in front of it
// listens on nothing and spends little or no CPU, and its figure would
// read as every CPU target met.
func ListeningPorts(pid int) (ports []int, told bool) {
	byInode := map[string]int{}
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		lines := strings.Split(string(b), "\n")
		for _, ln := range lines[min(1, len(lines)):] { // the first line is a header
			// sl local_address rem_address st … inode: "0A" is LISTEN.
			fs := strings.Fields(ln)
			if len(fs) < 10 || fs[3] != "0A" {
				continue
			}
			i := strings.LastIndexByte(fs[1], ':')
			if i < 0 {
				continue
			}
			if p, err := strconv.ParseUint(fs[1][i+1:], 16, 16); err == nil {
				byInode[fs[9]] = int(p)
			}
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, false
	}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil {
			continue
		}
		if ino, ok := strings.CutPrefix(l, "socket:["); ok {
			if p, ok := byInode[strings.TrimSuffix(ino, "]")]; ok && !slices.Contains(ports, p) {
				ports = append(ports, p)
			}
		}
	}
	slices.Sort(ports)
	return ports, true
}
