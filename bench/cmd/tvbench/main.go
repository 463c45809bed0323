// Command tvbench load-tests a tokenvault server over its gRPC API and
// measures it side by side with baselines: a no-op gRPC echo server speaking
// the same API (its throughput is E), and HashiCorp Vault transit used
// directly, the way many teams encrypt fields today.
//
//	tvbench run     [flags]   one load profile against -addr, with baselines, ratios
//	tvbench targets [flags]   the performance targets of BENCHMARKS.md, met or not
//	tvbench echo    [flags]   serve the echo baseline (on the server machine)
//
// The load is bounded: every run stops by itself (-d, -max-requests) and
// calls go only to the addresses given. Flags are documented in
// bench/README.md; this file only wires them to bench/loadgen.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tokenvault/tokenvault/bench/echo"
	"github.com/tokenvault/tokenvault/bench/loadgen"
	"github.com/tokenvault/tokenvault/crypto/keyfile"
)

const usage = `tvbench: load generator for tokenvault, with baselines

Usage:
  tvbench run     [flags]   one load profile against -addr; echo (and Vault transit) baselines; ratios
  tvbench targets [flags]   measure the performance targets (BENCHMARKS.md): met or not, by how much
  tvbench echo    [flags]   serve the no-op echo baseline (run it on the server machine)
  tvbench sync    [flags]   what one durable sync costs on this machine's disk: CPU and wall time per fsync and msync

Run "tvbench CMD -h" for flags; see bench/README.md.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"run": runCmd, "targets": targetsCmd, "echo": echoCmd, "sync": syncCmd,
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "tvbench: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err := cmd(ctx, args[1:], stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "tvbench %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// common holds the flags run and targets share.
type common struct {
	fs      *flag.FlagSet
	addr    string
	p       loadgen.Profile
	mix     string
	kinds   string
	tls     loadgen.ClientTLS
	keyFile string
	echo    string
	vault   loadgen.TransitConfig
	vTokenF string
	jsonOut string
	htmlOut string
	quiet   bool
	rssPid  int
	pids    string
	metrics string
	echoMet string
	rssSVG  string
	rssCSV  string
	pidList []int
	dbPid   int
	matched bool // targets: the matched echo runs
}

// addrs lists the tokenvault addresses of -addr.
func (c *common) addrs() []string {
	var out []string
	for _, a := range strings.Split(c.addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// cpuSources says where the tokenvault servers' CPU is read: /proc for
// -pid, else the metrics endpoints (default: each address's host, port
// 9300). The reason is set when there is none.
func (c *common) cpuSources() (srcs []loadgen.CPUSource, metrics []string, err error) {
	for _, pid := range c.pidList {
		srcs = append(srcs, loadgen.ProcCPU(pid))
	}
	switch c.metrics {
	case "off":
		return srcs, nil, nil
	case "":
		for _, a := range c.addrs() {
			host, _, err := net.SplitHostPort(a)
			if err != nil {
				return nil, nil, fmt.Errorf("-addr %q: %w", a, err)
			}
			metrics = append(metrics, net.JoinHostPort(host, "9300"))
		}
	default:
		metrics = strings.Split(c.metrics, ",")
		if len(metrics) != len(c.addrs()) {
			return nil, nil, fmt.Errorf("-metrics: %d addresses for %d -addr addresses (give one per address)", len(metrics), len(c.addrs()))
		}
	}
	if len(srcs) == 0 {
		for _, m := range metrics {
			srcs = append(srcs, loadgen.MetricsCPU(strings.TrimSpace(m)))
		}
	}
	return srcs, metrics, nil
}

func newCommon(name string, withMix bool) *common {
	c := &common{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	c.p.Batch = 1
	fs := c.fs
	fs.StringVar(&c.addr, "addr", envOr("TOKENVAULT_ADDR", "127.0.0.1:7300"), "tokenvault gRPC address (env TOKENVAULT_ADDR), or several comma-separated (calls go round robin over them, e.g. replicas); the only tokenvault addresses called")
	fs.IntVar(&c.p.Concurrency, "c", 64, "calls in flight (closed loop); with -rate, the cap on calls in flight")
	fs.Float64Var(&c.p.Rate, "rate", 0, "open loop: start calls at this fixed rate per second (0 = closed loop)")
	fs.DurationVar(&c.p.Duration, "d", 10*time.Second, "measured duration of each run (max 24h)")
	fs.DurationVar(&c.p.Warmup, "warmup", 2*time.Second, "unmeasured warm-up before each run")
	fs.Int64Var(&c.p.MaxRequests, "max-requests", 0, "stop each run after this many calls (0 = only -d)")
	if withMix {
		fs.StringVar(&c.mix, "mix", "tokenize", `operation mix, e.g. "tokenize=3,detokenize=1"; ops: tokenize, detokenize, mask, encrypt, decrypt`)
		fs.IntVar(&c.p.Batch, "batch", 1, "fields, tokens or blobs per call (max 1000)")
	}
	fs.IntVar(&c.p.Subjects, "subjects", 1000, "distinct data subjects the calls spread over")
	fs.StringVar(&c.kinds, "kinds", "pan", "token kinds, comma-separated: pan, ssn, phone, email, bank-account, national-id, name, address, generic, card-security-code")
	fs.BoolVar(&c.p.Deterministic, "deterministic", false, "tokenize with deterministic tokens (the same value of a subject gets the same token; random values are new ones)")
	fs.IntVar(&c.p.Distinct, "distinct", 0, "tokenize values drawn from this many fixed values per kind (0: a fresh random value each); with -deterministic, repeats are lookup hits")
	fs.IntVar(&c.p.Pool, "pool", 1000, "tokens and blobs made before the run for detokenize, mask and decrypt")
	fs.IntVar(&c.p.Connections, "conns", 2, "gRPC connections (calls are spread over them)")
	fs.DurationVar(&c.p.Timeout, "timeout", 10*time.Second, "deadline of each call")
	fs.DurationVar(&c.p.Interval, "interval", time.Second, "time-series resolution (chart, progress)")
	fs.BoolVar(&c.tls.Enabled, "tls", false, "use TLS (implied by -ca, -cert, -key, -server-name)")
	fs.StringVar(&c.tls.CAFile, "ca", "", "PEM CA bundle that verifies the server (default: system roots)")
	fs.StringVar(&c.tls.CertFile, "cert", "", "client certificate (PEM) for mTLS")
	fs.StringVar(&c.tls.KeyFile, "key", "", "client private key (PEM) for mTLS")
	fs.StringVar(&c.tls.ServerName, "server-name", "", "name to verify in the server certificate (default: the -addr host)")
	fs.StringVar(&c.keyFile, "api-key-file", "", `file holding the API key, sent as "authorization: Bearer <key>" (or env TOKENVAULT_API_KEY)`)
	fs.StringVar(&c.echo, "echo", "", `echo baseline: "" starts "tvbench echo" as a separate process on loopback; "inprocess" serves it from this process (flattering: it shares the load generator's scheduler); host:port uses a "tvbench echo" server (same TLS flags); "off" skips it`)
	fs.StringVar(&c.vault.Address, "vault-addr", "", "HashiCorp Vault address for the transit baseline (token from env VAULT_TOKEN or -vault-token-file); empty skips it")
	fs.StringVar(&c.vTokenF, "vault-token-file", "", "file holding the Vault token")
	fs.StringVar(&c.vault.Mount, "vault-mount", "transit", "transit mount path")
	fs.StringVar(&c.vault.Key, "vault-key", "tvbench", "transit key name")
	fs.BoolVar(&c.vault.CreateKey, "vault-create-key", false, "enable transit and create the key if missing (dev servers)")
	fs.StringVar(&c.vault.CACert, "vault-ca-cert", "", "PEM CA bundle for Vault's TLS certificate")
	fs.StringVar(&c.jsonOut, "json", "", `write the JSON report to this file ("-" for stdout, replacing the text report)`)
	fs.StringVar(&c.htmlOut, "html", "", "write a self-contained HTML report with charts to this file")
	fs.BoolVar(&c.quiet, "quiet", false, "no per-interval progress on stderr")
	fs.IntVar(&c.rssPid, "rss-pid", 0, "local server process id whose resident set size is sampled (Linux; default: the first -pid)")
	fs.IntVar(&c.dbPid, "db-pid", 0, "local database server process id (PostgreSQL's postmaster): its CPU and its children's (the backends) per call, from /proc, reported as database CPU")
	fs.StringVar(&c.pids, "pid", "", "local tokenvault process id(s), comma-separated, one per -addr: server CPU per call from /proc/PID/stat (instead of -metrics)")
	fs.StringVar(&c.metrics, "metrics", "", `tokenvault metrics address(es) (host:port or URL), one per -addr, for server CPU per call from process_cpu_seconds_total when -pid is not given; default: each -addr host with port 9300, the server's default; "off": no CPU figures`)
	fs.StringVar(&c.echoMet, "echo-metrics", "", `metrics address of a remote echo (-echo host:port; "tvbench echo -metrics-listen"), for its CPU per call; a local echo child is read from /proc`)
	if withMix {
		fs.StringVar(&c.rssSVG, "rss-svg", "", "write the server's RSS over time (VmRSS, RssAnon, RssFile; needs -rss-pid or -pid) as an SVG chart to this file")
		fs.StringVar(&c.rssCSV, "rss-csv", "", "write the same RSS time series as CSV to this file")
	}
	return c
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func readSecret(file, env string) (string, error) {
	if file != "" {
		// Refused if group or others may read it, like the server's keys.
		b, err := keyfile.ReadSecret(file)
		if err != nil {
			return "", err
		}
		defer clear(b)
		return strings.TrimSpace(string(b)), nil
	}
	return os.Getenv(env), nil
}

func (c *common) parse(args []string) error {
	if err := c.fs.Parse(args); err != nil {
		return err
	}
	if c.fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", c.fs.Arg(0))
	}
	var err error
	if c.mix != "" {
		if c.p.Mix, err = loadgen.ParseMix(c.mix); err != nil {
			return err
		}
	}
	if c.p.Kinds, err = loadgen.ParseKinds(c.kinds); err != nil {
		return err
	}
	if c.vault.Address != "" {
		if c.vault.Token, err = readSecret(c.vTokenF, "VAULT_TOKEN"); err != nil {
			return fmt.Errorf("-vault-token-file: %w", err)
		}
		if c.vault.Token == "" {
			return errors.New("-vault-addr: needs a token in env VAULT_TOKEN or -vault-token-file")
		}
	}
	if c.pids != "" {
		for _, f := range strings.Split(c.pids, ",") {
			pid, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || pid <= 0 {
				return fmt.Errorf("-pid: %q is not a process id", f)
			}
			c.pidList = append(c.pidList, pid)
		}
		if len(c.pidList) != len(c.addrs()) {
			return fmt.Errorf("-pid: %d process ids for %d -addr addresses (give one per address)", len(c.pidList), len(c.addrs()))
		}
		if c.rssPid == 0 {
			c.rssPid = c.pidList[0]
		}
	}
	if (c.rssSVG != "" || c.rssCSV != "") && c.rssPid <= 0 {
		return errors.New("-rss-svg, -rss-csv: need the server's process (-rss-pid or -pid)")
	}
	// Flags carry the defaults; SetDefaults would turn an explicit 0 (say
	// -d 0) into a default instead of an error.
	if c.p.Mix == nil {
		c.p.Mix = map[loadgen.Op]float64{loadgen.OpTokenize: 1}
	}
	return c.p.Validate()
}

