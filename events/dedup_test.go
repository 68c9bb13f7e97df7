package events

import (
	"testing"
	"time"
)

func TestEventDedup(t *testing.T) {
	base := time.Unix(1000, 0)
	ev := func(id, action string, ms int) Event {
		return Event{ID: id, Action: action, Time: base.Add(time.Duration(ms) * time.Millisecond)}
	}
	var d eventDedup
	steps := []struct {
		ev       Event
		replayed bool
	}{
		{ev("a", "create", 0), false},
		{ev("b", "start", 5), false},
		// Live and out of time order (concurrent containers): not a replay.
		{ev("a", "start", 3), false},
		{ev("b", "die", 9), false},
		// A reconnect with since=9ms replays the newest events.
		{ev("b", "die", 9), true},
		{ev("a", "die", 9), false}, // same time, another event
		{ev("a", "die", 9), true},
		{ev("a", "destroy", 12), false},
		// Long after: old entries are forgotten, the map stays small.
		{ev("c", "start", 60_000), false},
	}
	for i, s := range steps {
		if got := d.replayed(s.ev); got != s.replayed {
			t.Fatalf("step %d %s/%s@%v: replayed %v, want %v", i, s.ev.ID, s.ev.Action, s.ev.Time.Sub(base), got, s.replayed)
		}
	}
	if len(d.seen) != 1 {
		t.Fatalf("%d events remembered after the window passed, want 1", len(d.seen))
	}
}
