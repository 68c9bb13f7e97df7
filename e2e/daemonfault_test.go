//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/berthlog/berth/e2e/internal/lines"
)

// daemonBackoff keeps berth's reconnect schedule short for these tests
// (the default caps at 30 s).
var daemonBackoff = []string{"backoff:", "  initial: 200ms", "  max: 2s"}

// TestDaemonRestart: three containers with restart policy "always" write
// 200 numbered lines/s each on a private dockerd that is stopped with
// SIGTERM and started again 5 times, then killed with SIGKILL and started
// again once. berth must say it is not ready (/readyz 503 with the reason)
// while the daemon is gone, reconnect, be ready again, read every container
// again, and in the end hold every line the daemon kept exactly once (its
// records equal the daemon's own log). Goroutines come back to the baseline.
func TestDaemonRestart(t *testing.T) {
	needDocker(t)
	pd := newPrivateDaemon(t)
	b := startBerth(t, BerthConfig{Extra: daemonBackoff})
	b.waitReady(t)
	cs := make([]*Ctr, 3)
	for i := range cs {
		cs[i] = runAlways(t, "-n", "0", "-rate", "200")
	}
	for _, c := range cs {
		b.waitRecords(t, c.Name, 100, time.Minute)
	}
	base := b.stableGoroutines(t, 30*time.Second)

	type cycle struct {
		how                 string
		down503, ready, all time.Duration
		reason              string
	}
	var cycles []cycle
	for i := 0; i < 6; i++ {
		cy := cycle{how: "SIGTERM"}
		b.poll(t)
		oldRuns := map[string]bool{} // every run read so far: the next start makes new ones
		for _, c := range cs {
			for _, r := range b.out.records(c.Name) {
				if p, ok := lines.Parse(r.Body); ok {
					oldRuns[p.Run] = true
				}
			}
		}
		if i == 5 {
			cy.how = "SIGKILL"
			pd.kill(t)
		} else {
			pd.stop(t, 60*time.Second)
		}
		gone := time.Now()
		waitFor(t, "/readyz to answer 503 while the daemon is gone", 15*time.Second, func() (bool, string) {
			code, body := b.readyz()
			cy.reason = body
			return code == 503, fmt.Sprintf("%d %s", code, body)
		})
		cy.down503 = time.Since(gone)
		b.checkAlive(t)
		pd.start(t)
		up := time.Now()
		waitFor(t, "/readyz to answer 200 after the daemon is back", 30*time.Second, func() (bool, string) {
			code, body := b.readyz()
			return code == 200, fmt.Sprintf("%d %s", code, body)
		})
		cy.ready = time.Since(up)
		for _, c := range cs {
			waitFor(t, c.Name+"'s records of a run started after the daemon came back", time.Minute, func() (bool, string) {
				b.poll(t)
				b.checkAlive(t)
				recs := b.out.records(c.Name)
				for i := len(recs) - 1; i >= 0 && i >= len(recs)-50; i-- {
					if p, ok := lines.Parse(recs[i].Body); ok && !oldRuns[p.Run] {
						return true, ""
					}
				}
				return false, fmt.Sprintf("%d records, none of a new run among the last 50", len(recs))
			})
		}
		cy.all = time.Since(up)
		cycles = append(cycles, cy)
	}
	after := b.waitGoroutinesBack(t, base, 3, 30*time.Second)

	for _, c := range cs {
		c.stop(t, 10)
	}
	total := 0
	for _, c := range cs {
		n := len(dockerLog(t, c))
		total += n
		b.waitRecords(t, c.Name, n, time.Minute)
	}
	b.stop(t)
	for _, c := range cs {
		recs := b.out.records(c.Name)
		compareWithDocker(t, c, recs)
		runs := map[string]bool{}
		for _, r := range recs {
			if p, ok := lines.Parse(r.Body); ok {
				runs[p.Run] = true
			}
		}
		if len(runs) < 7 {
			t.Errorf("%s: records of %d runs, want at least 7 (one per daemon start)", c.Name, len(runs))
		}
	}
	var rows []string
	for i, cy := range cycles {
		rows = append(rows, fmt.Sprintf("%d %s: /readyz 503 %v after the daemon was gone; after the daemon answered: /readyz 200 in %v, a record of every container's new run in %v",
			i+1, cy.how, cy.down503.Round(time.Millisecond), cy.ready.Round(time.Millisecond), cy.all.Round(time.Millisecond)))
	}
	t.Logf("6 daemon restarts, %d lines the daemon kept; goroutines %d before, %d after\n%s\n/readyz while gone: %q",
		total, base, after, strings.Join(rows, "\n"), cycles[0].reason)
	for i, cy := range cycles {
		if _, why, _ := strings.Cut(cy.reason, "not connected: "); why == "" || strings.HasPrefix(why, "connecting") {
			t.Errorf("restart %d: /readyz while the daemon is gone says %q; want the Docker error after \"not connected: \"", i+1, cy.reason)
		}
	}
}

// TestDaemonAbsentAtStart: berth starts while its daemon is not there yet:
// it serves /healthz, /readyz answers 503 with the reason, its log says why
// and retries with backoff (a few warnings, not a storm); once the daemon
// starts, berth connects, is ready, and collects a container's every line.
func TestDaemonAbsentAtStart(t *testing.T) {
	needDocker(t)
	pd := newPrivateDaemon(t)
	pd.stop(t, 30*time.Second)
	b := startBerth(t, BerthConfig{Extra: daemonBackoff})
	var reason string
	waitFor(t, "/readyz to answer 503 while the daemon is absent", 10*time.Second, func() (bool, string) {
		code, body := b.readyz()
		reason = body
		return code == 503, fmt.Sprintf("%d %s", code, body)
	})
	if !strings.Contains(reason, pd.sock) {
		t.Errorf("/readyz while the daemon is absent says %q; want the Docker error, naming the socket %s", reason, pd.sock)
	}
	const window = 5 * time.Second
	time.Sleep(window) // the window whose retries are counted
	stderr, _ := os.ReadFile(b.stderrPath)
	retries := strings.Count(string(stderr), "docker events unavailable")
	if !strings.Contains(string(stderr), pd.sock) {
		t.Errorf("berth's log does not name the socket %s:\n%s", pd.sock, b.stderrTail(10))
	}
	// backoff 200ms doubling, capped at 2 s, jittered: about 5 in 5 s.
	if retries < 2 || retries > 12 {
		t.Errorf("%d 'docker events unavailable' warnings in the first %v+; want a few (backoff), not none and not a storm:\n%s", retries, window, b.stderrTail(15))
	}
	code, _ := b.readyz()
	if code != 503 {
		t.Errorf("/readyz answers %d while the daemon is absent, want 503", code)
	}

	pd.start(t)
	up := time.Now()
	waitFor(t, "/readyz to answer 200 once the daemon is there", 30*time.Second, func() (bool, string) {
		code, body := b.readyz()
		return code == 200, fmt.Sprintf("%d %s", code, body)
	})
	ready := time.Since(up)
	c := runContainer(t, ContainerSpec{Args: []string{"-n", "2000", "-stderr-every", "7"}})
	c.waitExited(t, time.Minute)
	b.waitRecords(t, c.Name, 2000, time.Minute)
	b.stop(t)
	recs := b.out.records(c.Name)
	checkShared(t, c, recs, 2000, 7)
	compareWithDocker(t, c, recs)
	t.Logf("daemon absent: /readyz %q; %d retry warnings in the first %v+; ready %v after the daemon answered",
		reason, retries, window, ready.Round(time.Millisecond))
}
