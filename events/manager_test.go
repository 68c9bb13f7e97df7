package events

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/berthlog/berth/collectors"
	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/logs"
)

func running(id string) Container { return Container{ID: id, Name: id, State: "running"} }
func exited(id string) Container  { return Container{ID: id, Name: id, State: "exited"} }

// someCursor is a cursor as a burst returns it: both streams advanced, with
// boundary hashes.
func someCursor(at time.Time, salt uint32) logs.Cursor {
	return logs.Cursor{Streams: [2]logs.StreamCursor{
		{Time: at, Hashes: []uint32{salt, salt + 1}},
		{Time: at.Add(-time.Microsecond), Hashes: []uint32{salt + 2}},
	}}
}

// waitActiveFollow waits until the manager runs exactly one burst of id, a
// follow one, and the container is streaming; it returns that burst.
func (h *harness) waitActiveFollow(id string) *fakeBurst {
	h.t.Helper()
	var last Status
	var active *fakeBurst
	waitFor(h.t, fmt.Sprintf("exactly one follow burst of %s, streaming", id), func() bool {
		last = h.status()
		c, ok := lookup(last, id)
		if !ok || c.State != StateStreaming || last.Streams != 1 || h.col.activeOf(id) != 1 {
			return false
		}
		bs := h.col.of(id)
		active = bs[len(bs)-1]
		return active.spec.Follow && !active.returned()
	}, func() string { return fmt.Sprintf("%+v; %s", last, h.col.describe(id)) })
	return active
}

func TestSnapshotAtStart(t *testing.T) {
	type wantBurst struct {
		follow    bool
		threshold bool // an end cursor at the snapshot's time; else a beginning cursor
	}
	tests := []struct {
		name   string
		pos    string
		state  string
		bursts []wantBurst // non-follow ones are ended with EOF
		final  State
	}{
		{"running, end", config.InitialPositionEnd, "running", []wantBurst{{follow: true, threshold: true}}, StateStreaming},
		{"paused, end", config.InitialPositionEnd, "paused", []wantBurst{{follow: true, threshold: true}}, StateStreaming},
		{"running, beginning", config.InitialPositionBeginning, "running", []wantBurst{{follow: true}}, StateStreaming},
		{"exited, end", config.InitialPositionEnd, "exited", nil, StateStopped},
		{"exited, beginning", config.InitialPositionBeginning, "exited", []wantBurst{{follow: false}}, StateStopped},
		{"dead, beginning", config.InitialPositionBeginning, "dead", []wantBurst{{follow: false}}, StateStopped},
		{"created, end", config.InitialPositionEnd, "created", nil, StateDiscovered},
		{"created, beginning", config.InitialPositionBeginning, "created", nil, StateDiscovered},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.src.setList(Container{ID: "c1", Name: "one", State: tt.state})
			cfg := testConfig()
			cfg.InitialPosition = tt.pos
			h.start(cfg)
			s := h.src.waitStream(t, 1)
			for i, w := range tt.bursts {
				b := h.col.waitBurst(t, "c1", i+1)
				if b.spec.Follow != w.follow {
					t.Errorf("%s: follow = %v, want %v", b, b.spec.Follow, w.follow)
				}
				cur := b.spec.Cursor
				if w.threshold {
					// The snapshot is taken when the subscription is made.
					sub := h.src.subscribeCalls()[0].at
					if cur.IsBeginning() || cur.Threshold.Before(h.started) || cur.Threshold.After(sub) {
						t.Errorf("%s: cursor threshold = %v, want the snapshot time in [%v, %v]", b, cur.Threshold, h.started, sub)
					}
					if !cur.Streams[0].Time.IsZero() || !cur.Streams[1].Time.IsZero() {
						t.Errorf("%s: cursor has stream positions %+v, want only a threshold", b, cur.Streams)
					}
				} else if !cur.IsBeginning() {
					t.Errorf("%s: cursor = %+v, want the beginning", b, cur)
				}
				if !w.follow {
					b.end(t, outcome{End: collectors.EndEOF})
				}
			}
			c := h.waitState("c1", tt.final)
			if c.Name != "one" {
				t.Errorf("status name = %q, want %q", c.Name, "one")
			}
			st := h.sync(s)
			wantStreams := 0
			if tt.final == StateStreaming {
				wantStreams = 1
			}
			if st.Streams != wantStreams {
				t.Errorf("streams open = %d, want %d", st.Streams, wantStreams)
			}
			if !st.Connected || !h.m.Connected() {
				t.Errorf("not connected after the snapshot: status %v, Connected() %v", st.Connected, h.m.Connected())
			}
			if got := h.col.count(); got != len(tt.bursts) {
				t.Errorf("%d bursts, want %d; %s", got, len(tt.bursts), h.col.describe("c1"))
			}
		})
	}
}

func TestCreateThenStart(t *testing.T) {
	// Containers that appear after berth started are read from their
	// beginning whatever the initial position.
	for _, pos := range []string{config.InitialPositionEnd, config.InitialPositionBeginning} {
		t.Run(string(pos), func(t *testing.T) {
			h := newHarness(t)
			cfg := testConfig()
			cfg.InitialPosition = pos
			h.start(cfg)
			s := h.src.waitStream(t, 1)
			s.send(h.ev("create", "c1"))
			st := h.sync(s)
			if c, ok := lookup(st, "c1"); !ok || c.State != StateDiscovered {
				t.Fatalf("after create: %+v, want c1 discovered", st)
			}
			if st.Streams != 0 {
				t.Fatalf("after create: %d streams open, want none (nothing to read yet)", st.Streams)
			}
			s.send(h.ev("start", "c1"))
			b := h.col.waitBurst(t, "c1", 1)
			if !b.spec.Follow || !b.spec.Cursor.IsBeginning() {
				t.Errorf("%s: follow=%v cursor=%+v, want a follow burst from the beginning", b, b.spec.Follow, b.spec.Cursor)
			}
			h.waitState("c1", StateStreaming)
		})
	}
}

