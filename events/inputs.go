package events

import (
	"time"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/logs"
)

// handleSource applies a snapshot, an event or a disconnection.
func (r *run) handleSource(msg sourceMsg) {
	switch {
	case msg.err != nil:
		r.connected.Store(false)
		e := msg.err.Error()
		r.connErr.Store(&e)
	case msg.event != nil:
		r.handleEvent(*msg.event)
	default:
		r.reconcile(msg)
		r.connErr.Store(nil)
		r.connected.Store(true)
	}
}

// reconcile brings the containers' facts in line with the daemon's list, and
// steps each.
func (r *run) reconcile(msg sourceMsg) {
	listed := make(map[string]bool, len(msg.snapshot))
	for _, c := range msg.snapshot {
		listed[c.ID] = true
		ct, known := r.containers[c.ID]
		if !known {
			cursor, checkpointed := r.checkpoints.Get(c.ID)
			if !checkpointed {
				cursor = logs.BeginningCursor()
				if msg.initial && r.cfg.InitialPosition == config.InitialPositionEnd {
					// Lines written before berth started are not sent; with
					// a threshold instead of "tail=0" nothing is lost between
					// bursts, and a stopped container has nothing to read.
					// An excluded container keeps it too: a rename that
					// selects it reads it from there.
					cursor = logs.EndCursor(msg.at)
				}
			}
			ct = r.add(c.ID, c.Name, c.Image, c.Labels, cursor)
			if !cursor.Threshold.IsZero() && !checkpointed && ct.excludedBy == "" {
				// Saved now: if the container writes nothing before
				// berth restarts, what it writes while berth is down
				// is still after this position.
				r.checkpoints.Seed(c.ID, cursor)
			}
			ct.running = c.Running()
			ct.started = c.State != "created"
			// A created container never ran: it has no log yet. A stopped
			// one read from its end has nothing new; with a checkpoint it
			// may have written after berth stopped.
			ct.drained = !ct.running && ((!cursor.Threshold.IsZero() && !checkpointed) || !ct.started)
		} else {
			// The list is the authority on what the rules read: a rename
			// missed while the events stream was down is caught up here.
			if c.Image != "" {
				ct.image = c.Image
			}
			if c.Labels != nil {
				ct.labels = c.Labels
			}
			if c.Name != "" && c.Name != ct.name {
				r.rename(ct, c.Name)
			} else {
				r.decide(ct)
			}
			wasRunning := ct.running
			ct.running = c.Running()
			if wasRunning && !ct.running {
				ct.drained = false
			}
			if !wasRunning && ct.running {
				ct.started = true
				ct.retryAt = time.Time{}
				ct.starts++
			}
			if !ct.started && !ct.running && c.State != "created" {
				// It ran and stopped while its events were missed: read
				// what it wrote.
				ct.started, ct.drained = true, false
			}
		}
		r.step(ct, inputDaemon)
	}
	for id, ct := range r.containers {
		if !listed[id] {
			ct.gone, ct.running = true, false
			r.step(ct, inputDaemon)
		}
	}
	if msg.initial {
		// Containers removed while berth was not running.
		for _, id := range r.checkpoints.IDs() {
			if !listed[id] {
				r.checkpoints.Forget(id)
			}
		}
	}
}

// handleEvent applies one container event to its facts, and steps it. Events
// may repeat or arrive late (after a reconnect, or relative to a snapshot):
// every change is idempotent, and a follow burst on a container that has in
// fact stopped ends at once and reports it.
func (r *run) handleEvent(ev Event) {
	r.log.Debug("docker event", "action", ev.Action, "id", short(ev.ID), "name", ev.Attributes["name"])
	ct := r.containers[ev.ID]
	switch ev.Action {
	case "create":
		if ct == nil {
			ct = r.addFromEvent(ev)
		}
		r.setHint(ct, ev.Meta)
	case "start", "restart", "unpause":
		if ct == nil {
			ct = r.addFromEvent(ev)
		}
		r.setHint(ct, ev.Meta)
		ct.running, ct.started = true, true
		ct.starts++
		ct.quiet = 0 // a new run: read it with the short idle deadline
		ct.retryAt = time.Time{}
		ct.unreadable = false
	case "die", "stop":
		if ct == nil {
			// Its start was missed (events lost while disconnected): read
			// the log it wrote.
			ct = r.addFromEvent(ev)
			ct.drained = false
		}
		if (ct.running || ct.state == StateStreaming) && !autoRemoved(ct) {
			// A --rm container's log is deleted with it, and a logs
			// request once it stopped could make its removal fail: what
			// a running follow burst reads before its end is all.
			ct.drained = false
		}
		ct.running, ct.started = false, true
		ct.retryAt = time.Time{}
	case "destroy":
		if ct == nil {
			return
		}
		ct.gone, ct.running = true, false
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
	r.step(ct, inputDaemon)
}

// add starts tracking a container, from its checkpoint if it has one. It is
// discovered, with nothing to read until it is known to run or to have run;
// a container the selection excludes (berth's own among them) is known but
// not read.
func (r *run) add(id, name, image string, labels map[string]string, cursor logs.Cursor) *container {
	if cp, ok := r.checkpoints.Get(id); ok {
		cursor = cp
	}
	r.checkpoints.Track(id)
	ct := &container{id: id, name: name, image: image, labels: labels, cursor: cursor, state: StateDiscovered, facts: facts{drained: true}}
	r.containers[id] = ct
	r.decide(ct)
	return ct
}

// setHint keeps what an event said of the container, for a burst that
// starts before it is inspected (collectors.BurstSpec.Hint), under the name
// of its latest rename.
func (r *run) setHint(ct *container, m *logs.Meta) {
	if m == nil {
		return
	}
	if n := ct.renamed.Load(); n != nil {
		m = m.Renamed(*n)
	}
	ct.hint = m
}

// addFromEvent starts tracking a container first seen in an event (its start
// or its creation while berth runs), read from its first line: the event's
// attributes give its name, image and labels.
func (r *run) addFromEvent(ev Event) *container {
	return r.add(ev.ID, ev.Attributes["name"], ev.Attributes["image"], labelsOf(ev.Attributes), logs.BeginningCursor())
}

// rename publishes a new Meta with the new name: the active burst uses it
// from its next batch on. The name is published first, so that a burst
// storing the Meta it has just inspected renames it too
// (collectors.BurstSpec.Renamed). The selection is decided again under the
// new name.
func (r *run) rename(ct *container, name string) {
	if name == "" {
		return
	}
	ct.name = name
	ct.renamed.Store(&name)
	if ct.hint != nil {
		ct.hint = ct.hint.Renamed(name)
	}
	for {
		old := ct.meta.Load()
		if old == nil || ct.meta.CompareAndSwap(old, old.Renamed(name)) {
			break
		}
	}
	r.decide(ct)
}
