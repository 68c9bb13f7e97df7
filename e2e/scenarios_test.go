//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/docker/docker/api/types/container"

	"github.com/berthlog/berth/e2e/internal/lines"
	"github.com/berthlog/berth/e2e/internal/stallproxy"
)

// waitGoroutinesBack polls /status until the goroutine count is at most
// baseline+tol, and returns the figure.
func (b *Berth) waitGoroutinesBack(t *testing.T, baseline, tol int, timeout time.Duration) int {
	t.Helper()
	var g int
	waitFor(t, fmt.Sprintf("berth's goroutines to return to %d (+%d)", baseline, tol), timeout, func() (bool, string) {
		g = b.goroutines(t)
		return g <= baseline+tol, fmt.Sprintf("%d goroutines", g)
	})
	return g
}

// TestTenContainers: 10 containers x 5,000 lines, every 7th on stderr, all
// started after berth. Each line exactly once, on the right stream, with the
// right resource. Logs the end-to-end lines/s.
func TestTenContainers(t *testing.T) {
	needDocker(t)
	const containers, n, every = 10, 5000, 7
	b := startBerth(t, BerthConfig{})
	b.waitReady(t)
	base := b.stableGoroutines(t, 20*time.Second)

	cs := make([]*Ctr, containers)
	for i := range cs {
		cs[i] = createContainer(t, ContainerSpec{Name: uniqueName(t, fmt.Sprint(i)), Args: []string{"-n", fmt.Sprint(n), "-stderr-every", fmt.Sprint(every), "-size", "160"}})
	}
	start := time.Now()
	errs := make([]error, containers)
	parallel(containers, func(i int) { errs[i] = cs[i].startErr() })
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, fmt.Sprintf("%d records from each of %d containers", n, containers), 3*time.Minute, func() (bool, string) {
		b.poll(t)
		b.checkAlive(t)
		var counts []int
		done := true
		for _, c := range cs {
			k := len(b.out.records(c.Name))
			counts = append(counts, k)
			done = done && k >= n
		}
		return done, fmt.Sprint("records per container: ", counts)
	})
	elapsed := time.Since(start)
	total := containers * n
	t.Logf("end to end: %d lines from %d containers in %v: %.0f lines/s (from the first start to the last record seen)",
		total, containers, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds())
	logRates(t, b, cs)

	for _, c := range cs {
		c.waitExited(t, time.Minute)
	}
	g := b.waitGoroutinesBack(t, base, 3, 20*time.Second)
	t.Logf("goroutines: %d before the containers, %d after they exited and were read", base, g)
	b.stop(t)
	for _, c := range cs {
		checkShared(t, c, b.out.records(c.Name), n, every)
	}
}

// logRates logs the rate seen in berth's own timestamps: from the first
// container log timestamp to the last observed_timestamp.
func logRates(t *testing.T, b *Berth, cs []*Ctr) {
	var first, last time.Time
	n := 0
	for _, c := range cs {
		for _, r := range b.out.records(c.Name) {
			ts, err1 := time.Parse(time.RFC3339Nano, r.Timestamp)
			obs, err2 := time.Parse(time.RFC3339Nano, r.ObservedTimestamp)
			if err1 != nil || err2 != nil {
				continue
			}
			n++
			if first.IsZero() || ts.Before(first) {
				first = ts
			}
			if obs.After(last) {
				last = obs
			}
		}
	}
	if n > 0 && last.After(first) {
		t.Logf("by the records' timestamps: %d lines between the first line written and the last read: %v, %.0f lines/s", n, last.Sub(first).Round(time.Millisecond), float64(n)/last.Sub(first).Seconds())
	}
}

// TestConcurrentStreams: one container writes stdout and stderr at the same
// time, as fast as it can, each stream with its own sequence.
func TestConcurrentStreams(t *testing.T) {
	needDocker(t)
	const n = 25000
	b := startBerth(t, BerthConfig{})
	b.waitReady(t)
	start := time.Now()
	c := runContainer(t, ContainerSpec{Args: []string{"-both", "-n", fmt.Sprint(n), "-size", "100"}})
	b.waitRecords(t, c.Name, 2*n, 3*time.Minute)
	t.Logf("%d lines (stdout and stderr concurrently) in %v: %.0f lines/s", 2*n, time.Since(start).Round(time.Millisecond), float64(2*n)/time.Since(start).Seconds())
	c.waitExited(t, time.Minute)
	b.stop(t)
	recs := b.out.records(c.Name)
	groups := checkPerStream(t, c, recs, map[string]int{lines.Out: n, lines.Err: n})
	if len(groups) != 2 {
		t.Errorf("want one run with two streams, got %d groups", len(groups))
	}
	checkRecordMeta(t, c, recs)
	compareWithDocker(t, c, recs)
}

