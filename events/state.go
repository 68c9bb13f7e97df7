package events

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/berthlog/berth/collectors"
	"github.com/berthlog/berth/logs"
)

// State is where a container is in its lifecycle as berth sees it.
type State string

// The states of a container. "Attaching" happens inside a burst, and "idle"
// is momentary: a burst that ends idle re-attaches at once.
const (
	StateDiscovered State = "discovered" // created, never started: nothing to read yet
	StateStreaming  State = "streaming"  // a burst is reading its log
	StateBackoff    State = "backoff"    // waiting to re-attach after a failed or empty burst
	StateStopped    State = "stopped"    // not running and its log read to the end (or unreadable)
	StateExcluded   State = "excluded"   // not read: berth's own container, or the selection's rules (see ContainerStatus.ExcludedBy)
)

// facts is what the daemon and the bursts have told berth about a container:
// the inputs of its state machine. They never say what berth is doing; the
// state does, and transition alone decides it.
type facts struct {
	running    bool      // the daemon last said it runs
	started    bool      // it has run at least once (a created container has not)
	drained    bool      // its log has been read to the end since it last stopped
	gone       bool      // it was removed
	unreadable bool      // its logging driver cannot be read through the API, until it starts again
	excludedBy string    // why berth must not read it (berth runs in it, or a rule); "" when it is collected
	retryAt    time.Time // no burst before this (backoff); zero: none pending
}

// input is what makes a container's state machine step.
type input int

const (
	inputDaemon     input = iota // a snapshot or an event changed its facts
	inputBurstEnded              // its burst returned; its result is in the facts
	inputTimer                   // its backoff may have passed
)

// action is what berth does for a container after a transition.
type action int

const (
	actNone   action = iota
	actFollow        // start a burst that follows the running container's log
	actDrain         // start a burst that reads a stopped container's log to its end
	actForget        // drop the container and its checkpoint
)

// transition is the state machine: from a container's state, what happened
// and what is known of it, where it goes and what berth does. It is the only
// place that decides a state; step applies it.
//
//	state      input         facts                          -> state, action
//	streaming  not its end   any                            -> streaming (the burst's end decides)
//	any        any           gone                           -> (forgotten), forget
//	any        any           excluded (by anything)         -> excluded
//	any        any           berth is stopping              -> unchanged
//	any        any           unreadable                     -> stopped
//	any        any           running or not drained,
//	                           before retryAt               -> backoff
//	                           else                         -> streaming, follow if running else drain
//	any        any           never started                  -> discovered
//	any        any           otherwise                      -> stopped
func transition(cur State, in input, f facts, now time.Time, stopping bool) (State, action) {
	switch {
	case cur == StateStreaming && in != inputBurstEnded:
		return cur, actNone
	case f.gone:
		return cur, actForget
	case f.excludedBy != "":
		return StateExcluded, actNone
	case stopping:
		return cur, actNone
	case f.unreadable:
		return StateStopped, actNone
	case f.running || !f.drained:
		if now.Before(f.retryAt) {
			return StateBackoff, actNone
		}
		if f.running {
			return StateStreaming, actFollow
		}
		return StateStreaming, actDrain
	case !f.started:
		return StateDiscovered, actNone
	default:
		return StateStopped, actNone
	}
}

// container is the manager's record of one container: its state, the facts
// that drive it, and what its bursts delivered.
type container struct {
	id    string
	name  string
	state State
	facts
	// image and labels are what the selection's rules read, from the list
	// or the event that made the container known; selectedBy says which
	// rule collects it (excludedBy, in facts, which one excludes it), and
	// labelError is a bad berth.enable value, reported once.
	image      string
	labels     map[string]string
	selectedBy string
	labelError string
	// cancelBurst ends the active burst early, when a rename excludes the
	// container; nil when no burst runs.
	cancelBurst context.CancelFunc
	meta        atomic.Pointer[logs.Meta] // shared with its burst; replaced on rename
	hint        *logs.Meta                // what its create or start event said of it; nil if none
	// renamed is the name of its latest rename event, shared with its
	// burst (BurstSpec.Renamed); nil before any.
	renamed atomic.Pointer[string]
	cursor  logs.Cursor
	bo      *backoff.ExponentialBackOff // its re-attach backoff; nil until the first failure

	// starts counts the signs that it (re)started: start events, and
	// snapshots that list it running again. A follow burst's "stopped"
	// comes from an inspect that may predate a start seen while it ran.
	starts         int
	startsAtLaunch int // starts when the active burst was launched

	// quiet counts its follow bursts in a row that ended at a deadline
	// without a line (collectors.BurstSpec.Quiet): the next one waits
	// longer for a byte. A line, another end or a start resets it.
	quiet int

	lines int64 // lines of its finished bursts
	// unparsed counts its lines sent as they are because they were not in
	// its berth.parse (or parse.format) format.
	unparsed int64
	lastErr  string
	lastEnd  collectors.EndReason
	// progress is what the active burst has delivered so far. The burst
	// updates it per batch (BurstSpec.Progress); the manager reads it for
	// Status and resets it when it launches a burst and when it takes the
	// burst's result, whose cursor and lines then hold the same. Nothing
	// else of the container is shared.
	progress collectors.BurstProgress
	// rate is its rate-limit buckets, lent to one burst at a time
	// (BurstSpec.Rate); dropped counts what its finished bursts dropped.
	rate    collectors.RateState
	dropped int64
	// lastGap is the last stretch of its log found rotated away, and gaps
	// how many were (see reportGaps).
	lastGap collectors.Gap
	gaps    int
}

