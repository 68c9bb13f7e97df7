// Package events holds berth's one Docker events subscription and the state
// machine of every container. One goroutine, the manager, owns all container
// state; the subscriber and the bursts report to it on channels.
//
// Files: manager.go (the manager and its loop), subscribe.go (the
// subscription: connect, forward, retry), dedup.go (replayed events),
// inputs.go (what snapshots and events change), selection.go (which
// containers are collected, by package selection's rules), state.go (the
// states and their one transition function), status.go (what operators see).
package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/berthlog/berth/collectors"
	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/selection"
	"github.com/berthlog/berth/telemetry"
)

// Checkpoints is the manager's view of the checkpoint store.
type Checkpoints interface {
	Get(id string) (logs.Cursor, bool)
	// Seed keeps a starting position that no acknowledgement may ever
	// confirm (a quiet container read from its end); an existing
	// checkpoint wins.
	Seed(id string, cursor logs.Cursor)
	// Track is called when the manager learns of a container, before any of
	// its bursts: from then on until Forget, its acknowledgements are kept
	// (a late one, after Forget, is not).
	Track(id string)
	Forget(id string)
	IDs() []string
}

// noCheckpoints is the store of a berth that keeps none.
type noCheckpoints struct{}

func (noCheckpoints) Get(string) (logs.Cursor, bool) { return logs.Cursor{}, false }
func (noCheckpoints) Seed(string, logs.Cursor)       {}
func (noCheckpoints) Track(string)                   {}
func (noCheckpoints) Forget(string)                  {}
func (noCheckpoints) IDs() []string                  { return nil }

// defaultHealthyAfter is how long a burst or events connection must last for
// its backoff to reset.
const defaultHealthyAfter = 10 * time.Second

// Manager runs the events subscription and the containers' state machines.
type Manager struct {
	src          Source
	col          Collector
	checkpoints  Checkpoints
	exclude      map[string]bool // IDs of containers never read (berth's own)
	rules        *selection.Rules
	cfg          config.Containers
	backoff      config.Backoff
	healthyAfter time.Duration
	log          *slog.Logger
	tracer       trace.Tracer
	reconnects   metric.Int64Counter

	statusReq chan chan Status
	connected atomic.Bool
	connErr   atomic.Pointer[string] // why the events stream is down; nil when connected
	stopped   chan struct{}          // closed when Run returns
}

// ErrNotRunning says the manager is not running (it stopped, or never ran).
var ErrNotRunning = errors.New("manager is not running")

// NewManager returns a Manager; Run starts it. checkpoints, if not nil, gives
// the delivered position of containers berth read before it restarted; they
// take precedence over cfg.InitialPosition, which applies to containers that
// exist when berth starts (those that appear later are read from their
// beginning). bo paces re-attaching after failed or empty bursts and
// reconnecting the events stream. The manager reports its containers by
// state, its open streams and its reconnects as metrics of set. exclude
// lists the full IDs of containers whose log is never read, such as the
// container berth itself runs in: they are known, and shown in Status as
// excluded. cfg's Include, Exclude and OptIn choose the other containers it
// reads (package selection); a rename decides again.
func NewManager(src Source, col Collector, checkpoints Checkpoints, cfg config.Containers, bo config.Backoff, set telemetry.Settings, exclude ...string) (*Manager, error) {
	if checkpoints == nil {
		checkpoints = noCheckpoints{}
	}
	excluded := make(map[string]bool, len(exclude))
	for _, id := range exclude {
		if id != "" {
			excluded[id] = true
		}
	}
	rules, err := selection.New(cfg.Include, cfg.Exclude, cfg.OptIn)
	if err != nil {
		return nil, fmt.Errorf("container selection: %w", err)
	}
	m := &Manager{
		src: src, col: col, checkpoints: checkpoints, exclude: excluded, rules: rules, cfg: cfg, backoff: bo,
		healthyAfter: defaultHealthyAfter,
		log:          set.Logger,
		tracer:       set.Tracer(),
		statusReq:    make(chan chan Status),
		stopped:      make(chan struct{}),
	}
	if err := m.instruments(set.Meter()); err != nil {
		return nil, fmt.Errorf("events instruments: %w", err)
	}
	return m, nil
}

// instruments creates the manager's metrics: berth.events.reconnects, and the
// gauges berth.containers (by state) and berth.streams.open, read from a
// Status when metrics are collected.
func (m *Manager) instruments(meter metric.Meter) error {
	var err1, err2, err3, err4 error
	m.reconnects, err1 = meter.Int64Counter("berth.events.reconnects", metric.WithUnit("{reconnect}"),
		metric.WithDescription("Times the Docker events stream was (re)opened."))
	containers, err2 := meter.Int64ObservableGauge("berth.containers", metric.WithUnit("{container}"),
		metric.WithDescription("Containers berth knows, by state."))
	streams, err3 := meter.Int64ObservableGauge("berth.streams.open", metric.WithUnit("{stream}"),
		metric.WithDescription("Log bursts reading right now."))
	if err := errors.Join(err1, err2, err3); err != nil {
		return err
	}
	_, err4 = meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		st, err := m.Status(ctx)
		if err != nil {
			return nil // not running: nothing to report
		}
		byState := map[State]int64{}
		for _, c := range st.Containers {
			byState[c.State]++
		}
		for state, n := range byState {
			o.ObserveInt64(containers, n, metric.WithAttributes(attribute.String("state", string(state))))
		}
		o.ObserveInt64(streams, int64(st.Streams))
		return nil
	}, containers, streams)
	return err4
}

// Connected reports whether the events stream is subscribed and reconciled.
func (m *Manager) Connected() bool { return m.connected.Load() }

// ConnectError is the Docker error that ended or refused the events
// connection, while it is not connected; "" when connected, or before the
// first attempt has failed.
func (m *Manager) ConnectError() string {
	if e := m.connErr.Load(); e != nil {
		return *e
	}
	return ""
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
	sub := &subscriber{Manager: m, out: msgs, bo: m.backoff.NewExponentialBackOff(), since: time.Now(), initial: true}
	var subscribed sync.WaitGroup
	subscribed.Go(func() { sub.run(ctx) })
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
			subscribed.Wait()
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
