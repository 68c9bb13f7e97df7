// Package events holds berth's one Docker events subscription and the state
// machine of every container. One goroutine, the manager, owns all container
// state; the subscriber and the bursts report to it on channels.
package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/berthlog/berth/collectors"
	"github.com/berthlog/berth/logs"
)

// State is where a container is in its lifecycle as berth sees it.
type State string

// The states of a container.
const (
	StateDiscovered State = "discovered" // known, nothing to read yet
	StateStreaming  State = "streaming"  // a burst is reading its log
	StateBackoff    State = "backoff"    // waiting to re-attach after a failed or empty burst
	StateStopped    State = "stopped"    // not running, its log read to the end
	StateRemoved    State = "removed"    // destroyed; forgotten once its last burst ends
)

// Position is where berth starts on a log it has no cursor for.
type Position string

// The start positions.
const (
	PositionBeginning Position = "beginning"
	PositionEnd       Position = "end"
)

// Backoff configures a retry loop: exponential, jittered, capped.
type Backoff struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64
}

func (b Backoff) newBackOff() *backoff.ExponentialBackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = b.Initial
	bo.MaxInterval = b.Max
	bo.Multiplier = b.Multiplier
	bo.RandomizationFactor = 0.5
	bo.MaxElapsedTime = 0 // retry for as long as berth runs
	bo.Reset()
	return bo
}

// Config tunes the manager.
type Config struct {
	// InitialPosition applies to containers that exist when berth starts and
	// have no cursor. Containers that appear later are read from their
	// beginning.
	InitialPosition Position
	// Backoff paces re-attaching after failed or empty bursts, and
	// reconnecting the events stream.
	Backoff Backoff
	// HealthyAfter is how long a burst or events connection must last for
	// its backoff to reset.
	HealthyAfter time.Duration
	// Checkpoints, if set, gives the delivered position of containers berth
	// read before it restarted; they take precedence over InitialPosition.
	Checkpoints Checkpoints
	Logger      *slog.Logger
	// Observer, if set, counts events (re)connections.
	Observer Observer
	// Tracer, if set, traces each (re)connection and reconcile.
	Tracer trace.Tracer
}

// Observer counts what the subscriber does (berth's metrics implement it).
type Observer interface {
	EventsConnected()
}

type nopObserver struct{}

func (nopObserver) EventsConnected() {}

// Checkpoints is the manager's view of the checkpoint store.
type Checkpoints interface {
	Get(id string) (logs.Cursor, bool)
	Forget(id string)
	IDs() []string
}

// noCheckpoints is the store of a berth that keeps none.
type noCheckpoints struct{}

func (noCheckpoints) Get(string) (logs.Cursor, bool) { return logs.Cursor{}, false }
func (noCheckpoints) Forget(string)                  {}
func (noCheckpoints) IDs() []string                  { return nil }

// Manager runs the events subscription and the containers' state machines.
type Manager struct {
	src Source
	col Collector
	cfg Config
	log *slog.Logger

	statusReq chan chan Status
	connected atomic.Bool
	stopped   chan struct{} // closed when Run returns
}

// ErrNotRunning says the manager is not running (it stopped, or never ran).
var ErrNotRunning = errors.New("manager is not running")