func TestStoppedFollowBurstDrains(t *testing.T) {
	tests := []struct {
		name   string
		during []string // events while the follow burst runs
		end    outcome
	}{
		{"EOF, inspect says stopped, no die seen yet", nil, outcome{End: collectors.EndEOF, Stopped: true}},
		{"die, then EOF stopped", []string{"die"}, outcome{End: collectors.EndEOF, Stopped: true}},
		{"kill, die, stop, then EOF stopped", []string{"kill", "die", "stop"}, outcome{End: collectors.EndEOF, Stopped: true}},
		{"die, then the idle deadline", []string{"die"}, outcome{End: collectors.EndIdle}},
		{"die, then EOF with the inspect failed", []string{"die"}, outcome{End: collectors.EndEOF}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.start(testConfig())
			s := h.src.waitStream(t, 1)
			s.send(h.ev("start", "c1"))
			follow := h.col.waitBurst(t, "c1", 1)
			for _, a := range tt.during {
				s.send(h.ev(a, "c1"))
			}
			h.sync(s)
			x := someCursor(time.Now(), 10)
			end := tt.end
			end.Cursor, end.Lines = &x, 3
			follow.end(t, end)

			drain := h.col.waitBurst(t, "c1", 2)
			if drain.spec.Follow {
				t.Fatalf("%s follows, want a drain (non-follow) burst", drain)
			}
			if !reflect.DeepEqual(drain.spec.Cursor, x) {
				t.Errorf("%s cursor = %+v, want the follow burst's %+v", drain, drain.spec.Cursor, x)
			}
			y := someCursor(time.Now(), 20)
			drain.end(t, outcome{End: collectors.EndEOF, Cursor: &y, Lines: 2})
			c := h.waitState("c1", StateStopped)
			if c.Lines != 5 || !c.Newest.Equal(y.Newest()) {
				t.Errorf("status %+v, want 5 lines, newest %v", c, y.Newest())
			}

			// A late or repeated die changes nothing: the log was read to the end.
			s.send(h.ev("die", "c1"))
			st := h.sync(s)
			if c, _ := lookup(st, "c1"); c.State != StateStopped || st.Streams != 0 {
				t.Errorf("after a repeated die: %+v, want c1 stopped, no stream", st)
			}
			if n := h.col.count(); n != 2 {
				t.Errorf("%d bursts, want 2; %s", n, h.col.describe("c1"))
			}
		})
	}
}

func TestDieBeforeStart(t *testing.T) {
	// The container is in fact stopped; its die reaches berth before its
	// start. The follow burst that start launches ends at once (stopped),
	// one drain follows, and nothing more.
	tests := []struct {
		name   string
		pos    string
		listed []Container
		events []string
		bursts int
	}{
		{"unknown container (its log is read at the die)", config.InitialPositionBeginning, nil, []string{"die", "start"}, 3},
		{"created container", config.InitialPositionBeginning, nil, []string{"create", "die", "start"}, 2},
		{"listed as exited, read from the end", config.InitialPositionEnd, []Container{exited("c1")}, []string{"die", "start"}, 2},
		{"listed as exited, read from the beginning", config.InitialPositionBeginning, []Container{exited("c1")}, []string{"die", "start"}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.simulate() // c1 is not running
			h.src.setList(tt.listed...)
			cfg := testConfig()
			cfg.InitialPosition = tt.pos
			h.start(cfg)
			s := h.src.waitStream(t, 1)
			for _, a := range tt.events {
				s.send(h.ev(a, "c1"))
			}
			h.sync(s)
			var last Status
			waitFor(t, fmt.Sprintf("c1 stopped after %d bursts", tt.bursts), func() bool {
				last = h.status()
				c, ok := lookup(last, "c1")
				return ok && c.State == StateStopped && last.Streams == 0 && h.col.count() >= tt.bursts
			}, func() string { return fmt.Sprintf("%+v; %s", last, h.col.describe("c1")) })
			consistently(t, 100*time.Millisecond, "no further burst (hot loop)", func() bool { return h.col.count() == tt.bursts })
			bs := h.col.of("c1")
			if got := bs[len(bs)-1]; got.spec.Follow {
				t.Errorf("last %s follows, want the drain last", got)
			}
		})
	}
}

func TestDuplicateEvents(t *testing.T) {
	// The fake collector fails the test if two bursts of one container
	// ever overlap.
	tests := []struct {
		name    string
		events  []string
		running bool
		bursts  int // 0: not checked
	}{
		{"start twice", []string{"start", "start"}, true, 1},
		{"die twice", []string{"start", "die", "die"}, false, 2},
		{"kill, die, stop", []string{"start", "kill", "die", "stop"}, false, 2},
		{"every event twice", []string{"start", "start", "die", "die", "start", "start", "die", "die"}, false, 0},
		{"restart twice", []string{"start", "restart", "restart"}, true, 0},
		{"pause and unpause twice", []string{"start", "pause", "pause", "unpause", "unpause"}, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.simulate()
			h.start(testConfig())
			s := h.src.waitStream(t, 1)
			for _, a := range tt.events {
				h.docker(s, a, "c1")
			}
			h.sync(s)
			if tt.running {
				h.waitActiveFollow("c1")
				n := h.col.count()
				consistently(t, 100*time.Millisecond, "one follow burst and no new one", func() bool {
					return h.col.count() == n && h.col.activeOf("c1") == 1
				})
			} else {
				h.waitState("c1", StateStopped)
				if st := h.status(); st.Streams != 0 {
					t.Errorf("stopped with %d streams open", st.Streams)
				}
			}
			if tt.bursts > 0 {
				if n := h.col.count(); n != tt.bursts {
					t.Errorf("%d bursts, want %d; %s", n, tt.bursts, h.col.describe("c1"))
				}
			}
		})
	}
}

