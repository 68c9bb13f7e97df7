//go:build e2e

package e2e

// TestSoak: berth's goroutines and file descriptors stay flat while 600
// containers come and go, 50 at a time, through a proxy that stalls one logs
// stream every 30 s; and no line is lost or duplicated.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"

	"github.com/berthlog/berth/e2e/internal/lines"
	"github.com/berthlog/berth/e2e/internal/stallproxy"
	"github.com/berthlog/berth/e2e/soakfig"
)

// The soak's shape. A container writes soakLines lines at soakRate lines/s
// (one in soakStderrEvery on stderr) and exits, so it lives about 24 s. 50
// workers each keep one container running: a worker creates the next
// container while the current one runs and starts it as soon as the current
// one has exited; the exited one is removed once berth has delivered its
// lines (or soakDeliverTimeout after its exit: the line check at the end
// then finds what is missing). So 50 containers run at almost any time and
// the 600 lifecycles take about 5 minutes. The first 50 containers write at
// staggered rates, so that they exit at staggered times and the turnover is
// even from the first minute on.
//
// go_goroutine_count on /metrics comes from the OTel runtime
// instrumentation (berth has it read the runtime at most once a second) and
// counts the goroutines of the scrape itself, about 10 more than /status.
const (
	soakAlive       = 50
	soakLifecycles  = 600
	soakLines       = 200
	soakStderrEvery = 10
	// lines/s: (200-1)/8.2 = 24.3 s of life. 12 rounds of that (plus 0.3
	// to 2 s a round to see an exit and start the next, more on a busy
	// host) give a steady phase of 4m20s to 4m40s (the slope needs 4
	// minutes of it) and a load of 5m05s to 5m30s (the soak must stay
	// within 6 minutes, idle checks included).
	soakRate = 8.2

	soakIdleTimeout = 2 * time.Second
	soakFreezeEvery = 30 * time.Second
	soakFreezeFor   = 5 * time.Second
	soakSampleEvery = 5 * time.Second

	// Warm-up: the samples of the first soakWarmup of the load (at least
	// soakSettle after the 50th container of the first round started) are
	// not judged: berth is filling up to 50 streams. The first 50 are up
	// 10 to 15 s after the load starts; the steady phase that follows must
	// hold the 4 minutes of the slope window.
	soakWarmup = 20 * time.Second
	soakSettle = 10 * time.Second
	// The figures (package soakfig, shared with tools/soakplot), over the
	// steady samples of each series: the slope is the least-squares slope
	// per minute over the last 4 minutes at constant load (the series is
	// fitted to time and to the containers running, counted by the test:
	// each running container costs berth about 3 goroutines and 1 FD, and
	// the count moves between 45 and 50); the warm baseline and the final
	// figure are the medians of the first and of the last minute, at the
	// reference load of 50 containers. "Steady" ends when the 600th
	// container starts: from then on fewer than 50 run.
	soakBaselineFor = time.Minute
	soakSlopeOver   = 4 * time.Minute
	soakFinalFor    = time.Minute
	// Pass: slope < 1 per minute and final <= baseline + 5, for goroutines
	// and for file descriptors; and, once every container is gone, both
	// back to within +5 of their idle values before the load.
	soakMaxSlope = 1.0
	soakMaxRise  = 5

	soakLoadLimit      = 5*time.Minute + 45*time.Second // the whole load, drain included (about 5m20s)
	soakDeliverTimeout = 30 * time.Second               // after a container's exit (berth's backoff.max)
)

// soakLife is one container lifecycle.
type soakLife struct {
	idx      int
	c        *Ctr
	lifetime time.Duration // how long the generator writes

	// set by the worker (under soakRun.mu)
	started, exited, removed time.Time
	err                      error
	undelivered              bool // removed before berth had every line

	delivered chan struct{} // closed by the test goroutine: berth has every line
}

// soakRun is the state shared by the workers and the test goroutine.
type soakRun struct {
	mu    sync.Mutex
	lives []*soakLife
	next  atomic.Int64 // next lifecycle index
}

func (r *soakRun) add(l *soakLife) {
	r.mu.Lock()
	r.lives = append(r.lives, l)
	r.mu.Unlock()
}

func (r *soakRun) snapshot() []*soakLife {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*soakLife(nil), r.lives...)
}

// running returns the lives whose container has started and not exited.
func (r *soakRun) running() []*soakLife {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*soakLife
	for _, l := range r.lives {
		if !l.started.IsZero() && l.exited.IsZero() {
			out = append(out, l)
		}
	}
	return out
}