// TestTTY: a TTY container (raw stream, no multiplexing; the terminal turns
// "\n" into "\r\n"): every line once, with the "\r" stripped.
func TestTTY(t *testing.T) {
	needDocker(t)
	const n = 3000
	b := startBerth(t, BerthConfig{})
	b.waitReady(t)
	c := runContainer(t, ContainerSpec{Tty: true, Args: []string{"-n", fmt.Sprint(n), "-size", "80", "-empty"}})
	c.waitExited(t, time.Minute)
	b.waitRecords(t, c.Name, n+1, time.Minute)
	b.stop(t)
	recs := b.out.records(c.Name)
	var numbered []Record
	empty := 0
	for _, r := range recs {
		if strings.HasSuffix(r.Body, "\r") {
			t.Errorf("record at line %d keeps a trailing \\r: %.60q", r.Line, r.Body)
		}
		if r.Body == "" {
			empty++
			continue
		}
		numbered = append(numbered, r)
	}
	if empty != 1 {
		t.Errorf("%d empty records, want 1", empty)
	}
	checkShared(t, c, numbered, n, 0)
	compareWithDocker(t, c, recs)
}

// TestSpecialLines: a TTY container; lines of 20 KiB and 200 KiB whole and
// exact (with a multi-byte character across the 16 KiB split); a 3 MiB line
// truncated to max_line_bytes and marked; an empty line; invalid UTF-8 (base64
// of the exact bytes). See specialCases for what each log driver keeps.
func TestSpecialLines(t *testing.T) {
	needDocker(t)
	const maxLine = 1 << 20
	b := startBerth(t, BerthConfig{MaxLineBytes: maxLine})
	b.waitReady(t)

	type started struct {
		sc specialCase
		c  *Ctr
	}
	var all []started
	for _, sc := range specialCases {
		c := runContainer(t, ContainerSpec{Name: uniqueName(t, sc.name), Tty: sc.tty, LogDriver: sc.driver, Args: sc.args})
		all = append(all, started{sc, c})
	}
	for _, s := range all {
		s.c.waitExited(t, time.Minute)
		b.waitRecords(t, s.c.Name, len(s.sc.lines("x")), time.Minute)
	}
	b.stop(t)

	for _, s := range all {
		t.Run(s.sc.name, func(t *testing.T) {
			c, recs := s.c, b.out.records(s.c.Name)
			checkRecordMeta(t, c, recs)
			truth := dockerLog(t, c)
			if len(recs) != len(truth) {
				t.Errorf("%d records, the daemon has %d lines", len(recs), len(truth))
			}
			run := mustParse(t, truth[0].Body).Run
			gen := s.sc.lines(run)
			for i := 0; i < len(recs) && i < len(truth); i++ {
				r := recs[i]
				got, err := r.BodyBytes()
				if err != nil {
					t.Errorf("record %d: %v", i, err)
					continue
				}
				want := truth[i].Body
				wantTrunc := len(want) > maxLine
				if wantTrunc {
					want = want[:maxLine]
				}
				if string(got) != want {
					t.Errorf("record %d: %d bytes, want %d (the daemon's line%s); equal prefix %d bytes; got ends %q, want ends %q",
						i, len(got), len(want), map[bool]string{true: " truncated to max_line_bytes"}[wantTrunc],
						commonPrefix(string(got), want), tailOf(string(got), 8), tailOf(want, 8))
				}
				if r.Truncated() != wantTrunc {
					t.Errorf("record %d (%d bytes): log.truncated=%v, want %v", i, len(truth[i].Body), r.Truncated(), wantTrunc)
				}
				if s.sc.tty && strings.HasSuffix(string(got), "\r") {
					t.Errorf("record %d: TTY line still ends with \\r", i)
				}
				validUTF8 := utf8.ValidString(want)
				if r.Base64() == validUTF8 {
					t.Errorf("record %d: log.body.encoding=%v for a line whose UTF-8 validity is %v", i, r.attr("log.body.encoding"), validUTF8)
				}
				if s.sc.exact {
					// the local driver keeps the generator's bytes
					g := gen[i]
					if len(g) > maxLine {
						g = g[:maxLine]
					}
					if string(got) != g {
						t.Errorf("record %d: not the generator's exact bytes (equal prefix %d of %d)", i, commonPrefix(string(got), g), len(g))
					}
				}
			}
			var sizes []string
			for _, r := range recs {
				b, _ := r.BodyBytes()
				sizes = append(sizes, fmt.Sprintf("%d%s%s", len(b), map[bool]string{true: "(truncated)"}[r.Truncated()], map[bool]string{true: "(base64)"}[r.Base64()]))
			}
			t.Logf("%s: record sizes %s", s.sc.name, strings.Join(sizes, " "))
		})
	}
}