// NewManager returns a Manager. Run starts it.
func NewManager(src Source, col Collector, cfg Config) *Manager {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HealthyAfter <= 0 {
		cfg.HealthyAfter = 10 * time.Second
	}
	if cfg.Checkpoints == nil {
		cfg.Checkpoints = noCheckpoints{}
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.Tracer == nil {
		cfg.Tracer = tracenoop.NewTracerProvider().Tracer("berth")
	}
	return &Manager{src: src, col: col, cfg: cfg, log: cfg.Logger, statusReq: make(chan chan Status), stopped: make(chan struct{})}
}

// Connected reports whether the events stream is subscribed and reconciled.
func (m *Manager) Connected() bool { return m.connected.Load() }

// container is the manager's state of one container.
type container struct {
	id      string
	meta    atomic.Pointer[logs.Meta] // shared with its burst; replaced on rename
	name    string
	cursor  logs.Cursor
	running bool // the daemon last said it runs
	drained bool // its log has been read to the end since it last stopped
	removed bool
	active  bool // a burst is running
	follow  bool // the active burst follows
	retryAt time.Time
	bo      *backoff.ExponentialBackOff
	state   State
	lines   int64 // lines of its finished bursts
	lastErr string
	lastEnd collectors.EndReason
	// progress is what the active burst has delivered so far. The burst
	// updates it per batch (BurstSpec.Progress); the manager reads it for
	// Status and resets it when it launches a burst and when it takes the
	// burst's result, whose cursor and lines then hold the same. Nothing
	// else of the container is shared.
	progress collectors.BurstProgress

	// starts counts the signs that it (re)started: start events, and
	// snapshots that list it running again. A follow burst's "stopped"
	// comes from an inspect that may predate a start seen while it ran.
	starts         int
	startsAtLaunch int // starts when the active burst was launched

	// unreadable says its logging driver cannot be read through the API:
	// no burst until it starts again (it may have been recreated).
	unreadable bool
}

// run is the state of one Run call, owned by its goroutine.
type run struct {
	*Manager
	ctx        context.Context
	containers map[string]*container
	results    chan collectors.BurstResult
	bursts     sync.WaitGroup
	active     int
	stopping   bool
}

// sourceMsg is what the subscriber reports.
type sourceMsg struct {
	snapshot []Container // after each (re)connect
	at       time.Time   // when the snapshot was listed
	initial  bool        // the first snapshot since berth started
	event    *Event
	err      error // the stream is down
}

// Run subscribes to events, reconciles, and runs bursts until ctx ends; then
// it waits for the subscriber and every burst and returns nil.
func (m *Manager) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &run{
		Manager:    m,
		ctx:        ctx,
		containers: make(map[string]*container),
		results:    make(chan collectors.BurstResult),
	}
	msgs := make(chan sourceMsg)
	var sub sync.WaitGroup
	sub.Add(1)
	go func() {
		defer sub.Done()
		m.subscribe(ctx, time.Now(), msgs)
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		r.armTimer(timer)
		select {
		case <-ctx.Done():
			r.stopping = true
			for r.active > 0 {
				r.finish(<-r.results)
			}
			r.bursts.Wait()
			sub.Wait()
			m.connected.Store(false)
			close(m.stopped)
			return nil
		case msg := <-msgs:
			r.handleSource(msg)
		case res := <-r.results:
			r.finish(res)
		case <-timer.C:
			r.wake()
		case reply := <-m.statusReq:
			reply <- r.status()
		}
	}
}

// subscribe keeps one events subscription open: subscribe, then list and
// reconcile (a list taken first would miss what happens in between), then
// forward events; reconnect with since after every end, backing off after
// failures.
func (m *Manager) subscribe(ctx context.Context, since time.Time, out chan<- sourceMsg) {
	bo := m.cfg.Backoff.newBackOff()
	var dedup eventDedup
	initial := true
	send := func(msg sourceMsg) bool {
		select {
		case out <- msg:
			return true
		case <-ctx.Done():
			return false
		}
	}
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		connected := time.Now()
		_, span := m.cfg.Tracer.Start(ctx, "berth.events.connect", trace.WithAttributes(attribute.Bool("initial", initial)))
		stream, err := m.src.Subscribe(ctx, since)
		var list []Container
		if err == nil {
			if list, err = m.src.List(ctx); err != nil {
				_ = stream.Close()
			}
		}
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		} else {
			span.SetAttributes(attribute.Int("containers", len(list)))
			m.cfg.Observer.EventsConnected()
		}
		span.End()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d := bo.NextBackOff()
			m.log.Warn("docker events unavailable; retrying", "err", err, "retry_in", d.Round(time.Millisecond))
			if !send(sourceMsg{err: err}) || !wait(d) {
				return
			}
			continue
		}
		if !send(sourceMsg{snapshot: list, at: connected, initial: initial}) {
			_ = stream.Close()
			return
		}
		initial = false
		for {
			ev, err := stream.Next()
			if err != nil {
				_ = stream.Close()
				if ctx.Err() != nil {
					return
				}
				if time.Since(connected) >= m.cfg.HealthyAfter {
					bo.Reset()
				}
				if isIdle(err) {
					// A quiet daemon: reconnect at once, cheaply.
					m.log.Debug("docker events stream idle; reconnecting", "since", since)
					break
				}
				d := bo.NextBackOff()
				m.log.Warn("docker events stream ended; reconnecting", "err", err, "retry_in", d.Round(time.Millisecond))
				if !send(sourceMsg{err: err}) || !wait(d) {
					return
				}
				break
			}
			if dedup.replayed(ev) {
				continue
			}
			if ev.Time.After(since) {
				since = ev.Time
			}
			if !send(sourceMsg{event: &ev}) {
				_ = stream.Close()
				return
			}
		}
	}
}

