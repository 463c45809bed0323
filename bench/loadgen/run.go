package loadgen

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenvault/tokenvault/bench/hist"
)

// opStats accumulate one operation's outcomes in one worker.
type opStats struct {
	lat      hist.Hist
	calls    uint64
	items    uint64
	errs     map[string]uint64
	itemErrs map[string]uint64
}

func (s *opStats) merge(o *opStats) {
	s.lat.Merge(&o.lat)
	s.calls += o.calls
	s.items += o.items
	for k, v := range o.errs {
		s.errs[k] += v
	}
	for k, v := range o.itemErrs {
		s.itemErrs[k] += v
	}
}

func newOpStats() *opStats {
	return &opStats{errs: map[string]uint64{}, itemErrs: map[string]uint64{}}
}

// recorder is one worker's tally. Its mutex is only ever contended by the
// sampler, once per interval.
type recorder struct {
	mu  sync.Mutex
	ops [5]*opStats // indexed by opIndex
	win opStats     // the current time-series interval, all ops
}

func newRecorder() *recorder {
	r := &recorder{win: *newOpStats()}
	for i := range r.ops {
		r.ops[i] = newOpStats()
	}
	return r
}

func (r *recorder) record(op Op, lat time.Duration, items int, itemErrs []string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range []*opStats{r.ops[opIndex(op)], &r.win} {
		s.calls++
		if err != nil {
			s.errs[errorCode(err)]++
			// Failed calls are counted but kept out of the latency
			// distribution: a fast refusal must not flatter the figures.
			continue
		}
		s.lat.Record(int64(lat))
		s.items += uint64(items - len(itemErrs))
		for _, c := range itemErrs {
			s.itemErrs[c]++
		}
	}
}

// takeWindow returns the interval's tally and starts a new one.
func (r *recorder) takeWindow(into *opStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	into.merge(&r.win)
	r.win.lat.Reset()
	r.win.calls, r.win.items = 0, 0
	clear(r.win.errs)
	clear(r.win.itemErrs)
}

// opPicker picks operations by weight.
type opPicker struct {
	ops []Op
	cum []float64
}

func newOpPicker(mix map[Op]float64, t Target) (*opPicker, error) {
	p := &opPicker{}
	total := 0.0
	for _, o := range AllOps {
		if w := mix[o]; w > 0 && t.Supports(o) {
			total += w
			p.ops = append(p.ops, o)
			p.cum = append(p.cum, total)
		}
	}
	if len(p.ops) == 0 {
		return nil, fmt.Errorf("%s supports none of the operations in the mix", t.Kind())
	}
	for i := range p.cum {
		p.cum[i] /= total
	}
	return p, nil
}

func (p *opPicker) pick(r *rand.Rand) Op {
	if len(p.ops) == 1 {
		return p.ops[0]
	}
	x := r.Float64()
	i := sort.SearchFloat64s(p.cum, x)
	return p.ops[min(i, len(p.ops)-1)]
}

// RunOptions are a run's extras.
type RunOptions struct {
	// Name labels the run in reports (default: the target's kind).
	Name string
	// RSSPid, when > 0, is a local process (the server under test) whose
	// resident set size is sampled every interval (Linux /proc).
	RSSPid int
	// CPU, when set, are the server processes behind the target (one per
	// address): their CPU time is read before and after the measured
	// window (RunResult.ServerCPU).
	CPU []CPUSource
	// DBCPU, when set, is the database server behind the target servers
	// (e.g. PostgreSQL's postmaster with its backends, [ProcTreeCPU]): its
	// CPU is read over the same window (RunResult.DBCPU).
	DBCPU []CPUSource
	// Counters, when set, are server counters read at the start and the
	// end of the measured window, like CPU; the difference per
	// call goes to RunResult.Extra as NAME_per_call (nothing when a read
	// fails: a server without that counter).
	Counters []Counter
	// Progress, when set, is called once per interval with the latest point.
	Progress func(Point)
}

// Counter is one server counter to difference over the measured window.
type Counter struct {
	Name string
	Read func(ctx context.Context) (float64, error)
}