// TestShortLivedContainers: 30 containers print 100 lines each and exit at
// once, all started together after berth.
func TestShortLivedContainers(t *testing.T) {
	needDocker(t)
	const containers, n, every = 30, 100, 10
	p := newProxy(t) // to see berth's requests for a container it misses
	b := startBerth(t, BerthConfig{DockerHost: p.Host()})
	b.waitReady(t)
	base := b.stableGoroutines(t, 20*time.Second)
	evs := recordEvents(t)
	cs := make([]*Ctr, containers)
	for i := range cs {
		cs[i] = createContainer(t, ContainerSpec{Name: uniqueName(t, fmt.Sprint(i)), Args: []string{"-n", fmt.Sprint(n), "-stderr-every", fmt.Sprint(every)}})
	}
	errs := make([]error, containers)
	start := time.Now()
	parallel(containers, func(i int) { errs[i] = cs[i].startErr() })
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cs {
		c.waitExited(t, time.Minute)
	}
	var short []*Ctr
	ok, state := waitUntil(time.Minute, func() (bool, string) {
		b.poll(t)
		b.checkAlive(t)
		short = short[:0]
		var desc []string
		for _, c := range cs {
			if k := len(b.out.records(c.Name)); k < n {
				short = append(short, c)
				desc = append(desc, fmt.Sprintf("%s:%d", c.Name[len(c.Name)-9:], k))
			}
		}
		return len(short) == 0, fmt.Sprintf("%d containers short: %v", len(short), desc)
	})
	if k, ex := evs.outOfOrder(); k > 0 {
		t.Logf("the daemon's events stream delivered %d events with a time before that of an earlier event, e.g. %v", k, ex)
	}
	if !ok {
		for _, c := range short {
			info := c.inspect(t)
			t.Errorf("container %s (%s): %d records; the daemon has %d lines; state %s exit %d, started %s, finished %s; events in stream order: %s",
				c.Name, short12(c.ID), len(b.out.records(c.Name)), len(dockerLog(t, c)), info.State.Status, info.State.ExitCode, info.State.StartedAt, info.State.FinishedAt, describe(evs.of(c.ID)))
			t.Errorf("container %s: berth's /status: %s; berth's logs requests: %s", short12(c.ID), b.statusOf(t, c), describeLogs(p, c))
		}
		t.Fatalf("timed out after 1m waiting for %d records from each of %d short-lived containers: %s", n, containers, state)
	}
	t.Logf("all %d lines of %d short-lived containers in %v", containers*n, containers, time.Since(start).Round(time.Millisecond))
	g := b.waitGoroutinesBack(t, base, 3, 20*time.Second)
	t.Logf("goroutines: %d before, %d after %d containers came and went", base, g, containers)
	b.stop(t)
	for _, c := range cs {
		checkShared(t, c, b.out.records(c.Name), n, every)
	}
	assertOnlyReads(t, p)
}

// describeLogs lists the logs requests the proxy saw for c: time, query,
// bytes returned, who closed.
func describeLogs(p *stallproxy.Proxy, c *Ctr) string {
	var out []string
	for _, r := range p.LogsRequests(c.ID) {
		ci, _ := p.Conn(r.Conn)
		out = append(out, fmt.Sprintf("[%s %s -> %d bytes, closed by client %v]", r.Time.UTC().Format("15:04:05.000000"), r.RawQuery, ci.BytesToClient, ci.ByClient))
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, " ")
}

