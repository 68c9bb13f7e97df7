package events

import "time"

// eventDedup drops the events a reconnect with since replays (since is
// inclusive, and berth asks from the newest event it saw). It remembers the
// events of the last dedupWindow before the newest one by identity, not by
// order: the daemon publishes concurrent containers' events slightly out of
// time order, and a live event older than the newest is not a replay.
type eventDedup struct {
	newest time.Time
	seen   map[eventKey]time.Time
}

// eventKey is an event's identity.
type eventKey struct {
	id, action string
	nano       int64
}

// dedupWindow is how far before the newest event replays are recognized;
// a reconnect replays from the newest event on, so a little is plenty.
const dedupWindow = 10 * time.Second

// replayed reports whether ev was seen before, and remembers it.
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