func TestDestroyDuringBurst(t *testing.T) {
	tests := []struct {
		name   string
		during []string
		end    outcome
	}{
		{"destroy, then EOF gone", []string{"destroy"}, outcome{End: collectors.EndEOF, Stopped: true, Gone: true}},
		{"die, destroy, then EOF stopped", []string{"die", "destroy"}, outcome{End: collectors.EndEOF, Stopped: true}},
		{"destroy, then not found", []string{"destroy"}, outcome{End: collectors.EndError, Gone: true, Err: collectors.ErrNotFound}},
		{"destroy, then the idle deadline", []string{"destroy"}, outcome{End: collectors.EndIdle}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.start(testConfig())
			s := h.src.waitStream(t, 1)
			s.send(h.ev("start", "c1"))
			b := h.col.waitBurst(t, "c1", 1)
			for _, a := range tt.during {
				s.send(h.ev(a, "c1"))
			}
			st := h.sync(s)
			if _, ok := lookup(st, "c1"); !ok || st.Streams != 1 {
				t.Fatalf("while its burst runs: %+v, want c1 still there with its stream", st)
			}
			b.end(t, tt.end)
			h.waitGone("c1")
			if st := h.status(); st.Streams != 0 {
				t.Errorf("%d streams open after the container was forgotten", st.Streams)
			}
			if n := h.col.count(); n != 1 {
				t.Errorf("%d bursts, want 1; %s", n, h.col.describe("c1"))
			}
		})
	}
}

func TestRestartStorm(t *testing.T) {
	// 20 start/die pairs, then a final start: at the end exactly one follow
	// burst runs, and bursts never overlap (the fake checks).
	tests := []struct {
		name     string
		simulate bool
		end      outcome // how the first follow burst ends, after the storm
	}{
		{name: "simulated daemon", simulate: true},
		{name: "first burst ends, inspect saw the container stopped", end: outcome{End: collectors.EndEOF, Stopped: true}},
		{name: "first burst ends, inspect saw the container running", end: outcome{End: collectors.EndEOF}},
		{name: "first burst ends at the idle deadline", end: outcome{End: collectors.EndIdle}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			if tt.simulate {
				h.simulate()
			} else {
				h.col.auto = func(_ context.Context, b *fakeBurst) (outcome, bool) {
					// drains read to the end at once; the test ends follow bursts
					return outcome{End: collectors.EndEOF}, !b.spec.Follow
				}
			}
			h.start(testConfig())
			s := h.src.waitStream(t, 1)
			for range 20 {
				h.docker(s, "start", "c1")
				h.docker(s, "die", "c1")
			}
			h.docker(s, "start", "c1")
			h.sync(s)
			if !tt.simulate {
				h.col.waitBurst(t, "c1", 1).end(t, tt.end)
			}
			h.waitActiveFollow("c1")
			n := h.col.count()
			consistently(t, 100*time.Millisecond, "one follow burst and no new one", func() bool {
				return h.col.count() == n && h.col.activeOf("c1") == 1
			})
		})
	}
}

// TestRenameBeforeFirstInspect: a rename that arrives while the first
// burst's inspect is under way (its answer has the old name) is in the
// records of that burst, not only of the next one.
func TestRenameBeforeFirstInspect(t *testing.T) {
	h := newHarness(t)
	h.col.meta = map[string]logs.Meta{"c1": {ID: "c1", Name: "old", ServiceName: "old"}}
	h.col.inspecting = make(chan struct{})
	h.src.setList(Container{ID: "c1", Name: "old", State: "running"})
	h.start(testConfig())
	s := h.src.waitStream(t, 1)
	h.waitState("c1", StateStreaming) // its burst is launched, inspecting
	s.send(h.ev("rename", "c1", "name", "new", "oldName", "/old"))
	h.sync(s)
	close(h.col.inspecting)
	a := h.col.waitBurst(t, "c1", 1)
	if got := a.spec.Meta.Load(); got.Name != "new" || got.ServiceName != "new" {
		t.Errorf("the running burst's Meta: name %q service %q, want new new (the rename came after the inspect's answer)", got.Name, got.ServiceName)
	}
}

