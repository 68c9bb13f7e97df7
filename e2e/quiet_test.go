//go:build e2e

package e2e

import (
	"fmt"
	"testing"
	"time"
)

// TestQuietContainers: 100 containers that stay quiet cost the daemon
// (almost) nothing. Half wrote 3 lines before berth started, half write
// nothing until the test signals them. berth (idle_timeout 1s,
// quiet_idle_timeout 16s, max_concurrent_attaches 4) must attach all of them
// within 30 s of its start (4 at a time), then, once their idle deadlines
// have grown, send few logs requests while every container is silent
// (counted by berth's own berth_logs_requests_total: at most 2 per container
// over 24 s, where idle_timeout alone would be 24), hold at most
// 50 + 3 goroutines per open stream, and deliver every line once: the 3 of
// each first half container, and 5 that each other container writes on
// SIGUSR1 into its long-quiet stream.
func TestQuietContainers(t *testing.T) {
	needDocker(t)
	const (
		n        = 100
		window   = 24 * time.Second
		maxQuiet = 16 * time.Second
	)
	cs := make([]*Ctr, n)
	for i := range cs {
		args := []string{"-n", "3", "-sleep-after", "10m"}
		if i%2 == 1 {
			args = []string{"-wait-usr1", "-n", "5", "-sleep-after", "10m"}
		}
		cs[i] = createContainer(t, ContainerSpec{Name: uniqueName(t, fmt.Sprint(i)), Args: args})
	}
	errs := make([]error, n)
	parallel(4, func(w int) {
		for i := w; i < n; i += 4 {
			errs[i] = cs[i].startErr()
		}
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i += 2 {
		waitFor(t, cs[i].Name+" to write its 3 lines", time.Minute, func() (bool, string) {
			k := len(dockerLog(t, cs[i]))
			return k == 3, fmt.Sprint(k)
		})
	}

	b := startBerth(t, BerthConfig{IdleTimeout: "1s", QuietIdleTimeout: maxQuiet.String(), InitialPosition: "beginning",
		Extra: []string{"max_concurrent_attaches: 4", fmt.Sprintf("include: [label=%s=%s]", runLabel, suite.runID)}})
	start := time.Now()
	b.waitReady(t)
	// Attached: every container streams, and the first half's lines arrived.
	waitFor(t, "every container attached", 30*time.Second, func() (bool, string) {
		b.checkAlive(t)
		b.poll(t)
		for i, c := range cs {
			if i%2 == 0 && b.out.count(c.Name) < 3 {
				return false, c.Name + " has not delivered its lines"
			}
		}
		st, err := b.status()
		if err != nil {
			return false, err.Error()
		}
		open, _ := st["streams_open"].(float64)
		return int(open) == n, fmt.Sprintf("%v streams open", open)
	})
	t.Logf("figure: %d containers attached %v after berth started (max_concurrent_attaches 4)", n, time.Since(start).Round(time.Millisecond))

	// Quiet: the idle deadlines grow 1, 2, 4, 8 s, then 12.8-16 s; the
	// attaches were staggered by a few seconds.
	time.Sleep(1*time.Second + 2*time.Second + 4*time.Second + 8*time.Second + 10*time.Second)
	r0, _ := b.metric(t, "berth_logs_requests_total")
	g0 := b.goroutines(t)
	time.Sleep(window)
	r1, _ := b.metric(t, "berth_logs_requests_total")
	st, err := b.status()
	if err != nil {
		t.Fatal(err)
	}
	open, _ := st["streams_open"].(float64)
	g1, _ := st["goroutines"].(float64)
	reqs := int(r1 - r0)
	t.Logf("figure: %d logs requests for %d silent containers over %v (idle_timeout 1s alone: about %d); goroutines %d and %d with %v streams open",
		reqs, n, window, n*int(window/time.Second), g0, int(g1), open)
	if limit := 2 * n; reqs > limit {
		t.Errorf("%d logs requests over %v of silence, want at most %d (2 per container: quiet_idle_timeout %v)", reqs, window, limit, maxQuiet)
	}
	if int(open) != n {
		t.Errorf("%v streams open while silent, want %d", open, n)
	}
	if limit := 50 + 3*int(open); g0 > limit || int(g1) > limit {
		t.Errorf("goroutines %d and %d with %v streams open, want at most 50 + 3 per stream = %d", g0, int(g1), open, limit)
	}

	// The other half speaks into its long-quiet streams.
	for i := 1; i < n; i += 2 {
		cs[i].signal(t, "USR1")
	}
	waitFor(t, "every line delivered", time.Minute, func() (bool, string) {
		b.checkAlive(t)
		b.poll(t)
		for i, c := range cs {
			want := 3
			if i%2 == 1 {
				want = 5
			}
			if k := b.out.count(c.Name); k < want {
				return false, fmt.Sprintf("%s: %d of %d lines", c.Name, k, want)
			}
		}
		return true, ""
	})
	b.stop(t)
	for i, c := range cs {
		want := 3
		if i%2 == 1 {
			want = 5
		}
		checkShared(t, c, b.out.records(c.Name), want, 0)
	}
}