// session holds the targets of one invocation.
type session struct {
	c        *common
	tv, echo loadgen.Target
	transit  loadgen.Target
	stopEcho func()
	stderr   io.Writer
	// CPU sources of the tokenvault servers and of the echo (nil: none,
	// and echoNoCPU says why).
	tvCPU, echoCPU []loadgen.CPUSource
	echoNoCPU      string
	metricsAddrs   []string
	// dialOpts are tokenvault's dial options (TLS, API key), from which
	// each echo process's are made.
	dialOpts []grpc.DialOption
}

// checkPidPorts refuses a -pid that listens on no TCP port (a shell, tee
// or sudo in front of the server), and warns when one listens, but not on
// its -addr's port: another server's process, or a container's whose port
// is mapped (its own network namespace sees the port inside; the CPU
// figure is then still the server's, so that is not a refusal).
func (c *common) checkPidPorts(stderr io.Writer) error {
	for i, pid := range c.pidList {
		ports, told := loadgen.ListeningPorts(pid)
		if !told {
			continue
		}
		if len(ports) == 0 {
			return fmt.Errorf("-pid: process %d listens on no TCP port: give the server's own process id, "+
				"not a shell, tee or sudo that started it ($! after `cd dir && tokenvault serve &` is the shell's)", pid)
		}
		a := c.addrs()[i] // parse checked one -pid per address
		_, ps, err := net.SplitHostPort(a)
		port, perr := strconv.Atoi(ps)
		if err != nil || perr != nil || slices.Contains(ports, port) {
			continue // a bad address is the dial's to report
		}
		fmt.Fprintf(stderr, "tvbench: warning: -pid %d does not listen on port %d of -addr %s (it listens on %v): "+
			"another server's process, or a container's with a mapped port? Its CPU is what the figures show.\n", pid, port, a, ports)
	}
	return nil
}

