package events

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthlog/berth/collectors"
	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
)

// waitTimeout bounds every wait of these tests: a condition that does not
// hold by then is a failure, never a reason to wait longer.
const waitTimeout = 5 * time.Second

// waitFor polls cond until it holds, and fails the test, saying what it
// waited for (and what it last saw), when waitTimeout passes first.
func waitFor(t *testing.T, what string, cond func() bool, seen ...func() string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("timed out after %v waiting for %s", waitTimeout, what)
			for _, s := range seen {
				msg += "; last seen: " + s()
			}
			t.Fatal(msg)
		}
		time.Sleep(time.Millisecond)
	}
}

// consistently fails the test if cond stops holding at any poll during d.
// It is for negative claims ("no further burst starts"), after the positive
// condition was reached with waitFor.
func consistently(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !cond() {
			t.Fatalf("%s stopped holding", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// ---- events.Source ----------------------------------------------------------

var errSubscribe = errors.New("fake: cannot connect to the docker daemon")

type subscribeCall struct {
	since time.Time
	at    time.Time
}

// fakeSource is the daemon's events endpoint and container list. Subscribe
// fails while fails > 0, and blocks (until released or its ctx ends) while
// held; each successful Subscribe opens a fakeStream the test feeds.
type fakeSource struct {
	mu      sync.Mutex
	list    []Container
	fails   int
	gate    chan struct{}
	calls   []subscribeCall
	streams []*fakeStream
}

func (s *fakeSource) Subscribe(ctx context.Context, since time.Time) (EventStream, error) {
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, subscribeCall{since: since, at: time.Now()})
	if s.fails > 0 {
		s.fails--
		return nil, errSubscribe
	}
	st := &fakeStream{ctx: ctx, wake: make(chan struct{}, 1), closedCh: make(chan struct{})}
	s.streams = append(s.streams, st)
	return st, nil
}

func (s *fakeSource) List(ctx context.Context) ([]Container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.list), nil
}

func (s *fakeSource) setList(list ...Container) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = list
}

func (s *fakeSource) setFails(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails = n
}

// hold makes Subscribe block until release.
func (s *fakeSource) hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate = make(chan struct{})
}

func (s *fakeSource) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate != nil {
		close(s.gate)
		s.gate = nil
	}
}

func (s *fakeSource) subscribeCalls() []subscribeCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

func (s *fakeSource) streamCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

// waitStream returns the n-th (1-based) successful subscription.
func (s *fakeSource) waitStream(t *testing.T, n int) *fakeStream {
	t.Helper()
	waitFor(t, fmt.Sprintf("events subscription #%d", n), func() bool { return s.streamCount() >= n },
		func() string {
			return fmt.Sprintf("%d subscriptions, %d Subscribe calls", s.streamCount(), len(s.subscribeCalls()))
		})
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams[n-1]
}

type streamItem struct {
	ev  Event
	err error
}

// fakeStream is one events subscription: Next returns what the test queued,
// in order, and otherwise blocks until more is queued, the stream is closed,
// or the Subscribe ctx ends (as the real one, whose request is bound to it).
type fakeStream struct {
	ctx      context.Context
	wake     chan struct{} // capacity 1
	closedCh chan struct{}

	mu      sync.Mutex
	queue   []streamItem
	waiting bool // Next is blocked with nothing queued
	closed  bool
}

func (s *fakeStream) push(items ...streamItem) {
	s.mu.Lock()
	s.queue = append(s.queue, items...)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// send queues events.
func (s *fakeStream) send(evs ...Event) {
	for _, ev := range evs {
		s.push(streamItem{ev: ev})
	}
}

// fail makes Next return err once the queued events are taken.
func (s *fakeStream) fail(err error) { s.push(streamItem{err: err}) }

func (s *fakeStream) Next() (Event, error) {
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			it := s.queue[0]
			s.queue = s.queue[1:]
			s.mu.Unlock()
			return it.ev, it.err
		}
		if s.closed {
			s.mu.Unlock()
			return Event{}, errors.New("fake: events stream closed")
		}
		s.waiting = true
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-s.closedCh:
		case <-s.ctx.Done():
		}
		s.mu.Lock()
		s.waiting = false
		s.mu.Unlock()
		if err := s.ctx.Err(); err != nil {
			return Event{}, err
		}
	}
}

func (s *fakeStream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.closedCh)
	}
	return nil
}

// idle reports that every queued event was taken and Next waits for more:
// the subscriber has handed the last event to the manager (it calls Next
// again only after that).
func (s *fakeStream) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waiting && len(s.queue) == 0
}

func (s *fakeStream) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// ---- events.Collector ---------------------------------------------------------

