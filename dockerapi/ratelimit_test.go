package dockerapi

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthlog/berth/collectors"
	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
)

// seqLogs serves n lines "seq=NNNN xxx..." of about size bytes, 1 ms apart
// from base, as the daemon does: since (inclusive) and tail honoured; a
// follow request is then held open.
func seqLogs(n, size int, base time.Time) func(lw *logWriter, r *http.Request) {
	pad := strings.Repeat("x", size)
	return func(lw *logWriter, r *http.Request) {
		q := r.URL.Query()
		from := 0
		if s := q.Get("since"); s != "" {
			sec, nsec, _ := strings.Cut(s, ".")
			si, _ := strconv.ParseInt(sec, 10, 64)
			ni, _ := strconv.ParseInt(nsec, 10, 64)
			since := time.Unix(si, ni)
			for from < n && base.Add(time.Duration(from)*time.Millisecond).Before(since) {
				from++
			}
		}
		if t, err := strconv.Atoi(q.Get("tail")); err == nil && n-t > from {
			from = n - t
		}
		_ = lw.Start()
		for i := from; i < n; i++ {
			if err := lw.Frame(1, base.Add(time.Duration(i)*time.Millisecond), fmt.Sprintf("seq=%04d %s\n", i, pad)); err != nil {
				return
			}
		}
		if q.Get("follow") == "1" {
			lw.Stall()
		}
	}
}

// seqsOf returns the sequence numbers of records written by seqLogs.
func seqsOf(t *testing.T, recs []gotRecord) []int {
	t.Helper()
	out := make([]int, len(recs))
	for i, r := range recs {
		n, err := strconv.Atoi(strings.TrimPrefix(strings.Fields(r.Body)[0], "seq="))
		if err != nil {
			t.Fatalf("record %d %.20q: %v", i, r.Body, err)
		}
		out[i] = n
	}
	return out
}

func wantSeqRun(t *testing.T, seqs []int, n int) {
	t.Helper()
	if len(seqs) != n {
		t.Fatalf("%d records, want %d", len(seqs), n)
	}
	for i, s := range seqs {
		if s != i {
			t.Fatalf("record %d is seq %d: a gap or a duplicate", i, s)
		}
	}
}

// TestBurstThrottleOutlastsIdleDeadline: a throttled burst waits for its
// rate limit far longer than idle_timeout between reads of the connection
// (lines of 8 KiB at 10 per second: the read buffer holds under a second),
// and the idle deadline does not end it: the idle deadline is armed by each
// read, not by the wait. Every line arrives, in order, at the rate; the
// burst ends as idle only once the container is quiet.
func TestBurstThrottleOutlastsIdleDeadline(t *testing.T) {
	const (
		n    = 30
		idle = 200 * time.Millisecond
		rate = 10
	)
	d := newFakeDaemon(t)
	d.setContainer("c1", nonTTY("c1"))
	base := time.Date(2024, 5, 1, 10, 20, 30, 0, time.UTC)
	d.setLogs(seqLogs(n, 8<<10, base))
	bursts := config.Bursts{IdleTimeout: idle, MaxBurst: time.Minute}
	c := newTestClient(t, d, config.Docker{}, bursts)
	cfg := testBursts(time.Minute)
	cfg.IdleTimeout = idle
	cfg.RateLimit = config.RateLimit{LinesPerSecond: rate, Burst: 100 * time.Millisecond, Mode: config.RateModeThrottle}
	sink := &recordingSink{}
	start := time.Now()
	res := burst(t, c, sink, cfg, telemetry.NopSettings(), collectors.BurstSpec{ID: "c1", Follow: true, Cursor: logs.BeginningCursor()})
	took := time.Since(start)
	if res.End != collectors.EndIdle || res.Err != nil {
		t.Fatalf("burst ended %q (%v) after %d lines, want an idle end after all %d", res.End, res.Err, res.Lines, n)
	}
	wantSeqRun(t, seqsOf(t, sink.got()), n)
	if least := time.Duration(n-2) * time.Second / rate; took < least {
		t.Errorf("%d lines at %d/s took %v, want at least %v", n, rate, took, least)
	}
}

// TestBurstThrottlePastMaxBurst: a throttled burst that waits past
// max_burst ends there (the connection's hard deadline), with the lines it
// delivered committed; the re-attach from its cursor delivers the rest: no
// gap, no duplicate.
func TestBurstThrottlePastMaxBurst(t *testing.T) {
	const (
		n        = 30
		maxBurst = time.Second
	)
	d := newFakeDaemon(t)
	d.setContainer("c1", nonTTY("c1"))
	base := time.Date(2024, 5, 1, 10, 20, 30, 0, time.UTC)
	d.setLogs(seqLogs(n, 8<<10, base))
	bursts := config.Bursts{IdleTimeout: 500 * time.Millisecond, MaxBurst: maxBurst}
	c := newTestClient(t, d, config.Docker{}, bursts)
	cfg := testBursts(maxBurst)
	cfg.IdleTimeout = bursts.IdleTimeout
	cfg.RateLimit = config.RateLimit{LinesPerSecond: 10, Burst: 100 * time.Millisecond, Mode: config.RateModeThrottle}
	sink := &recordingSink{}
	var rs collectors.RateState
	res := burst(t, c, sink, cfg, telemetry.NopSettings(), collectors.BurstSpec{ID: "c1", Follow: true, Cursor: logs.BeginningCursor(), Rate: &rs})
	if res.End != collectors.EndMaxBurst || res.Err != nil || res.Lines >= n || res.Lines < 5 {
		t.Fatalf("first burst ended %q (%v) after %d lines, want max_burst after about 10", res.End, res.Err, res.Lines)
	}
	cfg.RateLimit.LinesPerSecond = 1000
	res2 := burst(t, c, sink, cfg, telemetry.NopSettings(), collectors.BurstSpec{ID: "c1", Follow: true, Cursor: res.Cursor, Rate: &rs})
	if res2.Err != nil || res.Lines+res2.Lines != n {
		t.Fatalf("second burst %q (%v), %d lines; want the other %d", res2.End, res2.Err, res2.Lines, n-res.Lines)
	}
	wantSeqRun(t, seqsOf(t, sink.got()), n)
}