// TestRestartedContainer: a container restarted 5 times while it writes; per
// run (a new run id at each start) the sequence is contiguous from 0 with no
// duplicate, and the records equal the daemon's log.
func TestRestartedContainer(t *testing.T) {
	needDocker(t)
	const restarts = 5
	b := startBerth(t, BerthConfig{})
	b.waitReady(t)
	c := runContainer(t, ContainerSpec{Args: []string{"-n", "0", "-rate", "300", "-stderr-every", "0"}})
	seen := 0
	for i := 0; i <= restarts; i++ {
		b.waitRecords(t, c.Name, seen+150, time.Minute) // this run is being read
		seen = len(b.out.records(c.Name))
		if i < restarts {
			c.restart(t, 5)
		}
	}
	c.stop(t, 5)
	truth := len(dockerLog(t, c))
	b.waitRecords(t, c.Name, truth, time.Minute)
	b.stop(t)
	recs := b.out.records(c.Name)
	groups := checkPerStream(t, c, recs, map[string]int{lines.Out: 0})
	var per []string
	for g, seqs := range groups {
		per = append(per, fmt.Sprintf("%s:%d", g.Run, len(seqs)))
	}
	t.Logf("runs and their lines: %v", per)
	if len(groups) != restarts+1 {
		t.Errorf("records from %d runs, want %d", len(groups), restarts+1)
	}
	compareWithDocker(t, c, recs)
}

// assertOnlyReads requires that berth sent nothing but GET and HEAD through
// the proxy (which refused anything else before the daemon).
func assertOnlyReads(t *testing.T, p *stallproxy.Proxy) {
	t.Helper()
	m := p.Methods()
	for method, k := range m {
		if method != "GET" && method != "HEAD" {
			var which []string
			for _, r := range p.Requests() {
				if r.Method == method {
					which = append(which, r.Method+" "+r.Path)
				}
			}
			t.Errorf("berth sent %d %s requests (refused by the proxy): %v", k, method, which)
		}
	}
	t.Logf("berth's requests through the proxy by method: %v", m)
}