func TestRenameSharesMeta(t *testing.T) {
	tests := []struct {
		name        string
		meta        logs.Meta
		newName     string
		wantName    string
		wantService string
	}{
		{"service name follows the container name", logs.Meta{ID: "c1", Name: "old", ServiceName: "old"}, "new", "new", "new"},
		{"compose service name is kept", logs.Meta{ID: "c1", Name: "old", ServiceName: "web"}, "new", "new", "web"},
		{"rename without a name changes nothing", logs.Meta{ID: "c1", Name: "old", ServiceName: "old"}, "", "old", "old"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			tt.meta.Labels = map[string]string{"team": "a"}
			h.col.meta = map[string]logs.Meta{"c1": tt.meta}
			h.src.setList(Container{ID: "c1", Name: "old", State: "running"})
			h.start(testConfig())
			s := h.src.waitStream(t, 1)
			a := h.col.waitBurst(t, "c1", 1)
			inspected := h.col.storedMeta("c1")
			if inspected == nil || a.spec.Meta.Load() != inspected {
				t.Fatalf("the burst's Meta pointer does not hold what the collector stored")
			}
			s.send(h.ev("rename", "c1", "name", tt.newName, "oldName", "/old"))
			st := h.sync(s)

			got := a.spec.Meta.Load()
			if got.Name != tt.wantName || got.ServiceName != tt.wantService {
				t.Errorf("Meta after rename: name %q service %q, want %q %q", got.Name, got.ServiceName, tt.wantName, tt.wantService)
			}
			if got.ID != "c1" || got.Labels["team"] != "a" {
				t.Errorf("Meta after rename lost fields: %+v", got)
			}
			if inspected.Name != "old" || inspected.ServiceName != tt.meta.ServiceName {
				t.Errorf("the published Meta was modified in place: %+v (a rename must publish a new one)", inspected)
			}
			if c, _ := lookup(st, "c1"); c.Name != tt.wantName {
				t.Errorf("status name = %q, want %q", c.Name, tt.wantName)
			}

			// The next burst shares the same pointer.
			a.end(t, outcome{End: collectors.EndIdle})
			b := h.col.waitBurst(t, "c1", 2)
			if b.spec.Meta != a.spec.Meta {
				t.Errorf("the next burst got another Meta pointer")
			}
			if m := b.spec.Meta.Load(); m.Name != tt.wantName {
				t.Errorf("next burst's Meta name = %q, want %q", m.Name, tt.wantName)
			}
		})
	}
}

func TestBurstEnd(t *testing.T) {
	// What follows the end of a burst. Without backoff the initial interval
	// is an hour: a burst that went through backoff would never come.
	tests := []struct {
		name    string
		drain   bool // a stopped container's non-follow burst
		end     outcome
		backoff bool
	}{
		{name: "idle deadline: re-attach at once", end: outcome{End: collectors.EndIdle}},
		{name: "max burst: re-attach at once", end: outcome{End: collectors.EndMaxBurst}},
		{name: "error: back off", end: outcome{End: collectors.EndError, Err: errors.New("Error grabbing logs: boom")}, backoff: true},
		{name: "EOF while running: back off", end: outcome{End: collectors.EndEOF}, backoff: true},
		{name: "drain fails: back off", drain: true, end: outcome{End: collectors.EndError}, backoff: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const initial = 100 * time.Millisecond
			cfg := testConfig()
			cfg.Backoff.Initial, cfg.Backoff.Max = time.Hour, time.Hour
			if tt.backoff {
				cfg.Backoff.Initial, cfg.Backoff.Max = initial, 4*initial
			}
			h := newHarness(t)
			if tt.drain {
				h.src.setList(exited("c1"))
			} else {
				h.src.setList(running("c1"))
			}
			h.start(cfg)
			a := h.col.waitBurst(t, "c1", 1)
			if a.spec.Follow == tt.drain {
				t.Fatalf("%s, want follow=%v", a, !tt.drain)
			}
			x := someCursor(time.Now(), 1)
			end := tt.end
			end.Cursor, end.Lines = &x, 4
			a.end(t, end)
			if tt.backoff {
				c := h.waitState("c1", StateBackoff)
				if c.LastError == "" {
					t.Errorf("in backoff with no last error: %+v", c)
				}
			}
			b := h.col.waitBurst(t, "c1", 2)
			if b.spec.Follow == tt.drain {
				t.Errorf("%s, want follow=%v", b, !tt.drain)
			}
			if !reflect.DeepEqual(b.spec.Cursor, x) {
				t.Errorf("%s cursor = %+v, want the previous burst's %+v", b, b.spec.Cursor, x)
			}
			// The backoff is jittered by ±50% around its interval.
			if gap := b.started.Sub(a.ended); tt.backoff && gap < initial/2 {
				t.Errorf("re-attached %v after the end, want a backoff of at least %v", gap, initial/2)
			}
			c, _ := h.container("c1")
			if c.LastEnd != string(tt.end.End) || c.Lines != 4 {
				t.Errorf("status %+v, want last end %q and 4 lines", c, tt.end.End)
			}
		})
	}
}

func TestBackoffGrows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Every burst fails at once: the gaps grow exponentially, never a hot loop.
		const initial = 50 * time.Millisecond
		cfg := testConfig()
		cfg.Backoff = config.Backoff{Initial: initial, Max: time.Second, Multiplier: 2}
		h := newHarness(t)
		h.src.setList(running("c1"))
		h.col.auto = func(context.Context, *fakeBurst) (outcome, bool) {
			return outcome{End: collectors.EndError}, true
		}
		h.start(cfg)
		const n = 4
		h.col.waitBurst(t, "c1", n)
		bs := h.col.of("c1")
		for i := 1; i < n; i++ {
			<-bs[i-1].done
			gap := bs[i].started.Sub(bs[i-1].ended)
			// interval i-1 is initial*2^(i-1), jittered by ±50%; in the
			// bubble the gap is exactly the backoff drawn.
			if floor, ceil := initial<<(i-1)/2, initial<<(i-1)*3/2; gap < floor || gap > ceil {
				t.Errorf("gap before burst %d = %v, want in [%v, %v]", i+1, gap, floor, ceil)
			}
		}
	})
}