// eventDedup drops the events a reconnect with since replays (since is
// inclusive, and berth asks from the newest event it saw). It remembers the
// events of the last dedupWindow before the newest one by identity, not by
// order: the daemon publishes concurrent containers' events slightly out of
// time order, and a live event older than the newest is not a replay.
type eventDedup struct {
	newest time.Time
	seen   map[eventKey]time.Time
}

type eventKey struct {
	id, action string
	nano       int64
}

// dedupWindow is how far before the newest event replays are recognized;
// a reconnect replays from the newest event on, so a little is plenty.
const dedupWindow = 10 * time.Second

func (d *eventDedup) replayed(ev Event) bool {
	if d.seen == nil {
		d.seen = make(map[eventKey]time.Time)
	}
	k := eventKey{ev.ID, ev.Action, ev.Time.UnixNano()}
	if _, ok := d.seen[k]; ok {
		return true
	}
	d.seen[k] = ev.Time
	if ev.Time.After(d.newest) {
		d.newest = ev.Time
		for key, t := range d.seen {
			if t.Before(d.newest.Add(-dedupWindow)) {
				delete(d.seen, key)
			}
		}
	}
	return false
}

// handleSource applies a snapshot, an event or a disconnection.
func (r *run) handleSource(msg sourceMsg) {
	switch {
	case msg.err != nil:
		r.connected.Store(false)
	case msg.event != nil:
		r.handleEvent(*msg.event)
	default:
		r.reconcile(msg)
		r.connected.Store(true)
	}
}

// reconcile brings the state machines in line with the daemon's list.
func (r *run) reconcile(msg sourceMsg) {
	listed := make(map[string]bool, len(msg.snapshot))
	for _, c := range msg.snapshot {
		listed[c.ID] = true
		ct, known := r.containers[c.ID]
		if !known {
			cursor, checkpointed := r.cfg.Checkpoints.Get(c.ID)
			if !checkpointed {
				cursor = logs.BeginningCursor()
				if msg.initial && r.cfg.InitialPosition == PositionEnd {
					// Lines written before berth started are not sent; with
					// a threshold instead of "tail=0" nothing is lost between
					// bursts, and a stopped container has nothing to read.
					cursor = logs.EndCursor(msg.at)
				}
			}
			ct = r.add(c.ID, c.Name, cursor)
			ct.running = c.Running()
			// A created container never ran: it has no log yet. A stopped
			// one read from its end has nothing new; with a checkpoint it
			// may have written after berth stopped.
			ct.drained = !ct.running && ((!cursor.Threshold.IsZero() && !checkpointed) || c.State == "created")
			if !ct.running && c.State != "created" {
				ct.state = StateStopped
			}
		} else {
			wasRunning := ct.running
			ct.running = c.Running()
			if wasRunning && !ct.running {
				ct.drained = false
			}
			if !wasRunning && ct.running {
				ct.retryAt = time.Time{}
				ct.starts++
			}
		}
		r.step(ct)
	}
	for id, ct := range r.containers {
		if !listed[id] {
			ct.removed, ct.running = true, false
			r.step(ct)
		}
	}
	if msg.initial {
		// Containers removed while berth was not running.
		for _, id := range r.cfg.Checkpoints.IDs() {
			if !listed[id] {
				r.cfg.Checkpoints.Forget(id)
			}
		}
	}
}

// handleEvent applies one container event. Events may repeat or arrive late
// (after a reconnect, or relative to a snapshot): every transition is
// idempotent, and a follow burst on a container that has in fact stopped ends
// at once and reports it.
func (r *run) handleEvent(ev Event) {
	r.log.Debug("docker event", "action", ev.Action, "id", short(ev.ID), "name", ev.Attributes["name"])
	ct := r.containers[ev.ID]
	switch ev.Action {
	case "create":
		if ct == nil {
			ct = r.add(ev.ID, ev.Attributes["name"], logs.BeginningCursor())
			ct.drained = true
		}
	case "start", "restart", "unpause":
		if ct == nil {
			ct = r.add(ev.ID, ev.Attributes["name"], logs.BeginningCursor())
		}
		ct.running = true
		ct.starts++
		ct.retryAt = time.Time{}
		ct.unreadable = false
	case "die", "stop":
		if ct == nil {
			// Its start was missed (events lost while disconnected): read
			// the log it wrote.
			ct = r.add(ev.ID, ev.Attributes["name"], logs.BeginningCursor())
			ct.drained = false
		}
		if ct.running || ct.active {
			ct.drained = false
		}
		ct.running = false
		ct.retryAt = time.Time{}
	case "destroy":
		if ct == nil {
			return
		}
		ct.removed, ct.running = true, false
	case "rename":
		if ct == nil {
			return
		}
		r.rename(ct, ev.Attributes["name"])
	default: // pause, kill, oom: the stream and die tell the rest
		if ct == nil {
			return
		}
	}
	r.step(ct)
}