// newProxy starts a stalling proxy in front of the daemon that refuses every
// method but GET and HEAD.
func newProxy(t *testing.T) *stallproxy.Proxy {
	t.Helper()
	p, err := stallproxy.New(suite.sock, testDir(t))
	if err != nil {
		t.Fatal(err)
	}
	p.RejectNonRead(true)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// TestStalledStream: berth reads through a proxy that freezes the logs
// response of a writing container. Each frozen burst must end within
// idle_timeout + 1 s (the proxy sees berth close the connection), berth must
// re-attach, its goroutine count must come back to the pre-freeze baseline
// (±2), and after the proxy resumes every line must arrive once.
func TestStalledStream(t *testing.T) {
	needDocker(t)
	const idle = 2 * time.Second
	const frozenBursts = 3
	p := newProxy(t)
	b := startBerth(t, BerthConfig{DockerHost: p.Host(), IdleTimeout: idle.String()})
	b.waitReady(t)
	c := runContainer(t, ContainerSpec{Args: []string{"-n", "0", "-rate", "100", "-stderr-every", "5"}})
	b.waitRecords(t, c.Name, 200, time.Minute)
	base := b.stableGoroutines(t, 20*time.Second)
	t.Logf("goroutines before the freeze (one container streaming): %d", base)

	freezeAt := time.Now()
	p.Freeze(c.ID)
	recsAtFreeze := len(b.out.records(c.Name))
	var closes []time.Duration
	var reattachDelays []time.Duration
	var during []int
	handled := map[int]bool{}
	for len(closes) < frozenBursts {
		// the connection that is (or will be) frozen: the newest logs request
		var ci stallproxy.ConnInfo
		waitFor(t, "a logs response of the container to be held by the proxy", 30*time.Second, func() (bool, string) {
			b.checkAlive(t)
			for _, r := range p.LogsRequests(c.ID) {
				if handled[r.Conn] {
					continue
				}
				x, _ := p.Conn(r.Conn)
				if !x.HeldSince.IsZero() || (x.Closed.IsZero() && r.Time.After(freezeAt)) {
					ci = x
					return true, ""
				}
			}
			return false, fmt.Sprintf("logs requests so far: %d", len(p.LogsRequests(c.ID)))
		})
		handled[ci.ID] = true
		// The burst must end: berth closes the held connection.
		waitFor(t, fmt.Sprintf("berth to close frozen connection %d", ci.ID), 30*time.Second, func() (bool, string) {
			x, _ := p.Conn(ci.ID)
			ci = x
			return !x.Closed.IsZero(), fmt.Sprintf("%+v", x)
		})
		// The idle deadline starts at the last byte berth got, or at the
		// request when even the response headers were held.
		from := maxTime(ci.LastToClient, ci.Opened)
		took := ci.Closed.Sub(from)
		closes = append(closes, took)
		if !ci.ByClient {
			t.Errorf("frozen connection %d was not closed by berth (the proxy ended it)", ci.ID)
		}
		if took > idle+time.Second {
			t.Errorf("frozen burst on connection %d ended %v after its last byte; want <= idle_timeout + 1s = %v", ci.ID, took.Round(time.Millisecond), idle+time.Second)
		}
		// A new logs request follows.
		waitFor(t, "berth to re-attach after the frozen burst ended", 30*time.Second, func() (bool, string) {
			for _, r := range p.LogsRequests(c.ID) {
				if r.Time.After(ci.Closed) {
					reattachDelays = append(reattachDelays, r.Time.Sub(ci.Closed))
					return true, ""
				}
			}
			return false, "no newer logs request"
		})
		g := b.waitGoroutinesBack(t, base, 2, 10*time.Second)
		during = append(during, g)
	}
	if got := len(b.out.records(c.Name)) - recsAtFreeze; got > 0 {
		t.Logf("%d records arrived after the freeze (bytes in flight before it)", got)
	}
	t.Logf("frozen bursts ended after %v (idle_timeout %v); re-attached after %v; goroutines during the freeze %v (baseline %d)",
		roundAll(closes), idle, roundAll(reattachDelays), during, base)

	p.Resume(c.ID)
	resumedAt := len(b.out.records(c.Name))
	b.waitRecords(t, c.Name, resumedAt+200, time.Minute)
	after := b.stableGoroutines(t, 20*time.Second)
	t.Logf("goroutines after resume (streaming again): %d (baseline %d)", after, base)
	if after > base+2 || after < base-2 {
		t.Errorf("goroutines after resume: %d, want %d±2", after, base)
	}
	c.stop(t, 5)
	truth := len(dockerLog(t, c))
	b.waitRecords(t, c.Name, truth, time.Minute)
	b.stop(t)
	recs := b.out.records(c.Name)
	checkShared(t, c, recs, truth, 5)
	compareWithDocker(t, c, recs)
	assertOnlyReads(t, p)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// TestReattachCost: on a container holding 500,000 lines, berth (idle_timeout
// 300ms, started after the lines were written, so at their end) re-attaches
// again and again. 20 re-attachments must cost dockerd less CPU than 2
// since-only reads (since=<timestamp of a recent line>, no tail, no follow),
// which make the daemon decode the log file from its start.
//
// quiet: the container then writes nothing (berth has no checkpoint for it).
// trickle: it then writes one line every 700 ms, so berth holds a checkpoint
// and re-attaches with since=<checkpoint>; those lines must arrive once each.
func TestReattachCost(t *testing.T) {
	needDocker(t)
	const n = 500000
	pid := dockerdPID(t)
	t.Run("quiet", func(t *testing.T) {
		measureReattach(t, pid, n, []string{"-n", fmt.Sprint(n), "-size", "100", "-sleep-after", "1h"}, false)
	})
	t.Run("trickle", func(t *testing.T) {
		measureReattach(t, pid, n, []string{"-n", fmt.Sprint(n), "-size", "100", "-then-rate", "1.43"}, true)
	})
}

func measureReattach(t *testing.T, pid, n int, args []string, trickle bool) {
	const reattaches = 20
	c := runContainer(t, ContainerSpec{Args: args})
	start := time.Now()
	waitFor(t, fmt.Sprintf("the container to hold %d lines", n), 4*time.Minute, func() (bool, string) {
		_, last := lastLogLine(t, c)
		p, ok := lines.Parse(last)
		return ok && p.Seq >= n-1, fmt.Sprintf("last line %.60q", last)
	})
	info := c.inspect(t)
	t.Logf("%d lines written in %v; log file %s", n, time.Since(start).Round(time.Millisecond), info.LogPath)

	p := newProxy(t)
	b := startBerth(t, BerthConfig{DockerHost: p.Host(), IdleTimeout: "300ms"})
	b.waitReady(t)
	waitFor(t, "berth's first two logs requests for the container", time.Minute, func() (bool, string) {
		b.checkAlive(t)
		k := len(p.LogsRequests(c.ID))
		return k >= 2, fmt.Sprint(k)
	})
	if trickle {
		b.waitRecords(t, c.Name, 2, 30*time.Second) // berth holds a checkpoint
	}
	settle := dockerdSettle(t, pid)
	cpu0, k0, t0 := procCPU(t, pid), len(p.LogsRequests(c.ID)), time.Now()
	var samples []string
	lastCPU, lastAt := cpu0, t0
	waitFor(t, fmt.Sprintf("%d re-attachments", reattaches), 2*time.Minute, func() (bool, string) {
		b.checkAlive(t)
		if time.Since(lastAt) >= time.Second {
			now := procCPU(t, pid)
			samples = append(samples, (now - lastCPU).String())
			lastCPU, lastAt = now, time.Now()
		}
		k := len(p.LogsRequests(c.ID))
		return k >= k0+reattaches, fmt.Sprint(k - k0)
	})
	cpu1, k1, t1 := procCPU(t, pid), len(p.LogsRequests(c.ID)), time.Now()
	reqs := p.LogsRequests(c.ID)
	t.Logf("berth's logs requests, first: %s; last: %s", reqs[0].RawQuery, reqs[len(reqs)-1].RawQuery)
	t.Logf("dockerd settled (%s); its CPU per second while berth re-attached: %v", settle, samples)
	if trickle {
		withSince := 0
		for _, r := range reqs[k0:k1] {
			if r.Query()["since"] != nil {
				withSince++
			}
		}
		t.Logf("%d of the %d measured re-attachments carried since=", withSince, k1-k0)
		c.stop(t, 5)
		last, _ := lastLogLine(t, c)
		waitFor(t, "berth to read the container's last line", 30*time.Second, func() (bool, string) {
			b.poll(t)
			rs := b.out.records(c.Name)
			if len(rs) == 0 {
				return false, "no records"
			}
			ts, _ := time.Parse(time.RFC3339Nano, rs[len(rs)-1].Timestamp)
			return !ts.Before(last), fmt.Sprintf("newest record %s, last line %s", rs[len(rs)-1].Timestamp, last.Format(time.RFC3339Nano))
		})
	}
	b.stop(t)
	recs := b.out.records(c.Name)
	if !trickle {
		if len(recs) != 0 {
			t.Errorf("berth emitted %d records of a container that wrote nothing after berth started (initial_position end)", len(recs))
		}
	} else {
		// The lines written after berth attached: contiguous, once each,
		// up to the last line of the log.
		var seqs []int
		lo := -1
		for _, r := range recs {
			if pr, ok := lines.Parse(r.Body); ok {
				seqs = append(seqs, pr.Seq)
				if lo < 0 || pr.Seq < lo {
					lo = pr.Seq
				}
			}
		}
		_, lastBody := lastLogLine(t, c)
		hi := mustParse(t, lastBody).Seq
		rel := make([]int, len(seqs))
		for i, s := range seqs {
			rel[i] = s - lo
		}
		missing, dups := missingDups(rel, hi-lo+1)
		if lo < n || len(missing) > 0 || len(dups) > 0 {
			t.Errorf("trickled lines %d..%d (first after berth's start: >= %d): %d records; missing (offsets from %d) %s; duplicated %s",
				lo, hi, n, len(seqs), lo, ranges(missing), dupString(dups))
		} else {
			t.Logf("trickled lines %d..%d: each once across %d re-attachments", lo, hi, len(reqs))
		}
	}
	assertOnlyReads(t, p)

	since, _ := lastLogLine(t, c)
	dockerdSettle(t, pid)
	cpu2, t2 := procCPU(t, pid), time.Now()
	var got []int64
	for i := 0; i < 2; i++ {
		ctx, cancel := dctx(2 * time.Minute)
		rc, err := suite.docker.ContainerLogs(ctx, c.ID, container.LogsOptions{
			ShowStdout: true, ShowStderr: true, Timestamps: true,
			Since: fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond()),
		})
		if err != nil {
			cancel()
			t.Fatalf("since-only read: %v", err)
		}
		k, err := io.Copy(io.Discard, rc)
		rc.Close()
		cancel()
		if err != nil {
			t.Fatalf("since-only read: %v", err)
		}
		got = append(got, k)
	}
	cpu3, t3 := procCPU(t, pid), time.Now()

	reattachCPU, sinceCPU := cpu1-cpu0, cpu3-cpu2
	t.Logf("dockerd CPU: %d re-attachments by berth: %v (over %v wall); 2 since-only reads: %v (over %v wall, %v bytes returned)",
		k1-k0, reattachCPU, t1.Sub(t0).Round(time.Millisecond), sinceCPU, t3.Sub(t2).Round(time.Millisecond), got)
	if reattachCPU >= sinceCPU {
		t.Errorf("%d re-attachments cost dockerd %v of CPU, not less than 2 since-only reads (%v): re-attach cost grows with the log size", k1-k0, reattachCPU, sinceCPU)
	}
}

// TestLifecycleOnlyReads: through a proxy that refuses every method but GET
// and HEAD, berth follows a container that is paused, unpaused, renamed and
// stopped while it writes. Every line arrives once (under the old or the new
// name), lines written well after the rename carry the new name, and berth
// sent nothing but GET and HEAD.
func TestLifecycleOnlyReads(t *testing.T) {
	needDocker(t)
	p := newProxy(t)
	b := startBerth(t, BerthConfig{DockerHost: p.Host(), IdleTimeout: "1s"})
	b.waitReady(t)
	c := runContainer(t, ContainerSpec{Args: []string{"-n", "0", "-rate", "200", "-stderr-every", "3"}})
	oldName := c.Name
	b.waitRecords(t, oldName, 200, time.Minute)

	ctx, cancel := dctx(time.Minute)
	defer cancel()
	if err := suite.docker.ContainerPause(ctx, c.ID); err != nil {
		t.Fatalf("pause: %v", err)
	}
	n := len(b.out.records(oldName))
	// paused for longer than idle_timeout: berth's burst ends idle and it
	// re-attaches; nothing is lost meanwhile
	k0 := len(p.LogsRequests(c.ID))
	waitFor(t, "berth to re-attach while the container is paused", 30*time.Second, func() (bool, string) {
		k := len(p.LogsRequests(c.ID))
		return k > k0, fmt.Sprint(k - k0)
	})
	if err := suite.docker.ContainerUnpause(ctx, c.ID); err != nil {
		t.Fatalf("unpause: %v", err)
	}
	b.waitRecords(t, oldName, n+200, time.Minute)

	newName := c.Name + "-renamed"
	if err := suite.docker.ContainerRename(ctx, c.ID, newName); err != nil {
		t.Fatalf("rename: %v", err)
	}
	renamedAt := time.Now()
	c.Name = newName
	b.waitRecords(t, newName, 300, time.Minute)
	c.stop(t, 5)
	truth := len(dockerLog(t, c))
	waitFor(t, fmt.Sprintf("%d records under the old and the new name", truth), time.Minute, func() (bool, string) {
		b.poll(t)
		k := len(b.out.records(oldName)) + len(b.out.records(newName))
		return k >= truth, fmt.Sprint(k)
	})
	b.stop(t)

	recs := append(b.out.records(oldName), b.out.records(newName)...)
	sortByLine(recs)
	checkSharedSeqs(t, c, recs, truth, 3)
	compareWithDocker(t, c, recs)
	late := 0
	for _, r := range b.out.records(oldName) {
		if ts, err := time.Parse(time.RFC3339Nano, r.Timestamp); err == nil && ts.After(renamedAt.Add(3*time.Second)) {
			late++
		}
	}
	if late > 0 {
		t.Errorf("%d records written more than 3s after the rename still carry the old name", late)
	}
	t.Logf("records under the old name: %d, under the new name: %d", len(b.out.records(oldName)), len(b.out.records(newName)))
	assertOnlyReads(t, p)
}

func sortByLine(recs []Record) {
	sort.Slice(recs, func(i, j int) bool { return recs[i].Line < recs[j].Line })
}

// dockerdSettle waits until dockerd uses less than 20 ms of CPU in a 500 ms
// window (the work of earlier steps, such as removing the canary, is over),
// and says how long that took.
func dockerdSettle(t *testing.T, pid int) string {
	t.Helper()
	start := time.Now()
	var last time.Duration
	waitFor(t, "dockerd to settle (< 20ms CPU in 500ms)", 30*time.Second, func() (bool, string) {
		c0 := procCPU(t, pid)
		time.Sleep(500 * time.Millisecond)
		last = procCPU(t, pid) - c0
		return last < 20*time.Millisecond, fmt.Sprintf("%v CPU in the last 500ms", last)
	})
	return fmt.Sprintf("after %v, %v in the last 500ms", time.Since(start).Round(time.Millisecond), last)
}

func short12(id string) string { return short(id) }