func TestBackoffResetsAfterHealthyBurst(t *testing.T) {
	// HealthyAfter: "how long a burst or events connection must last for its
	// backoff to reset". Three quick failures grow the backoff to ~400ms;
	// after a burst that lasted HealthyAfter it is back to ~50ms.
	const initial = 50 * time.Millisecond
	const healthy = time.Second
	fail := outcome{End: collectors.EndError}
	tests := []struct {
		name    string
		script  []outcome // the first bursts' ends, in order
		measure int       // the gap after this (1-based) burst
		min     time.Duration
		max     time.Duration
	}{
		// Intervals are jittered by ±50%; in the bubble a gap is exactly the
		// backoff drawn. Reset: the first interval again.
		{"error after a healthy burst", []outcome{fail, fail, fail, {End: collectors.EndError, Duration: 2 * healthy}}, 4, initial / 2, initial * 3 / 2},
		{"EOF while running after a healthy burst", []outcome{fail, fail, fail, {End: collectors.EndEOF, Duration: 2 * healthy}}, 4, initial / 2, initial * 3 / 2},
		{"error after a healthy idle burst", []outcome{fail, fail, fail, {End: collectors.EndIdle, Duration: 2 * healthy}, fail}, 5, initial / 2, initial * 3 / 2},
		// Not reset: the fourth interval, initial*8.
		{"error after short bursts keeps growing", []outcome{fail, fail, fail, fail}, 4, initial * 8 / 2, initial * 8 * 3 / 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := testConfig()
				cfg.Backoff = config.Backoff{Initial: initial, Max: time.Second, Multiplier: 2}
				cfg.HealthyAfter = healthy
				h := newHarness(t)
				h.src.setList(running("c1"))
				h.col.auto = func(_ context.Context, b *fakeBurst) (outcome, bool) {
					if b.seq <= len(tt.script) {
						return tt.script[b.seq-1], true
					}
					return outcome{}, false
				}
				h.start(cfg)
				next := h.col.waitBurst(t, "c1", tt.measure+1)
				prev := h.col.of("c1")[tt.measure-1]
				<-prev.done
				gap := next.started.Sub(prev.ended)
				if gap < tt.min || gap > tt.max {
					t.Errorf("gap after burst %d = %v, want in [%v, %v]", tt.measure, gap, tt.min, tt.max)
				}
			})
		})
	}
}

func TestSubscribeFailsAtStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const fails = 3
		cfg := testConfig()
		cfg.InitialPosition = config.InitialPositionEnd
		h := newHarness(t)
		h.src.setFails(fails)
		h.src.setList(running("c1"))
		h.start(cfg)

		waitFor(t, "two failed Subscribe calls", func() bool { return len(h.src.subscribeCalls()) >= 2 })
		if st := h.status(); h.m.Connected() || st.Connected || len(st.Containers) != 0 {
			t.Errorf("while Subscribe fails: Connected()=%v, status %+v; want disconnected and nothing known", h.m.Connected(), st)
		}
		if e, st := h.m.ConnectError(), h.status(); e == "" || st.EventsError != e {
			t.Errorf("while Subscribe fails: ConnectError() %q, status events_error %q; want the Subscribe error in both", e, st.EventsError)
		}
		h.src.waitStream(t, 1)
		waitFor(t, "Connected() after Subscribe succeeded", h.m.Connected)
		if e, st := h.m.ConnectError(), h.status(); e != "" || st.EventsError != "" {
			t.Errorf("connected: ConnectError() %q, status events_error %q; want both empty", e, st.EventsError)
		}
		calls := h.src.subscribeCalls()
		if len(calls) != fails+1 {
			t.Fatalf("%d Subscribe calls, want %d", len(calls), fails+1)
		}
		for i := 1; i < len(calls); i++ {
			if gap, floor := calls[i].at.Sub(calls[i-1].at), cfg.Backoff.Initial<<(i-1)/2; gap < floor || gap > 3*floor {
				t.Errorf("Subscribe retry %d came %v after the previous, want in [%v, %v]", i, gap, floor, 3*floor)
			}
		}
		// The first snapshot is the one that succeeded: "end" is its time.
		b := h.col.waitBurst(t, "c1", 1)
		if thr := b.spec.Cursor.Threshold; thr.Before(calls[fails-1].at) || thr.After(calls[fails].at) {
			t.Errorf("threshold %v, want the successful subscription's time in [%v, %v]", thr, calls[fails-1].at, calls[fails].at)
		}
	})
}