// add starts tracking a container, from its checkpoint if it has one.
func (r *run) add(id, name string, cursor logs.Cursor) *container {
	if cp, ok := r.cfg.Checkpoints.Get(id); ok {
		cursor = cp
	}
	ct := &container{id: id, name: name, cursor: cursor, state: StateDiscovered, drained: true}
	r.containers[id] = ct
	return ct
}

// rename publishes a new Meta with the new name: the active burst uses it
// from its next batch on.
func (r *run) rename(ct *container, name string) {
	if name == "" {
		return
	}
	ct.name = name
	if old := ct.meta.Load(); old != nil {
		m := *old
		if m.ServiceName == m.Name {
			m.ServiceName = name
		}
		m.Name = name
		ct.meta.Store(&m)
	}
}

// step decides what a container needs next: a burst, a wait, or nothing.
func (r *run) step(ct *container) {
	switch {
	case ct.active:
		ct.state = StateStreaming
	case ct.removed:
		ct.state = StateRemoved
		delete(r.containers, ct.id)
		r.cfg.Checkpoints.Forget(ct.id)
	case r.stopping:
	case ct.unreadable:
		ct.state = StateStopped
	case ct.running || !ct.drained:
		if time.Now().Before(ct.retryAt) {
			ct.state = StateBackoff
			return
		}
		ct.retryAt = time.Time{}
		r.launch(ct, ct.running)
	case ct.state == StateDiscovered:
		// created, never started: nothing to read yet
	default:
		ct.state = StateStopped
	}
}

// launch starts a burst. Its goroutine is owned by the run: Run waits for
// every one before it returns.
func (r *run) launch(ct *container, follow bool) {
	ct.active, ct.follow, ct.state = true, follow, StateStreaming
	ct.startsAtLaunch = ct.starts
	r.log.Debug("burst starts", "container", ct.name, "id", short(ct.id), "follow", follow,
		"since", ct.cursor.Since(), "beginning", ct.cursor.IsBeginning())
	r.active++
	ct.resetProgress()
	spec := collectors.BurstSpec{ID: ct.id, Follow: follow, Cursor: ct.cursor, Meta: &ct.meta, Progress: &ct.progress}
	r.bursts.Add(1)
	go func() {
		defer r.bursts.Done()
		r.results <- r.col.Burst(r.ctx, spec)
	}()
}

// finish takes a burst's result and decides what comes next.
func (r *run) finish(res collectors.BurstResult) {
	r.active--
	ct := r.containers[res.ID]
	if ct == nil {
		return
	}
	ct.active = false
	r.log.Debug("burst ended", "container", ct.name, "id", short(ct.id), "follow", res.Follow, "end", res.End,
		"lines", res.Lines, "bytes", res.Bytes, "requests", res.Requests, "duration", res.Duration.Round(time.Millisecond),
		"stopped", res.Stopped, "restarted", res.Restarted, "gone", res.Gone, "err", res.Err)
	ct.cursor = res.Cursor
	// The burst has returned: its progress no longer moves, and res holds
	// the same.
	ct.lines += res.Lines
	ct.resetProgress()
	ct.lastEnd = res.End
	if res.Gone {
		ct.removed, ct.running = true, false
	}
	if res.Duration >= r.cfg.HealthyAfter && ct.bo != nil {
		ct.bo.Reset()
	}
	if res.End != collectors.EndError && res.Lines > 0 {
		ct.lastErr = ""
	}
	switch res.End {
	case collectors.EndShutdown:
	case collectors.EndEOF:
		if !res.Follow {
			ct.drained = true
			break
		}
		if res.Stopped {
			ct.drained = false // read what is left without follow
			if ct.starts == ct.startsAtLaunch {
				ct.running = false // the die event may still be on its way
			}
			// Otherwise it started again while the burst ran (a restart):
			// the inspect may predate that start, so the event wins and a
			// follow burst re-attaches; if the container is in fact stopped
			// that burst ends at once, with no new start, and drains.
			break
		}
		if res.Restarted {
			// It stopped and started again during the burst (docker
			// restart): the stream's end was the stop; re-attach at once.
			ct.running = true
			break
		}
		if ct.running {
			// A follow stream on a running container must not end: back off
			// rather than re-attach in a hot loop.
			r.backOff(ct, errors.New("logs stream ended while the container runs"))
		}
	case collectors.EndIdle, collectors.EndMaxBurst:
		// a normal end: re-attach at once
	case collectors.EndError:
		if res.Gone {
			// Removed (or being removed): nothing to retry, no fault to report.
			r.log.Debug("container gone", "container", ct.name, "id", short(ct.id), "err", res.Err)
			break
		}
		if errors.Is(res.Err, collectors.ErrLogsUnsupported) {
			ct.unreadable = true
			ct.lastErr = res.Err.Error()
			r.log.Warn("container logs cannot be read through the Docker API; skipping it until it starts again",
				"container", ct.name, "id", short(ct.id), "err", res.Err)
			break
		}
		r.backOff(ct, res.Err)
	}
	r.step(ct)
}