// outcome is how the test ends a burst. A nil Cursor returns the spec's
// cursor; a zero Duration reports the burst's real duration.
type outcome struct {
	End      collectors.EndReason
	Err      error
	Stopped  bool
	Gone     bool
	Lines    int64
	Dropped  int64
	Unparsed int64
	Cursor   *logs.Cursor
	Duration time.Duration
	Gaps     [2]collectors.Gap
}

// fakeBurst is one Burst call as the fake collector saw it.
type fakeBurst struct {
	seq     int // 1-based, over every container
	spec    collectors.BurstSpec
	started time.Time
	outcome chan outcome
	done    chan struct{} // closed when Burst returned

	// set before done is closed
	ended time.Time
	res   collectors.BurstResult
}

func (b *fakeBurst) String() string {
	return fmt.Sprintf("burst #%d of %s (follow=%v)", b.seq, b.spec.ID, b.spec.Follow)
}

// end makes the burst return o and waits until it has returned.
func (b *fakeBurst) end(t *testing.T, o outcome) {
	t.Helper()
	select {
	case b.outcome <- o:
	case <-b.done:
		t.Fatalf("%s already returned (%s) before the test ended it", b, b.res.End)
	case <-time.After(waitTimeout):
		t.Fatalf("%s did not take its outcome within %v", b, waitTimeout)
	}
	select {
	case <-b.done:
	case <-time.After(waitTimeout):
		t.Fatalf("%s did not return within %v", b, waitTimeout)
	}
}

// deliver adds n lines, the newest written at newest, to the burst's
// progress, as the real burst does for each batch its sink accepts while it
// runs.
func (b *fakeBurst) deliver(t *testing.T, n int64, newest time.Time) {
	t.Helper()
	if b.spec.Progress == nil {
		t.Fatalf("%s got no progress", b)
	}
	b.spec.Progress.Lines.Add(n)
	b.spec.Progress.Newest.Store(newest.UnixNano())
}

func (b *fakeBurst) returned() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// fakeCollector runs bursts that block until the test ends them (or auto
// answers them, or the run's ctx ends). It stores a Meta into the shared
// pointer the way the real collector does after its inspect, and fails the
// test if two bursts of one container ever overlap.
type fakeCollector struct {
	t *testing.T
	// auto, when set, answers a burst without the test; ok=false leaves it
	// to the test. It may block, and must return when ctx ends.
	auto func(ctx context.Context, b *fakeBurst) (o outcome, ok bool)
	// meta is what "inspect" finds; by default the ID is the name.
	meta map[string]logs.Meta
	// shutdownDelay is how long a burst takes to wind down once ctx ends.
	shutdownDelay time.Duration
	// inspecting, when set, holds each burst's "inspect" until it is
	// closed: the answer was given before, its Meta is stored after.
	inspecting chan struct{}

	mu     sync.Mutex
	bursts []*fakeBurst
	active map[string]int
	stored map[string]*logs.Meta // the Meta each container's pointer was first given
}

func newFakeCollector(t *testing.T) *fakeCollector {
	return &fakeCollector{t: t, active: make(map[string]int), stored: make(map[string]*logs.Meta)}
}

func (c *fakeCollector) Burst(ctx context.Context, spec collectors.BurstSpec) collectors.BurstResult {
	if spec.Meta == nil {
		c.t.Errorf("burst of %s got no Meta pointer", spec.ID)
	} else if spec.Meta.Load() == nil {
		m, ok := c.meta[spec.ID]
		if !ok {
			m = logs.Meta{ID: spec.ID, Name: spec.ID, ServiceName: spec.ID, Running: true}
		}
		if c.inspecting != nil {
			// The inspect is answered (with m) before the gate opens; the
			// burst stores that answer after it.
			select {
			case <-c.inspecting:
			case <-ctx.Done():
			}
		}
		if spec.StoreMeta(&m) == &m {
			c.mu.Lock()
			c.stored[spec.ID] = &m
			c.mu.Unlock()
		}
	}
	b := &fakeBurst{spec: spec, started: time.Now(), outcome: make(chan outcome), done: make(chan struct{})}
	b.spec.Cursor = spec.Cursor.Clone()
	c.mu.Lock()
	c.active[spec.ID]++
	if n := c.active[spec.ID]; n > 1 {
		c.t.Errorf("%d bursts of container %s run at once (the newest: follow=%v)", n, spec.ID, spec.Follow)
	}
	b.seq = len(c.bursts) + 1
	c.bursts = append(c.bursts, b)
	auto := c.auto
	c.mu.Unlock()

	var o outcome
	ok := false
	if auto != nil {
		o, ok = auto(ctx, b)
	}
	if !ok {
		select {
		case o = <-b.outcome:
		case <-ctx.Done():
			if c.shutdownDelay > 0 {
				time.Sleep(c.shutdownDelay) // a burst that takes a while to wind down
			}
			o = outcome{End: collectors.EndShutdown}
		}
	}
	res := collectors.BurstResult{
		ID: spec.ID, Follow: spec.Follow, Cursor: b.spec.Cursor.Clone(),
		End: o.End, Err: o.Err, Lines: o.Lines, Dropped: o.Dropped, Unparsed: o.Unparsed, Stopped: o.Stopped, Gone: o.Gone,
		Duration: o.Duration, Requests: 1, Gaps: o.Gaps,
	}
	if o.Cursor != nil {
		res.Cursor = o.Cursor.Clone()
	}
	if res.Duration == 0 {
		res.Duration = time.Since(b.started)
	}
	if res.End == collectors.EndError && res.Err == nil {
		res.Err = errors.New("fake burst error")
	}
	c.mu.Lock()
	c.active[spec.ID]--
	b.ended, b.res = time.Now(), res
	c.mu.Unlock()
	close(b.done)
	return res
}