func TestReconnectReconciles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.InitialPosition = config.InitialPositionEnd
		h := newHarness(t)
		h.src.setList(running("old"), exited("oldx"), running("keep"))
		h.start(cfg)
		s1 := h.src.waitStream(t, 1)
		waitFor(t, "Connected()", h.m.Connected)
		oldB := h.col.waitBurst(t, "old", 1)
		keepB := h.col.waitBurst(t, "keep", 1)

		if _, ok := lookup(h.status(), "oldx"); !ok {
			t.Fatalf("oldx unknown after the first snapshot")
		}

		// While disconnected: "old" and "oldx" are removed, "new" and "newx" appear.
		h.src.hold()
		h.src.setFails(3)
		h.src.setList(running("keep"), running("new"), exited("newx"))
		s1.fail(errors.New("read: connection reset by peer"))
		waitFor(t, "Connected() false after the stream failed", func() bool { return !h.m.Connected() })
		if st := h.status(); st.Connected {
			t.Errorf("status says connected after the stream failed")
		}
		if e := h.m.ConnectError(); !strings.Contains(e, "connection reset by peer") {
			t.Errorf("ConnectError() %q after the stream failed; want the stream's error", e)
		}
		waitFor(t, "the failed stream to be closed", s1.isClosed)
		h.src.release()
		s2 := h.src.waitStream(t, 2)
		waitFor(t, "Connected() after the reconnect", h.m.Connected)
		st := h.sync(s2)
		if !st.Connected {
			t.Errorf("status says disconnected after the reconnect")
		}
		calls := h.src.subscribeCalls()
		if len(calls) != 5 {
			t.Errorf("%d Subscribe calls, want 5 (1 + 3 failures + 1)", len(calls))
		}
		for i := 2; i < len(calls); i++ {
			if gap := calls[i].at.Sub(calls[i-1].at); gap < cfg.Backoff.Initial/2 {
				t.Errorf("Subscribe retry %d came %v after the previous, want a backoff >= %v", i, gap, cfg.Backoff.Initial/2)
			}
		}

		// Not listed any more: forgotten at once when no burst runs, else once
		// its burst returns (here at its idle deadline: only the snapshot says
		// the container is gone).
		if _, ok := lookup(st, "oldx"); ok {
			t.Errorf("oldx still known after a snapshot without it: %+v", st)
		}
		if _, ok := lookup(st, "old"); !ok {
			t.Errorf("old forgotten while its burst still runs")
		}
		oldB.end(t, outcome{End: collectors.EndIdle})
		h.waitGone("old")
		if n := len(h.col.of("old")); n != 1 {
			t.Errorf("%d bursts of old, want 1", n)
		}
		// New containers are read from their beginning (only the first
		// snapshot starts at the end).
		nb := h.col.waitBurst(t, "new", 1)
		if !nb.spec.Follow || !nb.spec.Cursor.IsBeginning() {
			t.Errorf("%s cursor %+v, want a follow burst from the beginning", nb, nb.spec.Cursor)
		}
		xb := h.col.waitBurst(t, "newx", 1)
		if xb.spec.Follow || !xb.spec.Cursor.IsBeginning() {
			t.Errorf("%s cursor %+v, want a drain from the beginning", xb, xb.spec.Cursor)
		}
		xb.end(t, outcome{End: collectors.EndEOF})
		h.waitState("newx", StateStopped)
		// "keep" is untouched.
		if n := len(h.col.of("keep")); n != 1 || keepB.returned() {
			t.Errorf("keep: %s, want its first burst still running", h.col.describe("keep"))
		}
	})
}

func TestReconnectSince(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"after a stream error", io.ErrUnexpectedEOF},
		{"after the idle deadline", fmt.Errorf("read events: %w", os.ErrDeadlineExceeded)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.start(testConfig())
			s1 := h.src.waitStream(t, 1)
			first := h.src.subscribeCalls()[0]
			if first.since.Before(h.started) || first.since.After(first.at) {
				t.Errorf("first since = %v, want berth's start in [%v, %v]", first.since, h.started, first.at)
			}
			e1, e2 := h.ev("start", "c1"), h.ev("start", "c2")
			s1.send(e1, e2)
			c1 := h.col.waitBurst(t, "c1", 1)
			h.col.waitBurst(t, "c2", 1).end(t, outcome{End: collectors.EndEOF, Stopped: true, Gone: true})
			h.waitGone("c2")

			h.src.setList(running("c1"))
			s1.fail(tt.err)
			s2 := h.src.waitStream(t, 2)
			calls := h.src.subscribeCalls()
			if since := calls[len(calls)-1].since; !since.Equal(e2.Time) {
				t.Errorf("reconnect since = %v, want the last event's time %v", since, e2.Time)
			}
			// since is inclusive: the daemon replays the events at e2's time.
			// One of them is new (another container, same nanosecond).
			c4 := Event{ID: "c4", Action: "start", Time: e2.Time, Attributes: map[string]string{"name": "c4"}}
			e3 := h.ev("start", "c3")
			s2.send(e2, c4, e3)
			st := h.sync(s2)
			if _, ok := lookup(st, "c2"); ok {
				t.Errorf("the replayed start of c2 was applied again: %+v", st)
			}
			if n := len(h.col.of("c2")); n != 1 {
				t.Errorf("%d bursts of c2, want 1", n)
			}
			h.col.waitBurst(t, "c4", 1)
			h.col.waitBurst(t, "c3", 1)
			if n := len(h.col.of("c1")); n != 1 || c1.returned() {
				t.Errorf("c1: %s, want its first burst still running", h.col.describe("c1"))
			}

			s2.fail(tt.err)
			h.src.waitStream(t, 3)
			calls = h.src.subscribeCalls()
			if since := calls[len(calls)-1].since; !since.Equal(e3.Time) {
				t.Errorf("second reconnect since = %v, want the last event's time %v", since, e3.Time)
			}
		})
	}
}

func TestShutdown(t *testing.T) {
	tests := []struct {
		name  string
		setup func(h *harness)
		ready func(t *testing.T, h *harness)
	}{
		{
			name: "bursts blocked",
			setup: func(h *harness) {
				h.src.setList(running("a"), running("b"), exited("c"))
				h.col.shutdownDelay = 30 * time.Millisecond
			},
			ready: func(t *testing.T, h *harness) {
				for _, id := range []string{"a", "b", "c"} {
					h.col.waitBurst(t, id, 1)
				}
			},
		},
		{
			name: "a container in backoff, another streaming",
			setup: func(h *harness) {
				h.src.setList(running("a"), running("b"))
				h.col.auto = func(_ context.Context, b *fakeBurst) (outcome, bool) {
					return outcome{End: collectors.EndError}, b.spec.ID == "a"
				}
			},
			ready: func(t *testing.T, h *harness) {
				h.col.waitBurst(t, "b", 1)
				h.col.waitBurst(t, "a", 2)
				h.waitState("a", StateBackoff)
			},
		},
		{
			name:  "events subscription failing",
			setup: func(h *harness) { h.src.setFails(1 << 30) },
			ready: func(t *testing.T, h *harness) {
				waitFor(t, "two failed Subscribe calls", func() bool { return len(h.src.subscribeCalls()) >= 2 })
			},
		},
		{
			name:  "Subscribe blocked",
			setup: func(h *harness) { h.src.hold() },
			ready: func(t *testing.T, h *harness) { h.status() },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			tt.setup(h)
			h.start(testConfig())
			tt.ready(t, h)
			h.cancel()
			select {
			case <-h.done:
			case <-time.After(waitTimeout):
				t.Fatalf("Run did not return within %v of cancel", waitTimeout)
			}
			if h.err != nil {
				t.Errorf("Run returned %v", h.err)
			}
			for _, b := range h.col.all() {
				if !b.returned() {
					t.Errorf("Run returned before %s did", b)
				}
			}
			h.src.mu.Lock()
			for i, s := range h.src.streams {
				if !s.isClosed() {
					t.Errorf("events stream %d left open", i+1)
				}
			}
			h.src.mu.Unlock()
			if h.m.Connected() {
				t.Errorf("Connected() after Run returned")
			}
			h.src.release()
			goleak.VerifyNone(t)
		})
	}
}