func (r *run) backOff(ct *container, err error) {
	if ct.bo == nil {
		ct.bo = r.cfg.Backoff.newBackOff()
	}
	d := ct.bo.NextBackOff()
	ct.retryAt = time.Now().Add(d)
	ct.lastErr = err.Error()
	r.log.Warn("log burst failed; backing off", "container", ct.name, "id", short(ct.id), "err", err, "retry_in", d.Round(time.Millisecond))
}

// armTimer sets the timer to the earliest re-attach time.
func (r *run) armTimer(t *time.Timer) {
	var next time.Time
	for _, ct := range r.containers {
		if !ct.active && !ct.retryAt.IsZero() && (next.IsZero() || ct.retryAt.Before(next)) {
			next = ct.retryAt
		}
	}
	t.Stop()
	if !next.IsZero() {
		t.Reset(max(time.Until(next), 0))
	}
}

// wake re-attaches the containers whose backoff has passed.
func (r *run) wake() {
	now := time.Now()
	for _, ct := range r.containers {
		if !ct.active && !ct.retryAt.IsZero() && !now.Before(ct.retryAt) {
			ct.retryAt = time.Time{}
			r.step(ct)
		}
	}
}

// Status is a snapshot of the manager for operators.
type Status struct {
	Connected  bool              `json:"events_connected"`
	Containers []ContainerStatus `json:"containers"`
	Streams    int               `json:"streams_open"`
}

// ContainerStatus is one container's line in Status.
type ContainerStatus struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	State     State     `json:"state"`
	Lines     int64     `json:"lines"`            // delivered so far, the running burst's batches included
	Newest    time.Time `json:"newest_timestamp"` // of the newest line delivered, the running burst's included
	LastEnd   string    `json:"last_end,omitempty"`
	LastError string    `json:"last_error,omitempty"`
}

func (r *run) status() Status {
	s := Status{Connected: r.connected.Load(), Streams: r.active}
	for _, id := range slices.Sorted(maps.Keys(r.containers)) {
		ct := r.containers[id]
		s.Containers = append(s.Containers, ContainerStatus{
			ID: short(ct.id), Name: ct.name, State: ct.state, Lines: ct.lines + ct.progress.Lines.Load(),
			Newest: laterOf(ct.cursor.Newest(), ct.progress.NewestTime()), LastEnd: string(ct.lastEnd), LastError: ct.lastErr,
		})
	}
	return s
}

// Status asks the running manager for a snapshot.
func (m *Manager) Status(ctx context.Context) (Status, error) {
	reply := make(chan Status, 1)
	select {
	case m.statusReq <- reply:
	case <-m.stopped:
		return Status{}, ErrNotRunning
	case <-ctx.Done():
		return Status{}, fmt.Errorf("manager status: %w", ctx.Err())
	}
	select {
	case s := <-reply:
		return s, nil
	case <-ctx.Done():
		return Status{}, fmt.Errorf("manager status: %w", ctx.Err())
	}
}

func short(id string) string { return id[:min(12, len(id))] }

// resetProgress zeroes the progress of the container's burst.
func (ct *container) resetProgress() {
	ct.progress.Lines.Store(0)
	ct.progress.Newest.Store(0)
}

// laterOf returns the later of a and b.
func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