// of returns the bursts of one container, oldest first.
func (c *fakeCollector) of(id string) []*fakeBurst {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*fakeBurst
	for _, b := range c.bursts {
		if b.spec.ID == id {
			out = append(out, b)
		}
	}
	return out
}

func (c *fakeCollector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.bursts)
}

func (c *fakeCollector) all() []*fakeBurst {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.bursts)
}

func (c *fakeCollector) activeOf(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.active[id]
}

func (c *fakeCollector) storedMeta(id string) *logs.Meta {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stored[id]
}

func (c *fakeCollector) describe(id string) string {
	var parts []string
	for _, b := range c.of(id) {
		s := fmt.Sprintf("#%d follow=%v", b.seq, b.spec.Follow)
		if b.returned() {
			s += " -> " + string(b.res.End)
		} else {
			s += " (running)"
		}
		parts = append(parts, s)
	}
	return fmt.Sprintf("bursts of %s: [%s]", id, strings.Join(parts, ", "))
}

// waitBurst returns the n-th (1-based) burst of a container.
func (c *fakeCollector) waitBurst(t *testing.T, id string, n int) *fakeBurst {
	t.Helper()
	waitFor(t, fmt.Sprintf("burst #%d of container %s", n, id), func() bool { return len(c.of(id)) >= n },
		func() string { return c.describe(id) })
	return c.of(id)[n-1]
}

// fakeDaemon simulates what the daemon does to bursts: a follow burst on a
// running container lasts until the container stops, then ends with EOF and
// an inspect (Stopped); a follow burst on a stopped container ends at once;
// a non-follow burst reads to the end at once. The test may still end a
// follow burst itself.
type fakeDaemon struct {
	mu      sync.Mutex
	running map[string]bool
	stopped map[string]chan struct{} // closed when the container stops
}

func newFakeDaemon() *fakeDaemon {
	return &fakeDaemon{running: make(map[string]bool), stopped: make(map[string]chan struct{})}
}

func (d *fakeDaemon) set(id string, running bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if running == d.running[id] {
		return
	}
	d.running[id] = running
	if running {
		d.stopped[id] = make(chan struct{})
	} else {
		close(d.stopped[id])
	}
}

func (d *fakeDaemon) isRunning(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.running[id]
}

func (d *fakeDaemon) answer(ctx context.Context, b *fakeBurst) (outcome, bool) {
	if !b.spec.Follow {
		return outcome{End: collectors.EndEOF}, true
	}
	d.mu.Lock()
	running, stopped := d.running[b.spec.ID], d.stopped[b.spec.ID]
	d.mu.Unlock()
	if !running {
		return outcome{End: collectors.EndEOF, Stopped: true}, true
	}
	select {
	case <-stopped:
	case o := <-b.outcome:
		return o, true
	case <-ctx.Done():
		return outcome{End: collectors.EndShutdown}, true
	}
	return outcome{End: collectors.EndEOF, Stopped: !d.isRunning(b.spec.ID)}, true
}

// ---- the manager under test ---------------------------------------------------

// harness runs one Manager in a goroutine it owns; the test's cleanup cancels
// it and waits for Run to return.
type harness struct {
	t      *testing.T
	src    *fakeSource
	col    *fakeCollector
	daemon *fakeDaemon // nil unless the test simulates the daemon
	set    telemetry.Settings
	cps    Checkpoints // nil: none
	self   []string    // IDs passed to NewManager as excluded
	m      *Manager
	cancel context.CancelFunc
	done   chan struct{}
	err    error

	started time.Time // just before Run was called
	clock   time.Time // the time of the last event made by ev
}

// testConfig reads from the beginning and backs off 50ms..400ms.
func testConfig() testCfg {
	return testCfg{
		Containers:   config.Containers{InitialPosition: config.InitialPositionBeginning},
		Backoff:      config.Backoff{Initial: 50 * time.Millisecond, Max: 400 * time.Millisecond, Multiplier: 2},
		HealthyAfter: time.Hour,
	}
}

