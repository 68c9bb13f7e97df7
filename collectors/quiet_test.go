package collectors

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
)

// TestIdleFor: the idle deadline doubles with each quiet burst from
// idle_timeout, up to quiet_idle_timeout (and no further than max_burst),
// spread over its last fifth by the container's ID.
func TestIdleFor(t *testing.T) {
	cfg := testBursts(1024, 10)
	cfg.IdleTimeout, cfg.QuietIdleTimeout, cfg.MaxBurst = 30*time.Second, 5*time.Minute, 10*time.Minute
	c := newCollector(t, &fakeDaemon{}, &memSink{}, cfg, telemetry.NopSettings())
	for _, tc := range []struct {
		quiet    int
		min, max time.Duration
	}{
		{0, 30 * time.Second, 30 * time.Second},
		{1, 48 * time.Second, time.Minute},
		{2, 96 * time.Second, 2 * time.Minute},
		{3, 192 * time.Second, 4 * time.Minute},
		{4, 4 * time.Minute, 5 * time.Minute},
		{100, 4 * time.Minute, 5 * time.Minute},
	} {
		if got := c.IdleFor("c1", tc.quiet); got < tc.min || got > tc.max {
			t.Errorf("IdleFor(c1, %d) = %v, want in [%v, %v]", tc.quiet, got, tc.min, tc.max)
		}
	}
	// Containers that went quiet together are spread.
	seen := map[time.Duration]bool{}
	for i := range 50 {
		seen[c.IdleFor(fmt.Sprintf("container-%d", i), 10)] = true
	}
	if len(seen) < 40 {
		t.Errorf("50 quiet containers got %d distinct idle deadlines, want them spread", len(seen))
	}
	// max_burst caps it; with quiet_idle_timeout unset it never grows.
	cfg.MaxBurst = 2 * time.Minute
	c = newCollector(t, &fakeDaemon{}, &memSink{}, cfg, telemetry.NopSettings())
	if got := c.IdleFor("c1", 10); got > 2*time.Minute || got < 96*time.Second {
		t.Errorf("with max_burst 2m: IdleFor = %v, want at most 2m", got)
	}
	cfg.QuietIdleTimeout = 0
	c = newCollector(t, &fakeDaemon{}, &memSink{}, cfg, telemetry.NopSettings())
	if got := c.IdleFor("c1", 10); got != cfg.IdleTimeout {
		t.Errorf("without quiet_idle_timeout: IdleFor = %v, want idle_timeout", got)
	}
}

// TestBurstAsksForItsIdle: a quiet container's burst asks the source for
// the grown idle deadline, and reports it.
func TestBurstAsksForItsIdle(t *testing.T) {
	d := &fakeDaemon{log: []fakeMsg{{logs.Stdout, at(1), "a\n"}}}
	cfg := testBursts(1024, 10)
	cfg.QuietIdleTimeout = 8 * time.Minute
	c := newCollector(t, d, &memSink{}, cfg, telemetry.NopSettings())
	sp := spec(logs.BeginningCursor(), true)
	sp.Quiet = 2
	res := c.Burst(context.Background(), sp)
	want := c.IdleFor(sp.ID, 2)
	if want <= cfg.IdleTimeout {
		t.Fatalf("IdleFor after 2 quiet bursts = %v, want more than idle_timeout %v", want, cfg.IdleTimeout)
	}
	if len(d.requests) != 1 || d.requests[0].Idle != want || res.Idle != want {
		t.Fatalf("requests %+v, result idle %v; want one request with Idle %v", d.requests, res.Idle, want)
	}
}

// slowSource answers every logs request at once with a body that sends one
// line after first (the daemon preparing the response: the attach), then
// waits idle and ends as the idle deadline does (follow) or with EOF (not).
// It counts the requests waiting for their first byte, and the bodies open.
type slowSource struct {
	first, idle time.Duration

	mu                   sync.Mutex
	attaching, open      int
	maxAttaching, maxOpn int
	requests             int
}

func (s *slowSource) Inspect(context.Context, string) (*logs.Meta, error) {
	return &logs.Meta{ID: "c1", Name: "web", Running: true}, nil
}

func (s *slowSource) Logs(_ context.Context, id string, req LogRequest) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	s.attaching++
	s.open++
	s.maxAttaching = max(s.maxAttaching, s.attaching)
	s.maxOpn = max(s.maxOpn, s.open)
	var buf bytes.Buffer
	writeMsg(&buf, fakeMsg{logs.Stdout, at(1), "line of " + id + "\n"}, false)
	return &slowBody{s: s, follow: req.Follow, line: buf.Bytes()}, nil
}

type slowBody struct {
	s      *slowSource
	follow bool
	line   []byte
	state  int // 0: before the line, 1: after it, 2: ended
}

func (b *slowBody) Read(p []byte) (int, error) {
	switch b.state {
	case 0:
		time.Sleep(b.s.first)
		b.s.mu.Lock()
		b.s.attaching--
		b.s.mu.Unlock()
		b.state = 1
		return copy(p, b.line), nil // one frame: it fits any read
	case 1:
		b.state = 2
		if !b.follow {
			time.Sleep(b.s.first) // the rest of a stopped container's log
			return 0, io.EOF
		}
		time.Sleep(b.s.idle)
		return 0, fmt.Errorf("read: %w", os.ErrDeadlineExceeded)
	}
	return 0, io.EOF
}

func (b *slowBody) Close() error {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	b.s.open--
	return nil
}