// MetricsCounter sums the Prometheus counter metric over the metrics
// endpoints addrs (host:port or URL, as [MetricsCPU]).
func MetricsCounter(name, metric string, addrs []string) Counter {
	return Counter{Name: name, Read: func(ctx context.Context) (float64, error) {
		var sum float64
		for _, a := range addrs {
			v, err := ScrapeGauge(ctx, a, metric)
			if err != nil {
				return 0, err
			}
			sum += v
		}
		return sum, nil
	}}
}

// readCounters reads every counter; a failed one is NaN.
func readCounters(ctx context.Context, cs []Counter) []float64 {
	out := make([]float64, len(cs))
	for i, c := range cs {
		v, err := c.Read(ctx)
		if err != nil {
			v = math.NaN()
		}
		out[i] = v
	}
	return out
}

// Run applies p to t and returns the measured result. It stops by itself
// after p.Warmup+p.Duration or p.MaxRequests calls, or when ctx ends.
func Run(ctx context.Context, t Target, p Profile, ro RunOptions) (*RunResult, error) {
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	picker, err := newOpPicker(p.Mix, t)
	if err != nil {
		return nil, err
	}
	name := ro.Name
	if name == "" {
		name = t.Kind()
	}
	setupStart := time.Now()
	if err := t.Setup(ctx, &p); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	setupDur := time.Since(setupStart)

	start := time.Now()
	measureStart := start.Add(p.Warmup)
	end := measureStart.Add(p.Duration)
	runCtx, cancel := context.WithDeadline(ctx, end)
	defer cancel()

	var sent atomic.Int64
	// take reserves one call under the request cap.
	take := func() bool {
		return p.MaxRequests == 0 || sent.Add(1) <= p.MaxRequests
	}

	nWorkers := p.Concurrency
	recs := make([]*recorder, nWorkers)
	for i := range recs {
		recs[i] = newRecorder()
	}
	var dropped atomic.Uint64

	// call issues one call scheduled at sched and records it if it was
	// scheduled in the measured window.
	call := func(w int, r *rand.Rand, sched time.Time) {
		op := picker.pick(r)
		cctx, ccancel := context.WithTimeout(runCtx, p.Timeout)
		itemErrs, err := t.Do(cctx, w, r, op, &p)
		ccancel()
		done := time.Now()
		if sched.Before(measureStart) {
			return
		}
		if cutOff(err, runCtx, end) {
			// Cut off by the end of the run, not a failure of the target.
			return
		}
		recs[w].record(op, done.Sub(sched), p.Batch, itemErrs, err)
	}

	var wg sync.WaitGroup
	if p.Rate <= 0 {
		for w := range nWorkers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(w)+1, uint64(start.UnixNano())))
				for runCtx.Err() == nil && take() {
					call(w, r, time.Now())
				}
			}()
		}
	} else {
		// Open loop: a dispatcher hands out scheduled start times; calls
		// that find every worker busy and the queue full are dropped and
		// counted (the server is not keeping up with the rate).
		sched := make(chan time.Time, nWorkers)
		for w := range nWorkers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(w)+1, uint64(start.UnixNano())))
				for s := range sched {
					if runCtx.Err() != nil {
						continue
					}
					call(w, r, s)
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(sched)
			every := time.Duration(float64(time.Second) / p.Rate)
			var n int64
			for runCtx.Err() == nil {
				due := int64(time.Since(start)/every) + 1
				for ; n < due; n++ {
					if !take() {
						return
					}
					s := start.Add(time.Duration(n) * every)
					select {
					case sched <- s:
					default:
						if !s.Before(measureStart) {
							dropped.Add(1)
						}
					}
				}
				next := start.Add(time.Duration(n) * every)
				select {
				case <-runCtx.Done():
				case <-time.After(max(time.Until(next), 50*time.Microsecond)):
				}
			}
		}()
	}

	// Sampler: one time-series point per interval of the measured window.
	var series []Point
	var maxRSS, maxAnon int64
	var countersBefore []float64 // at the start of the measured window
	cpu := &cpuMeter{srcs: ro.CPU, busy: true}
	dbCPU := &cpuMeter{srcs: ro.DBCPU}
	sampleDone := make(chan struct{})
	workersDone := make(chan struct{})
	go func() {
		defer close(sampleDone)
		select {
		case <-time.After(time.Until(measureStart)):
		case <-workersDone:
			return
		}
		if len(cpu.srcs) > 0 {
			cpu.start(ctx)
		}
		if len(dbCPU.srcs) > 0 {
			dbCPU.start(ctx)
		}
		// After the CPU, so that its window starts with the calls' (a
		// metrics source checks that the server started as many calls as
		// were made in it); their scrapes' cost is then in the window, a
		// few milliseconds of a run. At the end they are read after it.
		if len(ro.Counters) > 0 {
			countersBefore = readCounters(ctx, ro.Counters)
		}
		tick := time.NewTicker(p.Interval)
		defer tick.Stop()
		last := measureStart
		sample := func(now time.Time, final bool) {
			var w opStats = *newOpStats()
			for _, rc := range recs {
				rc.takeWindow(&w)
			}
			if final && w.calls == 0 {
				return // nothing since the last point
			}
			secs := now.Sub(last).Seconds()
			ok := w.calls - sum(w.errs)
			pt := Point{T: now.Sub(measureStart).Seconds(), Calls: w.calls, Items: w.items,
				CallsPerS: float64(ok) / secs, ItemsPerS: float64(w.items) / secs,
				Errors: sum(w.errs), Latency: latencyOf(&w.lat)}
			if ro.RSSPid > 0 {
				if m, err := readRSS(ro.RSSPid); err == nil {
					pt.RSSBytes, pt.RSSAnonBytes, pt.RSSFileBytes = m.RSS, m.Anon, m.File
					maxRSS, maxAnon = max(maxRSS, m.RSS), max(maxAnon, m.Anon)
				}
			}
			last = now
			series = append(series, pt)
			if ro.Progress != nil {
				ro.Progress(pt)
			}
		}
		for {
			select {
			case now := <-tick.C:
				sample(now, false)
			case <-workersDone:
				sample(time.Now(), true)
				return
			}
		}
	}()
	wg.Wait()
	finished := time.Now()
	close(workersDone)
	<-sampleDone
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var calls uint64
	for _, rc := range recs {
		for _, s := range rc.ops {
			calls += s.calls
		}
	}
	var serverCPU, databaseCPU *ServerCPU
	if len(cpu.srcs) > 0 && cpu.before != nil || cpu.err != nil {
		serverCPU = cpu.finish(ctx, calls, calls*uint64(p.Batch))
	}
	if len(dbCPU.srcs) > 0 && dbCPU.before != nil || dbCPU.err != nil {
		databaseCPU = dbCPU.finish(ctx, calls, calls*uint64(p.Batch))
	}
	var countersAfter []float64
	if countersBefore != nil {
		countersAfter = readCounters(ctx, ro.Counters)
	}

	res := &RunResult{Name: name, Target: t.Kind(), Address: t.Address(), Ops: picker.ops,
		Setup: setupDur.Seconds(), PerOp: map[Op]*OpResult{}, Series: series,
		MaxRSSBytes: maxRSS, MaxRSSAnonBytes: maxAnon, Dropped: dropped.Load(), ServerCPU: serverCPU, DBCPU: databaseCPU}
	res.Elapsed = finished.Sub(measureStart).Seconds()
	if res.Elapsed <= 0 {
		return nil, fmt.Errorf("%s: the run ended before its measured window (request cap %d reached during warm-up?)", name, p.MaxRequests)
	}
	all := newOpStats()
	for _, op := range picker.ops {
		s := newOpStats()
		for _, rc := range recs {
			s.merge(rc.ops[opIndex(op)])
		}
		res.PerOp[op] = opResult(s, res.Elapsed)
		all.merge(s)
	}
	res.OpResult = *opResult(all, res.Elapsed)
	for i, c := range ro.Counters {
		if countersAfter == nil || calls == 0 {
			break
		}
		if d := countersAfter[i] - countersBefore[i]; !math.IsNaN(d) && d >= 0 {
			if res.Extra == nil {
				res.Extra = map[string]float64{}
			}
			res.Extra[c.Name+"_per_call"] = d / float64(calls)
		}
	}
	return res, nil
}

// cutOff reports a call cancelled because the run ended (the call's own
// deadline timer may fire before the run's context reports it).
func cutOff(err error, runCtx context.Context, end time.Time) bool {
	if err == nil || (runCtx.Err() == nil && time.Now().Before(end)) {
		return false
	}
	c := errorCode(err)
	return c == "Canceled" || c == "DeadlineExceeded"
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}