func newHarness(t *testing.T) *harness {
	return &harness{t: t, src: &fakeSource{}, col: newFakeCollector(t), set: telemetry.NopSettings(), done: make(chan struct{}), clock: time.Now()}
}

// simulate makes the fake collector answer as the daemon would.
func (h *harness) simulate() *fakeDaemon {
	h.daemon = newFakeDaemon()
	h.col.auto = h.daemon.answer
	return h.daemon
}

// testCfg is what a test sets of a manager.
type testCfg struct {
	config.Containers
	Backoff      config.Backoff
	HealthyAfter time.Duration
}

func (h *harness) start(cfg testCfg) *harness {
	m, err := NewManager(h.src, h.col, h.cps, cfg.Containers, cfg.Backoff, h.set, h.self...)
	if err != nil {
		h.t.Fatal(err)
	}
	m.healthyAfter = cfg.HealthyAfter
	h.m = m
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.started = time.Now()
	go func() {
		defer close(h.done)
		h.err = h.m.Run(ctx)
	}()
	h.t.Cleanup(h.stop)
	return h
}

// stop cancels Run and waits for it to return.
func (h *harness) stop() {
	h.t.Helper()
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(waitTimeout):
		h.t.Fatalf("Run did not return within %v of its ctx ending", waitTimeout)
	}
	if h.err != nil {
		h.t.Errorf("Run returned %v, want nil", h.err)
	}
}

func (h *harness) status() Status {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	s, err := h.m.Status(ctx)
	if err != nil {
		h.t.Fatalf("Status: %v", err)
	}
	return s
}

func lookup(s Status, id string) (ContainerStatus, bool) {
	for _, c := range s.Containers {
		if c.ID == short(id) {
			return c, true
		}
	}
	return ContainerStatus{}, false
}

func (h *harness) container(id string) (ContainerStatus, bool) {
	h.t.Helper()
	return lookup(h.status(), id)
}

func (h *harness) waitState(id string, want State) ContainerStatus {
	h.t.Helper()
	var last Status
	waitFor(h.t, fmt.Sprintf("container %s in state %s", id, want), func() bool {
		last = h.status()
		c, ok := lookup(last, id)
		return ok && c.State == want
	}, func() string { return fmt.Sprintf("%+v; %s", last, h.col.describe(id)) })
	c, _ := lookup(last, id)
	return c
}

func (h *harness) waitGone(id string) {
	h.t.Helper()
	var last Status
	waitFor(h.t, fmt.Sprintf("container %s to be forgotten", id), func() bool {
		last = h.status()
		_, ok := lookup(last, id)
		return !ok
	}, func() string { return fmt.Sprintf("%+v", last) })
}

// sync returns once the manager has applied every event queued on s.
func (h *harness) sync(s *fakeStream) Status {
	h.t.Helper()
	waitFor(h.t, "the subscriber to hand every queued event to the manager", s.idle)
	// The subscriber has handed the last event over; the manager applies
	// it before it serves the next status request.
	return h.status()
}

// ev makes an event 1ms after the previous one.
func (h *harness) ev(action, id string, attrs ...string) Event {
	h.clock = h.clock.Add(time.Millisecond)
	a := map[string]string{"name": id}
	for i := 0; i+1 < len(attrs); i += 2 {
		a[attrs[i]] = attrs[i+1]
	}
	return Event{ID: id, Action: action, Time: h.clock, Attributes: a}
}

// docker applies an action to the simulated daemon, if any, and sends its
// event on s.
func (h *harness) docker(s *fakeStream, action, id string) {
	if h.daemon != nil {
		switch action {
		case "start", "unpause":
			h.daemon.set(id, true)
		case "die", "stop":
			h.daemon.set(id, false)
		case "restart":
			h.daemon.set(id, false)
			h.daemon.set(id, true)
		}
	}
	s.send(h.ev(action, id))
}

// memCheckpoints is a checkpoint store in memory that records its seeds.
type memCheckpoints struct {
	mu      sync.Mutex
	cursors map[string]logs.Cursor
	seeded  []string
}

func (m *memCheckpoints) Get(id string) (logs.Cursor, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.cursors[id]
	return c, ok
}

func (m *memCheckpoints) Seed(id string, c logs.Cursor) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.cursors[id]; !ok {
		m.cursors[id] = c
		m.seeded = append(m.seeded, id)
	}
}

func (m *memCheckpoints) Track(string) {}

func (m *memCheckpoints) Forget(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.cursors, id)
}

func (m *memCheckpoints) IDs() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Collect(maps.Keys(m.cursors))
}

func (m *memCheckpoints) seeds() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(slices.Values(m.seeded))
}