// runBursts runs n bursts of containers c0..cn-1 at once and waits for
// them.
func runBursts(c *Collector, n int, follow, hint bool) []BurstResult {
	res := make([]BurstResult, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sp := spec(logs.BeginningCursor(), follow)
			sp.ID = fmt.Sprintf("c%d", i)
			if hint {
				sp.Hint = &logs.Meta{Name: sp.ID}
			}
			res[i] = c.Burst(context.Background(), sp)
		})
	}
	wg.Wait()
	return res
}

// TestAttachesBounded: at most max_concurrent_attaches follow requests wait
// for their first bytes at once, while every attached stream waits for its
// container at the same time (the slot is given back once what was waiting
// is read); the first request for a container that has just started (a
// Hint, no Meta yet) is never held back.
func TestAttachesBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &slowSource{first: time.Second, idle: time.Minute}
		cfg := testBursts(1024, 10)
		cfg.MaxConcurrentAttaches = 2
		c := newCollector(t, src, &memSink{}, cfg, telemetry.NopSettings())
		start := time.Now()
		for i, r := range runBursts(c, 6, true, false) {
			if r.End != EndIdle || r.Lines != 1 {
				t.Errorf("burst %d: %+v, want an idle end after 1 line", i, r)
			}
		}
		if src.maxAttaching != 2 || src.maxOpn != 6 {
			t.Errorf("at most %d requests attaching and %d open at once; want 2 attaching, all 6 open", src.maxAttaching, src.maxOpn)
		}
		// 6 attaches of 1 s, 2 at a time, then each waits its minute.
		if took := time.Since(start); took != 3*time.Second+time.Minute {
			t.Errorf("the bursts took %v, want 3s of attaches + 1m", took)
		}

		src.maxAttaching, src.maxOpn = 0, 0
		runBursts(c, 6, true, true)
		if src.maxAttaching != 6 {
			t.Errorf("started containers (with a Hint): %d attaching at once, want all 6", src.maxAttaching)
		}
	})
}

// TestDrainsBounded: at most max_concurrent_attaches stopped containers'
// logs are read at once, each for its whole burst.
func TestDrainsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &slowSource{first: time.Second}
		cfg := testBursts(1024, 10)
		cfg.MaxConcurrentAttaches = 3
		c := newCollector(t, src, &memSink{}, cfg, telemetry.NopSettings())
		start := time.Now()
		for i, r := range runBursts(c, 7, false, false) {
			if r.End != EndEOF || r.Lines != 1 {
				t.Errorf("drain %d: %+v, want EOF after 1 line", i, r)
			}
		}
		if src.maxOpn != 3 {
			t.Errorf("%d drains open at once, want 3", src.maxOpn)
		}
		// 7 drains of 2 s, 3 at a time: 3 rounds.
		if took := time.Since(start); took != 6*time.Second {
			t.Errorf("the drains took %v, want 6s", took)
		}
	})
}

// TestWaitingForASlotEndsWithCtx: a burst waiting for a slot returns when
// its ctx ends, without a request.
func TestWaitingForASlotEndsWithCtx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &slowSource{first: time.Second, idle: time.Hour}
		cfg := testBursts(1024, 10)
		cfg.MaxConcurrentAttaches = 1
		c := newCollector(t, src, &memSink{}, cfg, telemetry.NopSettings())
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { c.Burst(ctx, spec(logs.BeginningCursor(), false)) }) // holds the slot
		synctest.Wait()
		var res BurstResult
		wg.Go(func() { res = c.Burst(ctx, spec(logs.BeginningCursor(), false)) })
		synctest.Wait()
		cancel()
		wg.Wait()
		if res.End != EndShutdown || res.Requests != 0 || src.requests != 1 {
			t.Errorf("the waiting burst: %+v, %d requests in all; want a shutdown end and 1 request", res, src.requests)
		}
	})
}

// silentSource answers a follow request only when the container writes (as
// Podman before 5.3 does): never, here; the request ends at the deadline.
type silentSource struct {
	mu       sync.Mutex
	requests int
}

func (s *silentSource) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

func (s *silentSource) Inspect(context.Context, string) (*logs.Meta, error) {
	return &logs.Meta{ID: "c1", Name: "web", Running: true}, nil
}

func (s *silentSource) Logs(context.Context, string, LogRequest) (io.ReadCloser, error) {
	s.mu.Lock()
	s.requests++
	s.mu.Unlock()
	time.Sleep(time.Hour)
	return nil, fmt.Errorf("no response header: %w", os.ErrDeadlineExceeded)
}

// TestAttachSlotHeldForIdleTimeoutAtMost: a follow request the daemon does
// not answer gives its slot back after idle_timeout, so the next attach is
// not held back for the first one's (possibly grown) idle deadline.
func TestAttachSlotHeldForIdleTimeoutAtMost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &silentSource{}
		cfg := testBursts(1024, 10)
		cfg.IdleTimeout, cfg.MaxConcurrentAttaches = 30*time.Second, 1
		c := newCollector(t, src, &memSink{}, cfg, telemetry.NopSettings())
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() { c.Burst(context.Background(), spec(logs.BeginningCursor(), true)) })
		}
		synctest.Wait()
		if n := src.count(); n != 1 {
			t.Fatalf("%d requests at first, want 1 (one slot)", n)
		}
		time.Sleep(30*time.Second + time.Millisecond)
		synctest.Wait()
		if n := src.count(); n != 2 {
			t.Fatalf("%d requests after idle_timeout, want 2: the first gave its slot back", n)
		}
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if n := src.count(); n != 3 {
			t.Fatalf("%d requests after 2 idle_timeouts, want 3", n)
		}
		wg.Wait()
	})
}