// TestStatusLinesMoveDuringBurst: a container's lines count and newest
// timestamp show what its running burst has delivered so far, not only what
// finished bursts did, and the burst's result does not count those lines
// twice.
func TestStatusLinesMoveDuringBurst(t *testing.T) {
	h := newHarness(t)
	h.src.setList(running("c1"))
	h.start(testConfig())
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	var last string
	waitStatus := func(what string, lines int64, newest time.Time) {
		t.Helper()
		waitFor(t, what, func() bool {
			c, ok := h.container("c1")
			if !ok {
				last = "c1 not listed"
				return false
			}
			last = fmt.Sprintf("%+v", c)
			return c.Lines == lines && c.Newest.Equal(newest)
		}, func() string { return last })
	}

	a := h.waitActiveFollow("c1")
	a.deliver(t, 3, t0.Add(3*time.Second))
	waitStatus("status to show the 3 lines the running burst #1 delivered, newest at +3s", 3, t0.Add(3*time.Second))
	a.deliver(t, 2, t0.Add(5*time.Second))
	waitStatus("status to show the 5 lines the running burst #1 delivered, newest at +5s", 5, t0.Add(5*time.Second))
	if a.returned() {
		t.Fatalf("%s returned: the counts were not taken during the burst", a)
	}
	cur1 := logs.BeginningCursor()
	cur1.Streams[0].Time = t0.Add(5 * time.Second)
	a.end(t, outcome{End: collectors.EndIdle, Lines: 5, Unparsed: 2, Cursor: &cur1})

	// The idle end re-attaches at once; the next burst starts from 5.
	b := h.col.waitBurst(t, "c1", 2)
	waitStatus("status to show burst #1's 5 lines once, after it ended", 5, t0.Add(5*time.Second))
	b.deliver(t, 4, t0.Add(9*time.Second))
	waitStatus("status to show burst #1's 5 lines plus the 4 running burst #2 delivered, newest at +9s", 9, t0.Add(9*time.Second))
	cur2 := cur1
	cur2.Streams[0].Time = t0.Add(9 * time.Second)
	b.end(t, outcome{End: collectors.EndIdle, Lines: 4, Unparsed: 1, Cursor: &cur2})
	h.col.waitBurst(t, "c1", 3)
	waitStatus("status to show 9 lines after burst #2 ended", 9, t0.Add(9*time.Second))
	// The lines sent as they are (not in the berth.parse format) add up
	// over the bursts.
	if c, _ := h.container("c1"); c.Unparsed != 3 {
		t.Errorf("unparsed_lines %d after bursts that sent 2 and 1, want 3", c.Unparsed)
	}
}

// TestQuietContainerPositionIsSeeded: a container that exists when berth
// first starts, read from its end, gets that position saved at once (it may
// never have a line acknowledged, and a restart must not move it to the new
// end); one with a checkpoint, or read from its beginning, or found later,
// needs none.
func TestQuietContainerPositionIsSeeded(t *testing.T) {
	for _, pos := range []string{config.InitialPositionEnd, config.InitialPositionBeginning} {
		t.Run(pos, func(t *testing.T) {
			cps := &memCheckpoints{cursors: map[string]logs.Cursor{"known": someCursor(time.Now(), 1)}}
			h := newHarness(t)
			h.cps = cps
			h.src.setList(running("quiet"), exited("stopped"), running("known"))
			cfg := testConfig()
			cfg.InitialPosition = pos
			h.start(cfg)
			s1 := h.src.waitStream(t, 1)
			h.col.waitBurst(t, "quiet", 1)
			h.docker(s1, "start", "later")
			h.col.waitBurst(t, "later", 1)
			want := []string{"quiet", "stopped"}
			if pos == config.InitialPositionBeginning {
				want = nil
			}
			if got := cps.seeds(); !slices.Equal(got, want) {
				t.Errorf("seeded %v, want %v", got, want)
			}
			if c, _ := cps.Get("quiet"); pos == config.InitialPositionEnd && (c.Threshold.Before(h.started) || c.Threshold.After(time.Now())) {
				t.Errorf("quiet's seed %+v, want the start's time as threshold", c)
			}
		})
	}
}