// soakSample is one sample of berth's figures.
type soakSample struct {
	At         time.Time
	T          time.Duration // since the load started
	GorMetrics int           // go_goroutine_count on /metrics
	GorStatus  int           // "goroutines" of /status
	FDMetrics  int           // process_unix_file_descriptor_count on /metrics
	FDProc     int           // entries of /proc/<pid>/fd, read by the test
	Running    int           // containers of the soak running (the test's view)
	Streams    int           // berth_streams_open
	IdleExp    int           // berth_deadline_expiries_total{kind="idle"}
	States     string        // berth_containers by state
	Phase      string        // warmup, steady, drain, idle
	Err        string
}

// soakFreeze is one stalled logs stream.
type soakFreeze struct {
	life              *soakLife
	frozen, resumed   time.Time
	held, closedByBer int
	closeAfter        []time.Duration // from the held connection's last byte to berth's close
}

func TestSoak(t *testing.T) {
	needDocker(t)
	begin := time.Now()

	p, err := stallproxy.New(suite.sock, testDir(t))
	if err != nil {
		t.Fatal(err)
	}
	p.RejectNonRead(true) // berth only reads; anything else would be refused and counted
	t.Cleanup(func() { _ = p.Close() })

	b := startBerth(t, BerthConfig{DockerHost: p.Host(), IdleTimeout: soakIdleTimeout.String()})
	pid := b.cmd.Process.Pid
	b.waitReady(t)
	idleGor := b.stableGoroutines(t, 20*time.Second)
	idleFD := soakProcFDs(pid)
	t.Logf("idle before the load: %d goroutines (/status), %d FDs (/proc/%d/fd)", idleGor, idleFD, pid)

	evlog := soakRecordEvents(t)
	run := &soakRun{}
	ctx, cancel := context.WithCancel(context.Background())
	var workers sync.WaitGroup
	// Registered after berth's and the proxy's cleanups, so it runs before
	// them: stop the workers, then force-remove what they left.
	t.Cleanup(func() {
		cancel()
		workers.Wait()
		for _, l := range run.snapshot() {
			if l.removed.IsZero() && l.c.ID != "" {
				l.c.remove(t)
			}
		}
	})

	// Sampling every 5 s on its own goroutine, so that a slow scrape does
	// not delay the test goroutine's polling of berth's output.
	loadStart := time.Now()
	var (
		sampMu  sync.Mutex
		samples []soakSample
	)
	stopSampling := make(chan struct{})
	samplerDone := make(chan struct{})
	go func() { // owned: ends when stopSampling is closed
		defer close(samplerDone)
		tick := time.NewTicker(soakSampleEvery)
		defer tick.Stop()
		for {
			s := soakTakeSample(b, pid, loadStart)
			s.Running = len(run.running())
			sampMu.Lock()
			samples = append(samples, s)
			sampMu.Unlock()
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()
	stopSampler := sync.OnceFunc(func() { close(stopSampling); <-samplerDone })
	t.Cleanup(stopSampler)

	// The workers. Each keeps one container running: it creates the next
	// container while the current one runs and starts it as soon as the
	// current one has exited. Each exited container is finished on a
	// goroutine of its own: it waits (bounded) until berth has delivered
	// the container's lines, then removes it.
	var firstRound sync.WaitGroup // the first soakAlive containers started
	firstRound.Add(soakAlive)
	workersDone := make(chan struct{})
	claim := func() int {
		if i := int(run.next.Add(1) - 1); i < soakLifecycles && ctx.Err() == nil {
			return i
		}
		return -1
	}
	finish := func(l *soakLife) {
		workers.Add(1)
		go func() { // owned: ends once the container is removed (bounded)
			defer workers.Done()
			soakFinish(ctx, run, l)
		}()
	}
	for w := 0; w < soakAlive; w++ {
		workers.Add(1)
		go func() { // owned: ends when the lifecycles run out or ctx ends
			defer workers.Done()
			cur := soakNewLife(t, run, claim())
			first := true
			for cur != nil && ctx.Err() == nil {
				soakStart(run, cur)
				if first {
					first = false
					firstRound.Done()
				}
				next := soakNewLife(t, run, claim())
				soakWaitExit(ctx, run, cur)
				finish(cur)
				cur = next
			}
			if first { // never started one (cancelled)
				firstRound.Done()
			}
			if cur != nil { // created, never started (cancelled)
				finish(cur)
			}
		}()
	}
	go func() { workers.Wait(); close(workersDone) }() // owned: ends with the workers
	rampDone := make(chan struct{})
	go func() { firstRound.Wait(); close(rampDone) }() // owned: ends with the first round

	// The test goroutine: poll berth's output, tell the workers when berth
	// has delivered a container's lines, stall a stream every 30 s.
	var (
		freezes     []*soakFreeze
		active      *soakFreeze
		nextFreeze  = loadStart.Add(soakFreezeEvery)
		rampAt      time.Time
		steadyEnd   time.Time // when the 600th container started
		drainEnd    time.Time
		delivered   = map[*soakLife]bool{}
		lastReport  = time.Now()
		idleExpiry0 = -1
	)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for drainEnd.IsZero() {
		select {
		case <-tick.C:
		case <-workersDone:
		}
		now := time.Now()
		b.poll(t)
		b.checkAlive(t)
		if now.Sub(loadStart) > soakLoadLimit {
			t.Errorf("the load did not finish within %v: %d of %d lifecycles started; %s; errors: %s", soakLoadLimit, min(int(run.next.Load()), soakLifecycles), soakLifecycles, soakProgress(run, delivered), soakErrors(run, 10))
			cancel()
			workers.Wait()
			soakCheckLines(t, b, p, evlog, run.snapshot())
			t.FailNow()
		}
		if rampAt.IsZero() {
			select {
			case <-rampDone:
				rampAt = now
				t.Logf("the first %d containers all started %v after the load began", soakAlive, rampAt.Sub(loadStart).Round(time.Millisecond))
			default:
			}
		}
		lives := run.snapshot()
		for _, l := range lives {
			if delivered[l] || l.delivered == nil {
				continue
			}
			if len(b.out.records(l.c.Name)) >= soakLines {
				delivered[l] = true
				close(l.delivered)
			}
		}
		if steadyEnd.IsZero() && len(lives) == soakLifecycles {
			// every container has started (or failed to): the last start
			// ends the steady phase
			var lastStart time.Time
			all := true
			run.mu.Lock()
			for _, l := range lives {
				switch {
				case !l.started.IsZero():
					if l.started.After(lastStart) {
						lastStart = l.started
					}
				case l.err == nil:
					all = false
				}
			}
			run.mu.Unlock()
			if all && !lastStart.IsZero() {
				steadyEnd = lastStart
				t.Logf("the %dth container started %v after the load began; from now on fewer than %d run", soakLifecycles, steadyEnd.Sub(loadStart).Round(time.Millisecond), soakAlive)
			}
		}
		if active != nil && time.Since(active.frozen) >= soakFreezeFor {
			p.Resume(active.life.c.ID)
			active.resumed = time.Now()
			active = nil
		}
		if active == nil && steadyEnd.IsZero() && !time.Now().Before(nextFreeze) {
			if l := soakFreezeCandidate(run, time.Now()); l != nil {
				active = &soakFreeze{life: l, frozen: time.Now()}
				p.Freeze(l.c.ID)
				freezes = append(freezes, active)
				nextFreeze = nextFreeze.Add(soakFreezeEvery)
			}
		}
		select {
		case <-workersDone:
			drainEnd = time.Now()
		default:
		}
		if now.Sub(lastReport) >= 30*time.Second {
			lastReport = now
			sampMu.Lock()
			last := samples[len(samples)-1]
			sampMu.Unlock()
			if idleExpiry0 < 0 {
				idleExpiry0 = last.IdleExp
			}
			t.Logf("t=%3.0fs: %s; berth: %d goroutines, %d FDs, %d streams open, containers: %s", now.Sub(loadStart).Seconds(), soakProgress(run, delivered), last.GorMetrics, last.FDProc, last.Streams, last.States)
			if e := soakErrors(run, 3); e != "none" {
				t.Logf("  lifecycle errors so far, e.g.: %s", e)
			}
		}
	}
	if active != nil {
		p.Resume(active.life.c.ID)
		active.resumed = time.Now()
	}
	t.Logf("all %d lifecycles done %v after the load began", soakLifecycles, drainEnd.Sub(loadStart).Round(time.Millisecond))

	// Every container is gone: berth's figures must come back to their idle
	// values (the sampler keeps running, so the CSV shows the way down).
	var idleGorAfter, idleFDAfter int
	ok, state := waitUntil(30*time.Second, func() (bool, string) {
		idleGorAfter = b.goroutines(t)
		idleFDAfter = soakProcFDs(pid)
		return idleGorAfter <= idleGor+soakMaxRise && idleFDAfter <= idleFD+soakMaxRise,
			fmt.Sprintf("%d goroutines (idle before: %d), %d FDs (idle before: %d)", idleGorAfter, idleGor, idleFDAfter, idleFD)
	})
	if !ok {
		t.Errorf("after every container was removed, berth did not come back to its idle figures (+%d) within 30s: %s", soakMaxRise, state)
	}
	idleGorAfter = b.stableGoroutines(t, 20*time.Second)
	idleFDAfter = soakProcFDs(pid)
	// one more sample at idle, then stop sampling
	idleAt := time.Now()
	waitFor(t, "a sample after berth came back to idle", 3*soakSampleEvery, func() (bool, string) {
		sampMu.Lock()
		defer sampMu.Unlock()
		last := samples[len(samples)-1]
		return last.At.After(idleAt), fmt.Sprintf("last sample at t=%v", last.T.Round(time.Millisecond))
	})
	stopSampler()
	if st, err := b.status(); err == nil {
		t.Logf("/status after the soak: %d containers known, %v streams open, events connected %v", len(soakList(st["containers"])), st["streams_open"], st["events_connected"])
	}
	b.stop(t)
	soakDur := time.Since(begin)

	// Phases of the samples.
	warmEnd := loadStart.Add(soakWarmup)
	if s := rampAt.Add(soakSettle); s.After(warmEnd) {
		warmEnd = s
	}
	for i := range samples {
		s := &samples[i]
		switch {
		case s.At.Before(warmEnd):
			s.Phase = "warmup"
		case !s.At.After(steadyEnd):
			s.Phase = "steady"
		case !s.At.After(drainEnd):
			s.Phase = "drain"
		default:
			s.Phase = "idle"
		}
	}
	var judged []soakfig.Sample // the samples that did not fail
	for _, s := range samples {
		if s.Err == "" {
			judged = append(judged, soakfig.Sample{TimeS: soakfig.RoundTime(s.T.Seconds()),
				GorMetrics: float64(s.GorMetrics), GorStatus: float64(s.GorStatus), FDMetrics: float64(s.FDMetrics), FDProc: float64(s.FDProc),
				Running: float64(s.Running), Streams: float64(s.Streams), Phase: s.Phase})
		}
	}
	var csvBuf bytes.Buffer
	if err := soakfig.WriteCSV(&csvBuf, judged); err != nil {
		t.Errorf("the samples' CSV: %v", err)
	}
	csv := csvBuf.Bytes()
	csvPath := filepath.Join(testDir(t), "soak.csv")
	if err := os.WriteFile(csvPath, csv, 0o644); err != nil {
		t.Errorf("writing %s: %v", csvPath, err)
	}
	if out := os.Getenv("BERTH_SOAK_OUT"); out != "" {
		if !filepath.IsAbs(out) {
			out = filepath.Join(suite.repo, out) // relative to the repository root
		}
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			t.Errorf("BERTH_SOAK_OUT: %v", err)
		} else if err := os.WriteFile(out, csv, 0o644); err != nil {
			t.Errorf("BERTH_SOAK_OUT: %v", err)
		} else {
			csvPath += " and " + out
		}
	}
	sampleErrs := 0
	for _, s := range samples {
		if s.Err != "" {
			sampleErrs++
			if sampleErrs <= 3 {
				t.Logf("sample at t=%v: %s", s.T.Round(time.Second), s.Err)
			}
		}
	}
	t.Logf("%d samples (%d failed) written to %s", len(samples), sampleErrs, csvPath)

	// Figures and verdicts.
	steady := soakfig.Phase(judged, "steady")
	steadyLen := steadyEnd.Sub(warmEnd)
	t.Logf("phases: warm-up %v (the first %d containers started after %v), steady %v (%d samples), drain %v; the soak took %v in all",
		warmEnd.Sub(loadStart).Round(time.Second), soakAlive, rampAt.Sub(loadStart).Round(time.Second), steadyLen.Round(time.Second), len(steady),
		drainEnd.Sub(steadyEnd).Round(time.Second), soakDur.Round(time.Second))
	if steadyLen < soakSlopeOver {
		t.Errorf("the steady phase lasted %v, less than the %v the slope is fitted over: the soak is too short to judge", steadyLen.Round(time.Second), soakSlopeOver)
	}
	rules := soakfig.Rules{BaselineFor: soakBaselineFor.Seconds(), SlopeOver: soakSlopeOver.Seconds(), FinalFor: soakFinalFor.Seconds(), RefLoad: soakAlive}
	for _, ser := range soakfig.AllSeries {
		f := soakfig.Compute(steady, ser.Get, rules)
		bad := f.N < 10 || !(f.Slope < soakMaxSlope) || !(f.SlopeSE <= soakfig.MaxSlopeSE) || !(f.Final <= f.Baseline+soakMaxRise)
		verdict := "ok"
		if bad {
			verdict = "FAIL"
		}
		t.Logf("figure: %-18s slope %+.2f/min (±%.2f) at constant load over the last %v (%d samples; %+.2f per container running; plain slope %+.2f/min), warm baseline %.1f, final %.1f at %d containers running (plain medians %.1f, %.1f) [%s]",
			ser.Name, f.Slope, f.SlopeSE, soakSlopeOver, f.N, f.PerLoad, f.RawSlope, f.Baseline, f.Final, soakAlive, f.RawBaseline, f.RawFinal, verdict)
		if f.N < 10 {
			t.Errorf("%s: only %d samples in the slope window", ser.Name, f.N)
		}
		if !(f.Slope < soakMaxSlope) {
			t.Errorf("%s: slope %+.2f per minute at constant load over the last %v, want < %v", ser.Name, f.Slope, soakSlopeOver, soakMaxSlope)
		}
		if !(f.SlopeSE <= soakfig.MaxSlopeSE) {
			t.Errorf("%s: the slope's standard error is %.2f per minute (more than %v): too noisy to tell a flat series from a leak; was something else loading the host or the daemon?", ser.Name, f.SlopeSE, soakfig.MaxSlopeSE)
		}
		if !(f.Final <= f.Baseline+soakMaxRise) {
			t.Errorf("%s: final %.1f, want <= warm baseline %.1f + %d (both at %d containers running)", ser.Name, f.Final, f.Baseline, soakMaxRise, soakAlive)
		}
	}
	t.Logf("figure: idle before the load %d goroutines, %d FDs; idle after every container was removed %d goroutines, %d FDs",
		idleGor, idleFD, idleGorAfter, idleFDAfter)
	if idleGorAfter > idleGor+soakMaxRise || idleFDAfter > idleFD+soakMaxRise {
		t.Errorf("idle after the soak: %d goroutines, %d FDs; want <= idle before + %d (%d, %d)", idleGorAfter, idleFDAfter, soakMaxRise, idleGor, idleFD)
	}
	var maxDiff int
	for _, s := range samples {
		if s.Err == "" {
			maxDiff = max(maxDiff, soakAbs(s.FDMetrics-s.FDProc))
		}
	}
	t.Logf("FDs: /metrics and /proc differ by at most %d in any sample", maxDiff)

	// The stalled streams: each freeze held a logs response of its
	// container, and berth closed a held connection (its idle deadline).
	soakCheckFreezes(t, p, freezes)
	if n := len(samples); n > 0 && idleExpiry0 >= 0 {
		t.Logf("berth_deadline_expiries_total{kind=\"idle\"}: %d at t=30s, %d at the end", idleExpiry0, samples[n-1].IdleExp)
	}

	// The lines: each container's 200 exactly once, on the right stream,
	// with its own container.id.
	soakCheckLines(t, b, p, evlog, run.snapshot())
	t.Logf("the daemon's events stream (the test's own subscription): %s", evlog.summary())
	soakAssertReadOnly(t, p)
}

// soakNewLife creates the container of lifecycle i (nil for i < 0). A
// creation error is kept in the life.
func soakNewLife(t *testing.T, run *soakRun, i int) *soakLife {
	if i < 0 {
		return nil
	}
	rate := soakRate
	if i < soakAlive {
		// first round: lifetimes spread evenly over (0, (n-1)/rate]
		rate = soakRate * float64(soakAlive) / float64(i+1)
	}
	l := &soakLife{idx: i, lifetime: time.Duration(float64(soakLines-1) / rate * float64(time.Second)), delivered: make(chan struct{})}
	name := uniqueName(t, fmt.Sprintf("%03d", i))
	c, err := soakCreate(name, []string{
		"-n", fmt.Sprint(soakLines), "-stderr-every", fmt.Sprint(soakStderrEvery), "-rate", strconv.FormatFloat(rate, 'f', 3, 64)})
	if err != nil {
		c = &Ctr{Name: name}
		l.err = err
	}
	l.c = c
	run.add(l)
	return l
}

func soakFail(run *soakRun, l *soakLife, err error) {
	run.mu.Lock()
	if l.err == nil {
		l.err = err
	}
	run.mu.Unlock()
}

// soakStart starts the container of l.
func soakStart(run *soakRun, l *soakLife) {
	if l.c.ID == "" {
		return
	}
	if err := l.c.startErr(); err != nil {
		soakFail(run, l, err)
		return
	}
	run.mu.Lock()
	l.started = time.Now()
	run.mu.Unlock()
}

// soakWaitExit waits for the container of l to exit (it must exit 0).
func soakWaitExit(ctx context.Context, run *soakRun, l *soakLife) {
	run.mu.Lock()
	started := !l.started.IsZero()
	run.mu.Unlock()
	if !started {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, l.lifetime+2*time.Minute)
	defer cancel()
	waitC, errC := suite.docker.ContainerWait(wctx, l.c.ID, container.WaitConditionNotRunning)
	select {
	case w := <-waitC:
		if w.Error != nil || w.StatusCode != 0 {
			soakFail(run, l, fmt.Errorf("exited with status %d (%+v)", w.StatusCode, w.Error))
		}
	case err := <-errC:
		soakFail(run, l, fmt.Errorf("waiting for the exit: %w", err))
	}
	run.mu.Lock()
	l.exited = time.Now()
	run.mu.Unlock()
}

// soakFinish waits until berth has delivered the lines of l's exited
// container (at most soakDeliverTimeout after its exit), then removes it.
func soakFinish(ctx context.Context, run *soakRun, l *soakLife) {
	run.mu.Lock()
	exited, started := l.exited, !l.started.IsZero()
	run.mu.Unlock()
	if started {
		wait := time.NewTimer(max(time.Until(exited.Add(soakDeliverTimeout)), 0))
		select {
		case <-l.delivered:
		case <-ctx.Done():
		case <-wait.C:
			run.mu.Lock()
			l.undelivered = true
			run.mu.Unlock()
		}
		wait.Stop()
	}
	if l.c.ID == "" {
		return
	}
	rctx, cancel := dctx(30 * time.Second)
	defer cancel()
	if err := suite.docker.ContainerRemove(rctx, l.c.ID, container.RemoveOptions{Force: true}); err != nil && !isNotFound(err) {
		soakFail(run, l, fmt.Errorf("remove: %w", err))
		return
	}
	run.mu.Lock()
	l.removed = time.Now()
	run.mu.Unlock()
}

// soakCreate is createContainer without a *testing.T (workers call it), and
// without a cleanup: the soak removes its containers itself.
func soakCreate(name string, args []string) (*Ctr, error) {
	ctx, cancel := dctx(30 * time.Second)
	defer cancel()
	resp, err := suite.docker.ContainerCreate(ctx,
		&container.Config{Image: imageRef, Cmd: args, Labels: map[string]string{labelKey: labelValue}},
		&container.HostConfig{NetworkMode: "none", LogConfig: container.LogConfig{Type: "json-file"}},
		nil, nil, name)
	if err != nil {
		return nil, fmt.Errorf("creating container %s: %w", name, err)
	}
	return &Ctr{ID: resp.ID, Name: name}, nil
}

// soakFreezeCandidate picks a running container that started at least 1 s
// ago and will still be writing well after the freeze ends.
func soakFreezeCandidate(run *soakRun, now time.Time) *soakLife {
	run.mu.Lock()
	defer run.mu.Unlock()
	var best *soakLife
	for _, l := range run.lives {
		if l.started.IsZero() || !l.exited.IsZero() || now.Sub(l.started) < time.Second {
			continue
		}
		if l.started.Add(l.lifetime).Before(now.Add(soakFreezeFor + 5*time.Second)) {
			continue
		}
		if best == nil || l.started.Before(best.started) {
			best = l
		}
	}
	return best
}

// soakErrors describes up to n lifecycle errors and undelivered containers.
func soakErrors(run *soakRun, n int) string {
	run.mu.Lock()
	defer run.mu.Unlock()
	var out []string
	for _, l := range run.lives {
		if len(out) == n {
			break
		}
		switch {
		case l.err != nil:
			out = append(out, fmt.Sprintf("%03d %s: %v", l.idx, short(l.c.ID), l.err))
		case l.undelivered:
			out = append(out, fmt.Sprintf("%03d %s: removed %v after its exit before the test saw all its lines", l.idx, short(l.c.ID), soakDeliverTimeout))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "; ")
}

func soakProgress(run *soakRun, delivered map[*soakLife]bool) string {
	var started, running, removed, failed, undelivered int
	run.mu.Lock()
	for _, l := range run.lives {
		if !l.started.IsZero() {
			started++
			if l.exited.IsZero() {
				running++
			}
		}
		if !l.removed.IsZero() {
			removed++
		}
		if l.err != nil {
			failed++
		}
		if l.undelivered {
			undelivered++
		}
	}
	run.mu.Unlock()
	return fmt.Sprintf("%d containers started, %d running, %d delivered, %d removed, %d failed, %d removed before the test saw all their lines",
		started, running, len(delivered), removed, failed, undelivered)
}

// soakTakeSample reads /metrics, /proc/<pid>/fd and /status.
func soakTakeSample(b *Berth, pid int, loadStart time.Time) soakSample {
	s := soakSample{At: time.Now()}
	// to 0.1 s, as in the CSV, so that tools/soakplot computes the same
	// figures from it
	s.T = s.At.Sub(loadStart).Round(100 * time.Millisecond)
	var errs []string
	code, body := b.httpGet("/metrics")
	if code != 200 {
		errs = append(errs, fmt.Sprintf("/metrics: %d %.200s", code, body))
	} else {
		m := soakParseProm(body)
		get := func(key string) int {
			v, ok := m[key]
			if !ok {
				errs = append(errs, "/metrics has no "+key)
			}
			return int(v)
		}
		s.GorMetrics = get("go_goroutine_count")
		s.FDMetrics = get("process_unix_file_descriptor_count")
		s.Streams = get("berth_streams_open")
		s.IdleExp = int(m[`berth_deadline_expiries_total{kind="idle"}`])
		var states []string
		for k, v := range m {
			if st, ok := strings.CutPrefix(k, `berth_containers{state="`); ok {
				states = append(states, fmt.Sprintf("%s %d", strings.TrimSuffix(st, `"}`), int(v)))
			}
		}
		sort.Strings(states)
		s.States = strings.Join(states, ", ")
	}
	s.FDProc = soakProcFDs(pid)
	if st, err := b.status(); err != nil {
		errs = append(errs, err.Error())
	} else if g, ok := st["goroutines"].(float64); ok {
		s.GorStatus = int(g)
	} else {
		errs = append(errs, "/status has no goroutines")
	}
	s.Err = strings.Join(errs, "; ")
	return s
}

// soakParseProm reads Prometheus text: each sample under "name" (summed over
// its series) and under "name{label="value"}" for each of its labels but the
// otel_scope_* ones (summed likewise).
func soakParseProm(body string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		series := line[:i]
		name, labels, _ := strings.Cut(series, "{")
		out[name] += v
		for _, kv := range strings.Split(strings.TrimSuffix(labels, "}"), ",") {
			if kv != "" && !strings.HasPrefix(kv, "otel_scope_") {
				out[name+"{"+kv+"}"] += v
			}
		}
	}
	return out
}

// soakRequestsFor describes berth's requests about container id.
func soakRequestsFor(p *stallproxy.Proxy, id string) string {
	if id == "" {
		return "none"
	}
	var out []string
	for _, r := range p.Requests() {
		if strings.Contains(r.Path, id) || (len(id) >= 12 && strings.Contains(r.Path, id[:12])) {
			out = append(out, fmt.Sprintf("%s %s %s?%s", r.Time.UTC().Format("15:04:05.000000"), r.Method, r.Path, r.RawQuery))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "; ")
}

// soakProcFDs counts /proc/<pid>/fd (-1 if unreadable).
func soakProcFDs(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

func soakLater(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func soakList(v any) []any { l, _ := v.([]any); return l }

func soakAbs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// soakCheckFreezes requires that each freeze held a logs response of its
// container and that berth closed a held connection before the resume.
func soakCheckFreezes(t *testing.T, p *stallproxy.Proxy, freezes []*soakFreeze) {
	t.Helper()
	if len(freezes) == 0 {
		t.Errorf("no logs stream was frozen")
		return
	}
	var desc []string
	for _, f := range freezes {
		for _, r := range p.LogsRequests(f.life.c.ID) {
			ci, _ := p.Conn(r.Conn)
			if ci.HeldSince.IsZero() || ci.HeldSince.Before(f.frozen) || ci.HeldSince.After(f.resumed) {
				continue
			}
			f.held++
			if !ci.Closed.IsZero() && ci.ByClient && !ci.Closed.After(f.resumed) {
				f.closedByBer++
				f.closeAfter = append(f.closeAfter, ci.Closed.Sub(soakLater(ci.LastToClient, ci.Opened)).Round(10*time.Millisecond))
			}
		}
		desc = append(desc, fmt.Sprintf("%03d: %d held, %d closed by berth after %v", f.life.idx, f.held, f.closedByBer, f.closeAfter))
		if f.held == 0 || f.closedByBer == 0 {
			t.Errorf("freeze of container %s (lifecycle %d) at %s: %d logs connections held, %d of them closed by berth before the resume; want >= 1 each",
				f.life.c.Name, f.life.idx, f.frozen.Format("15:04:05.000"), f.held, f.closedByBer)
		}
		for _, d := range f.closeAfter {
			if d > soakIdleTimeout+time.Second {
				t.Errorf("freeze of %s: berth closed a held connection %v after its last byte; want <= idle_timeout + 1s", f.life.c.Name, d)
			}
		}
	}
	t.Logf("%d logs streams frozen for %v each (idle_timeout %v): %s", len(freezes), soakFreezeFor, soakIdleTimeout, strings.Join(desc, "; "))
}

// soakCheckLines checks every container's records: each of its 200
// sequence numbers once, on the stream the generator wrote it to, with the
// container's id; and every lifecycle free of errors.
func soakCheckLines(t *testing.T, b *Berth, p *stallproxy.Proxy, evlog *soakEventLog, lives []*soakLife) {
	t.Helper()
	var lost, dup, wrong, records, bad, lifeErrs int
	for _, l := range lives {
		if l.err != nil {
			lifeErrs++
			if lifeErrs <= 10 {
				t.Errorf("lifecycle %d (%s): %v", l.idx, l.c.Name, l.err)
			}
		}
		recs := b.out.records(l.c.Name)
		records += len(recs)
		var seqs []int
		runs := map[string]bool{}
		w := 0
		for _, r := range recs {
			pr, ok := lines.Parse(r.Body)
			if !ok || r.res("container.id") != l.c.ID {
				w++
				continue
			}
			runs[pr.Run] = true
			seqs = append(seqs, pr.Seq)
			want := lines.Out
			if (pr.Seq+1)%soakStderrEvery == 0 {
				want = lines.Err
			}
			if pr.Stream != want || r.Stream() != iostream(want) {
				w++
			}
		}
		missing, dups := missingDups(seqs, soakLines)
		nd := len(seqs) - (soakLines - len(missing)) // duplicates and numbers out of range
		lost += len(missing)
		dup += nd
		wrong += w
		if len(missing) > 0 || nd > 0 || w > 0 || len(runs) > 1 {
			bad++
			if bad <= 10 {
				t.Errorf("%s (lifecycle %d, %s): %d records; missing %d: %s; duplicated %s; %d wrong (stream, id or format); %d runs; removed undelivered: %v\n  its events in the daemon's stream: %s\n  berth's requests for it through the proxy: %s",
					l.c.Name, l.idx, short(l.c.ID), len(recs), len(missing), ranges(missing), dupString(dups), w, len(runs), l.undelivered,
					evlog.of(l.c.ID), soakRequestsFor(p, l.c.ID))
			}
		}
	}
	if len(lives) != soakLifecycles {
		t.Errorf("%d lifecycles ran, want %d", len(lives), soakLifecycles)
	}
	t.Logf("figure: lines: %d containers x %d lines checked: %d records, %d lost, %d duplicated, %d wrong; %d containers with a fault; %d lifecycle errors",
		len(lives), soakLines, records, lost, dup, wrong, bad, lifeErrs)
	if lifeErrs > 10 {
		t.Errorf("%d lifecycle errors in all", lifeErrs)
	}
	if bad > 10 {
		t.Errorf("%d containers with lost, duplicated or wrong lines in all", bad)
	}
}

// assertReadOnly requires that berth sent only GET and HEAD through the
// proxy.
func soakAssertReadOnly(t *testing.T, p *stallproxy.Proxy) {
	t.Helper()
	m := p.Methods()
	for method, k := range m {
		if method != "GET" && method != "HEAD" {
			t.Errorf("berth sent %d %s requests (refused by the proxy)", k, method)
		}
	}
	t.Logf("berth's requests through the proxy: %v", m)
}

// soakEventLog records the daemon's events for the suite's containers, in
// stream order (recordEvents): the ground truth to explain a container berth
// did not read.
type soakEventLog struct{ rec *eventRecorder }

func soakRecordEvents(t *testing.T) *soakEventLog {
	t.Helper()
	return &soakEventLog{rec: recordEvents(t)}
}

// late returns, for each event in stream order, how much older it is than
// the newest event the stream delivered before it (0: in order).
func (r *soakEventLog) late() ([]events.Message, []time.Duration) {
	evs := r.rec.all()
	late := make([]time.Duration, len(evs))
	var newest int64
	for i, m := range evs {
		if m.TimeNano < newest {
			late[i] = time.Duration(newest - m.TimeNano)
		} else {
			newest = m.TimeNano
		}
	}
	return evs, late
}

// summary counts the events delivered out of time order.
func (r *soakEventLog) summary() string {
	evs, late := r.late()
	n, byAction := 0, map[string]int{}
	var worst time.Duration
	for i, d := range late {
		if d > 0 {
			n++
			byAction[string(evs[i].Action)]++
			worst = max(worst, d)
		}
	}
	return fmt.Sprintf("%d container events, %d of them delivered after a newer one (by action: %v; by up to %v)", len(evs), n, byAction, worst)
}

// of describes the events of container id in stream order, marking those
// that came after a newer event of any container.
func (r *soakEventLog) of(id string) string {
	evs, late := r.late()
	var out []string
	for i, m := range evs {
		if m.Actor.ID != id {
			continue
		}
		s := fmt.Sprintf("%s@%s", m.Action, time.Unix(0, m.TimeNano).UTC().Format("15:04:05.000000"))
		if late[i] > 0 {
			s += fmt.Sprintf(" (delivered after an event %v newer)", late[i].Round(time.Microsecond))
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return "none recorded"
	}
	return strings.Join(out, ", ")
}