func (c *common) open(stderr io.Writer) (*session, error) {
	apiKey, err := readSecret(c.keyFile, "TOKENVAULT_API_KEY")
	if err != nil {
		return nil, fmt.Errorf("-api-key-file: %w", err)
	}
	s := &session{c: c, stderr: stderr, stopEcho: func() {}}
	if s.tvCPU, s.metricsAddrs, err = c.cpuSources(); err != nil {
		return nil, err
	}
	if err := c.checkPidPorts(stderr); err != nil {
		return nil, err
	}
	var opts []grpc.DialOption
	for _, a := range c.addrs() { // the plaintext-key check is per address
		if opts, err = loadgen.DialOptions(a, c.tls, apiKey); err != nil {
			return nil, err
		}
	}
	s.dialOpts = opts
	if s.tv, err = loadgen.NewGRPCTarget("tokenvault", c.addr, c.p.Connections, opts); err != nil {
		return nil, err
	}
	switch c.echo {
	case "off":
	case "", "inprocess":
		var pid int
		if c.echo == "inprocess" {
			s.echo, s.stopEcho, err = startEchoInProcess(c, opts)
			s.echoNoCPU = "the in-process echo's CPU is the load generator's too"
		} else {
			s.echo, s.stopEcho, pid, err = startEchoProcess(c, opts)
			s.echoCPU = []loadgen.CPUSource{loadgen.ProcCPU(pid)}
		}
		if err != nil {
			s.stopEcho = func() {}
			s.close()
			return nil, err
		}
	default:
		if s.echo, err = loadgen.NewGRPCTarget("echo", c.echo, c.p.Connections, opts); err != nil {
			s.close()
			return nil, err
		}
		if c.echoMet != "" {
			s.echoCPU = []loadgen.CPUSource{loadgen.MetricsCPU(c.echoMet)}
		} else {
			s.echoNoCPU = "a remote echo: give -echo-metrics"
		}
	}
	if c.vault.Address != "" {
		if s.transit, err = loadgen.NewTransitTarget(c.vault, c.p.Concurrency); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

func (s *session) close() {
	for _, t := range []loadgen.Target{s.tv, s.echo, s.transit} {
		if t != nil {
			t.Close()
		}
	}
	s.stopEcho()
}

// measure runs one profile against one target (base: "" for tokenvault,
// else the baseline's name), with progress on stderr.
func (s *session) measure(ctx context.Context, name string, t loadgen.Target, p loadgen.Profile, base string) (*loadgen.RunResult, error) {
	ro := loadgen.RunOptions{Name: name}
	switch base {
	case "":
		ro.RSSPid = s.c.rssPid
		ro.CPU = s.tvCPU
		if len(s.metricsAddrs) > 0 {
			// How many writes share one sync (BENCHMARKS.md: what a sync
			// costs is most of the system time of a durable call).
			ro.Counters = []loadgen.Counter{
				loadgen.MetricsCounter("store_syncs", "tokenvault_store_group_commits_total", s.metricsAddrs),
				loadgen.MetricsCounter("audit_syncs", "tokenvault_audit_syncs_total", s.metricsAddrs),
			}
		}
		if s.c.dbPid > 0 {
			ro.DBCPU = []loadgen.CPUSource{loadgen.ProcTreeCPU(s.c.dbPid)}
		}
	case "echo":
		ro.CPU = s.echoCPU
	}
	return s.run(ctx, t, p, base, ro)
}

// run runs p against t with ro (measure's, or a matched echo's own CPU
// source), with progress on stderr.
func (s *session) run(ctx context.Context, t loadgen.Target, p loadgen.Profile, base string, ro loadgen.RunOptions) (*loadgen.RunResult, error) {
	name := ro.Name
	if !s.c.quiet {
		fmt.Fprintf(s.stderr, "-- %s: %s @ %s, %v warm-up + %v\n", name, t.Kind(), t.Address(), p.Warmup, p.Duration)
		ro.Progress = func(pt loadgen.Point) {
			fmt.Fprintf(s.stderr, "   %6.1fs %9.0f calls/s %10.0f items/s  p50 %7.3f ms  p99 %7.3f ms  errors %d\n",
				pt.T, pt.CallsPerS, pt.ItemsPerS, pt.Latency.P50, pt.Latency.P99, pt.Errors)
		}
	}
	res, err := loadgen.Run(ctx, t, p, ro)
	if err != nil {
		return nil, err
	}
	res.Profile = p.Summary()
	if base == "echo" && ro.CPU == nil && s.echoNoCPU != "" {
		res.ServerCPU = &loadgen.ServerCPU{Error: s.echoNoCPU}
	}
	return res, nil
}

func (c *common) write(rep *loadgen.Report, stdout io.Writer) error {
	if c.jsonOut == "-" {
		if err := rep.WriteJSON(stdout); err != nil {
			return err
		}
	} else {
		if err := rep.WriteText(stdout); err != nil {
			return err
		}
		if c.jsonOut != "" {
			if err := writeFile(c.jsonOut, rep.WriteJSON); err != nil {
				return err
			}
		}
	}
	if c.htmlOut != "" {
		return writeFile(c.htmlOut, rep.WriteHTML)
	}
	return nil
}

func writeFile(path string, fn func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := fn(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func newReport(cmd string) *loadgen.Report {
	return &loadgen.Report{Tool: "tvbench", Command: cmd, Started: time.Now(), Host: loadgen.HostInfo()}
}

// runCmd: echo baseline, tokenvault, Vault transit baseline, in that
// order, all with the same client settings.
func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommon("run", true)
	if err := c.parse(args); err != nil {
		return err
	}
	s, err := c.open(stderr)
	if err != nil {
		return err
	}
	defer s.close()
	rep := newReport("run")
	var echoRes *loadgen.RunResult
	if s.echo != nil {
		if echoRes, err = s.measure(ctx, "echo", s.echo, c.p, "echo"); err != nil {
			return err
		}
		rep.Runs = append(rep.Runs, echoRes)
	}
	tvRes, err := s.measure(ctx, "tokenvault", s.tv, c.p, "")
	if err != nil {
		return err
	}
	rep.Runs = append(rep.Runs, tvRes)
	if echoRes != nil {
		rep.Ratios = append(rep.Ratios, loadgen.Compare(tvRes, echoRes)...)
	}
	if s.transit != nil {
		// Transit does encrypt and decrypt only: measure the encrypt and
		// decrypt share of the mix (encrypt alone if the mix has neither).
		tp := c.p
		tp.Mix = map[loadgen.Op]float64{}
		for _, op := range []loadgen.Op{loadgen.OpEncrypt, loadgen.OpDecrypt} {
			if w := c.p.Mix[op]; w > 0 {
				tp.Mix[op] = w
			}
		}
		if len(tp.Mix) == 0 {
			tp.Mix[loadgen.OpEncrypt] = 1
			rep.Notes = append(rep.Notes, "the mix has no encrypt/decrypt: Vault transit was measured with encrypt only, so no ratio to it is given")
		}
		vr, err := s.measure(ctx, "vault-transit", s.transit, tp, "transit")
		if err != nil {
			return err
		}
		rep.Runs = append(rep.Runs, vr)
		rep.Ratios = append(rep.Ratios, loadgen.Compare(tvRes, vr)...)
	}
	if echoRes != nil {
		rep.Ratios = append(rep.Ratios, loadgen.CompareCPU(tvRes, echoRes)...)
	}
	if c.rssSVG != "" {
		if err := writeFile(c.rssSVG, tvRes.WriteRSSSVG); err != nil {
			return err
		}
	}
	if c.rssCSV != "" {
		if err := writeFile(c.rssCSV, tvRes.WriteRSSCSV); err != nil {
			return err
		}
	}
	return c.write(rep, stdout)
}

// echoCmd serves the echo baseline until interrupted.
func echoCmd(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:7301", "listen address")
	cert := fs.String("tls-cert", "", "server certificate (PEM); serve TLS like tokenvault does")
	key := fs.String("tls-key", "", "server private key (PEM)")
	stdinEOF := fs.Bool("exit-on-stdin-eof", false, "exit when standard input is closed (used when tvbench starts the echo itself)")
	metricsListen := fs.String("metrics-listen", "", "serve Prometheus /metrics (process_cpu_seconds_total, for tvbench's CPU per call) on this address; empty: none")
	delay := fs.Duration("delay", 0, "answer each call only after this wait (0: at once), to measure the echo at a server's lower throughput (BENCHMARKS.md, \"matched echo\")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var opts []grpc.ServerOption
	switch {
	case *delay < 0:
		return fmt.Errorf("-delay %v: must not be negative", *delay)
	case *delay > 0:
		o, err := echo.WithDelay(*delay)
		if err != nil {
			return fmt.Errorf("-delay: %w", err)
		}
		opts = append(opts, o)
	}
	if *stdinEOF {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		watchStdin(cancel)
	}
	if (*cert == "") != (*key == "") {
		return errors.New("-tls-cert and -tls-key: give both, or neither")
	}
	if *cert != "" {
		c, err := tls.LoadX509KeyPair(*cert, *key)
		if err != nil {
			return fmt.Errorf("-tls-cert/-tls-key: %w", err)
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12,
			ClientAuth: tls.RequestClientCert})))
	}
	gs, addr, err := echo.Listen(*listen, opts...)
	if err != nil {
		return err
	}
	if *metricsListen != "" {
		ml, err := net.Listen("tcp", *metricsListen)
		if err != nil {
			gs.Stop()
			return fmt.Errorf("-metrics-listen: %w", err)
		}
		hs := &http.Server{Handler: echo.MetricsHandler(), ReadHeaderTimeout: 10 * time.Second}
		go hs.Serve(ml)
		defer hs.Close()
		fmt.Fprintf(stderr, "tvbench echo: metrics on http://%s/metrics\n", ml.Addr())
	}
	fmt.Fprintf(stderr, "tvbench echo: serving the no-op TokenVault API on %s\n", addr)
	<-ctx.Done()
	gs.GracefulStop()
	return nil
}

// ephemeralTLS makes a self-signed certificate for the in-process echo and
// a client configuration trusting it (with the client certificate, if any,
// so mTLS handshakes cost the same).
func ephemeralTLS(c loadgen.ClientTLS) (server, client *tls.Config, err error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tvbench echo"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(48 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return nil, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}},
		MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert}
	client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("-cert/-key: %w", err)
		}
		client.Certificates = []tls.Certificate{cert}
	}
	return server, client, nil
}