// TestSelfExcluded: berth's own container (passed to NewManager) is known
// and shown as excluded, and never read: not when listed running at the
// start, not after a restart, not seeded; its removal forgets it.
func TestSelfExcluded(t *testing.T) {
	cps := &memCheckpoints{cursors: map[string]logs.Cursor{}}
	h := newHarness(t)
	h.cps = cps
	h.self = []string{"self"}
	h.src.setList(running("self"), running("other"))
	cfg := testConfig()
	cfg.InitialPosition = config.InitialPositionEnd
	h.start(cfg)
	s := h.src.waitStream(t, 1)
	h.col.waitBurst(t, "other", 1)
	h.waitState("self", StateExcluded)
	h.docker(s, "die", "self")
	h.docker(s, "start", "self")
	h.docker(s, "create", "new")
	h.docker(s, "start", "new")
	h.col.waitBurst(t, "new", 1)
	st := h.sync(s)
	if c, ok := lookup(st, "self"); !ok || c.State != StateExcluded {
		t.Errorf("after its restart: %+v, want self excluded", st)
	}
	if n := len(h.col.of("self")); n != 0 {
		t.Errorf("%d bursts of berth's own container, want none; %s", n, h.col.describe("self"))
	}
	if got := cps.seeds(); slices.Contains(got, "self") {
		t.Errorf("seeded %v: berth's own container must have no position", got)
	}
	h.docker(s, "destroy", "self")
	h.waitGone("self")
}

// recordingCheckpoints records the manager's Track and Forget calls.
type recordingCheckpoints struct {
	mu    sync.Mutex
	calls []string
}

func (c *recordingCheckpoints) Get(string) (logs.Cursor, bool) { return logs.Cursor{}, false }
func (c *recordingCheckpoints) IDs() []string                  { return nil }
func (c *recordingCheckpoints) Seed(string, logs.Cursor)       {}
func (c *recordingCheckpoints) Track(id string)                { c.add("track " + id) }
func (c *recordingCheckpoints) Forget(id string)               { c.add("forget " + id) }
func (c *recordingCheckpoints) add(call string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, call)
}
func (c *recordingCheckpoints) list() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprint(c.calls)
}

// TestCheckpointsTrackedBeforeBurst: the store learns of a container before
// its first burst (so that its acknowledgements are kept) and forgets it
// when it is gone (so that late ones are not).
func TestCheckpointsTrackedBeforeBurst(t *testing.T) {
	h := newHarness(t)
	store := &recordingCheckpoints{}
	h.cps = store
	h.start(testConfig())
	s := h.src.waitStream(t, 1)
	s.send(h.ev("start", "c1"))
	b := h.col.waitBurst(t, "c1", 1)
	if got := store.list(); got != "[track c1]" {
		t.Fatalf("at the first burst the store saw %s, want [track c1]", got)
	}
	s.send(h.ev("destroy", "c1"))
	b.end(t, outcome{End: collectors.EndEOF, Stopped: true, Gone: true})
	h.waitGone("c1")
	if got := store.list(); got != "[track c1 forget c1]" {
		t.Fatalf("the store saw %s, want [track c1 forget c1]", got)
	}
}

// TestAutoRemoveIsNotDrained: a docker run --rm container whose follow burst
// ends because it stopped is not read again: the daemon is removing it with
// its log, and a logs request for a stopped container makes Docker re-create
// the log file, which can make that removal fail. Any other container that
// stopped is drained.
func TestAutoRemoveIsNotDrained(t *testing.T) {
	for _, autoRemove := range []bool{true, false} {
		t.Run(fmt.Sprintf("auto_remove=%v", autoRemove), func(t *testing.T) {
			h := newHarness(t)
			h.col.meta = map[string]logs.Meta{"job": {ID: "job", Name: "job", ServiceName: "job", Running: true, AutoRemove: autoRemove}}
			h.start(testConfig())
			s := h.src.waitStream(t, 1)
			h.docker(s, "start", "job")
			b := h.col.waitBurst(t, "job", 1)
			h.docker(s, "die", "job")
			b.end(t, outcome{End: collectors.EndEOF, Stopped: true})
			if autoRemove {
				h.waitState("job", StateStopped)
				h.sync(s)
				if n := len(h.col.of("job")); n != 1 {
					t.Fatalf("%d bursts of a --rm container, want only its follow burst; %s", n, h.col.describe("job"))
				}
				return
			}
			if d := h.col.waitBurst(t, "job", 2); d.spec.Follow {
				t.Fatalf("%s, want a drain (follow=false)", d)
			}
		})
	}
}

// TestQuietCountsEmptyIdleBursts: each follow burst that ends at its idle
// (or max_burst) deadline without a line makes the next one's Quiet one
// more, so that the collector gives it a longer idle deadline; a burst that
// read a line, or an error, sets it back to 0.
func TestQuietCountsEmptyIdleBursts(t *testing.T) {
	cfg := testConfig()
	cfg.Backoff = config.Backoff{Initial: time.Millisecond, Max: time.Millisecond, Multiplier: 1}
	h := newHarness(t)
	h.src.setList(running("c1"))
	h.start(cfg)
	steps := []struct {
		end       outcome
		nextQuiet int
	}{
		{outcome{End: collectors.EndIdle}, 1},
		{outcome{End: collectors.EndIdle}, 2},
		{outcome{End: collectors.EndMaxBurst}, 3},
		{outcome{End: collectors.EndIdle, Lines: 1}, 0}, // it wrote: short deadline again
		{outcome{End: collectors.EndIdle}, 1},
		{outcome{End: collectors.EndIdle}, 2},
	}
	n := 1
	for i, s := range steps {
		b := h.col.waitBurst(t, "c1", n)
		b.end(t, s.end)
		n++
		next := h.col.waitBurst(t, "c1", n)
		if next.spec.Quiet != s.nextQuiet {
			t.Fatalf("step %d: after %+v the next burst has Quiet %d, want %d", i, s.end, next.spec.Quiet, s.nextQuiet)
		}
	}
	// A failed burst: the next one starts from the short deadline.
	h.col.waitBurst(t, "c1", n).end(t, outcome{End: collectors.EndError})
	n++
	if q := h.col.waitBurst(t, "c1", n).spec.Quiet; q != 0 {
		t.Fatalf("after an error the next burst has Quiet %d, want 0", q)
	}
}