// step runs a container's state machine once and carries out its action.
func (r *run) step(ct *container, in input) {
	next, act := transition(ct.state, in, ct.facts, time.Now(), r.stopping)
	ct.state = next
	switch act {
	case actForget:
		delete(r.containers, ct.id)
		r.checkpoints.Forget(ct.id)
	case actFollow, actDrain:
		r.launch(ct, act == actFollow)
	}
}

// launch starts a burst. Its goroutine is owned by the run: Run waits for
// every one before it returns.
func (r *run) launch(ct *container, follow bool) {
	ct.retryAt = time.Time{}
	ct.startsAtLaunch = ct.starts
	r.log.Debug("burst starts", "container", ct.name, "id", short(ct.id), "follow", follow,
		"since", ct.cursor.Since(), "beginning", ct.cursor.IsBeginning())
	r.active++
	ct.resetProgress()
	spec := collectors.BurstSpec{ID: ct.id, Follow: follow, Cursor: ct.cursor, Meta: &ct.meta, Hint: ct.hint, Renamed: &ct.renamed, Progress: &ct.progress}
	spec.Rate = &ct.rate
	if follow {
		spec.Quiet = ct.quiet
	}
	ctx, cancel := context.WithCancel(r.ctx)
	ct.cancelBurst = cancel
	r.bursts.Add(1)
	go func() {
		defer r.bursts.Done()
		res := r.col.Burst(ctx, spec)
		cancel()
		r.results <- res
	}()
}

// finish takes a burst's result into the container's facts, then steps it.
func (r *run) finish(res collectors.BurstResult) {
	r.active--
	ct := r.containers[res.ID]
	if ct == nil {
		return
	}
	r.log.Debug("burst ended", "container", ct.name, "id", short(ct.id), "follow", res.Follow, "end", res.End,
		"lines", res.Lines, "bytes", res.Bytes, "requests", res.Requests, "duration", res.Duration.Round(time.Millisecond), "idle_deadline", res.Idle,
		"stopped", res.Stopped, "restarted", res.Restarted, "gone", res.Gone, "err", res.Err)
	ct.cursor = res.Cursor
	ct.cancelBurst = nil
	// The burst has returned: its progress no longer moves, and res holds
	// the same.
	ct.lines += res.Lines
	ct.dropped += res.Dropped
	ct.unparsed += res.Unparsed
	ct.resetProgress()
	ct.lastEnd = res.End
	if res.Follow && res.Lines == 0 && (res.End == collectors.EndIdle || res.End == collectors.EndMaxBurst) {
		ct.quiet++ // a quiet container: its next burst waits longer for a byte
	} else if res.End != collectors.EndShutdown {
		ct.quiet = 0
	}
	r.reportGaps(ct, &res)
	if res.Gone {
		ct.gone, ct.running = true, false
	}
	if res.Duration >= r.healthyAfter && ct.bo != nil {
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
		if res.Stopped && autoRemoved(ct) {
			// docker run --rm: the follow stream read the log to its end
			// when the container stopped, and the daemon is removing it
			// with its log. A logs request now would make Docker re-create
			// the log file and the removal fail: read nothing more.
			ct.drained, ct.running = true, false
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
	r.step(ct, inputBurstEnded)
}

// autoRemoved reports whether the daemon removes the container as soon as it
// stops (what its last inspect said).
func autoRemoved(ct *container) bool {
	m := ct.meta.Load()
	return m != nil && m.AutoRemove
}

// backOff sets when the container may be read again after a failed burst.
func (r *run) backOff(ct *container, err error) {
	if ct.bo == nil {
		ct.bo = r.backoff.NewExponentialBackOff()
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
		if ct.state == StateBackoff && (next.IsZero() || ct.retryAt.Before(next)) {
			next = ct.retryAt
		}
	}
	t.Stop()
	if !next.IsZero() {
		t.Reset(max(time.Until(next), 0))
	}
}

// wake steps the containers whose backoff has passed.
func (r *run) wake() {
	now := time.Now()
	for _, ct := range r.containers {
		if ct.state == StateBackoff && !now.Before(ct.retryAt) {
			r.step(ct, inputTimer)
		}
	}
}

// resetProgress zeroes the progress of the container's burst.
func (ct *container) resetProgress() {
	ct.progress.Lines.Store(0)
	ct.progress.Newest.Store(0)
	ct.progress.Dropped.Store(0)
	ct.progress.Unparsed.Store(0)
}
