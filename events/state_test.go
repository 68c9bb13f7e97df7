package events

import (
	"testing"
	"time"
)

// TestTransition is the state machine's table: every row is one (state,
// input, facts) and where it must go.
func TestTransition(t *testing.T) {
	now := time.Unix(1000, 0)
	later, earlier := now.Add(time.Second), now.Add(-time.Second)
	running := facts{running: true, started: true}
	stoppedUnread := facts{started: true}
	stoppedRead := facts{started: true, drained: true}
	created := facts{drained: true}
	with := func(f facts, change func(*facts)) facts { change(&f); return f }
	tests := []struct {
		name     string
		cur      State
		in       input
		f        facts
		stopping bool
		want     State
		act      action
	}{
		{"a running container is followed", StateDiscovered, inputDaemon, running, false, StateStreaming, actFollow},
		{"a stopped container with an unread log is drained", StateStopped, inputDaemon, stoppedUnread, false, StateStreaming, actDrain},
		{"a stopped container read to its end rests", StateStopped, inputDaemon, stoppedRead, false, StateStopped, actNone},
		{"a created container waits for its start", StateDiscovered, inputDaemon, created, false, StateDiscovered, actNone},
		{"a listed exited container that was read is stopped", StateDiscovered, inputDaemon, stoppedRead, false, StateStopped, actNone},
		{"a streaming container waits for its burst", StateStreaming, inputDaemon, stoppedRead, false, StateStreaming, actNone},
		{"a timer does not end a burst", StateStreaming, inputTimer, running, false, StateStreaming, actNone},
		{"even removal waits for the burst", StateStreaming, inputDaemon, with(running, func(f *facts) { f.gone = true }), false, StateStreaming, actNone},
		{"a burst's end re-attaches a running container", StateStreaming, inputBurstEnded, running, false, StateStreaming, actFollow},
		{"a follow burst that saw the stop drains", StateStreaming, inputBurstEnded, stoppedUnread, false, StateStreaming, actDrain},
		{"a drain that finished stops", StateStreaming, inputBurstEnded, stoppedRead, false, StateStopped, actNone},
		{"a removed container is forgotten after its burst", StateStreaming, inputBurstEnded, with(stoppedRead, func(f *facts) { f.gone = true }), false, StateStreaming, actForget},
		{"a removed container is forgotten", StateStopped, inputDaemon, with(stoppedRead, func(f *facts) { f.gone = true }), false, StateStopped, actForget},
		{"removal wins over stopping", StateBackoff, inputDaemon, with(running, func(f *facts) { f.gone = true }), true, StateBackoff, actForget},
		{"nothing starts while berth stops", StateBackoff, inputTimer, running, true, StateBackoff, actNone},
		{"a burst that ends while berth stops starts nothing", StateStreaming, inputBurstEnded, running, true, StateStreaming, actNone},
		{"an unreadable log is not retried", StateStreaming, inputBurstEnded, with(running, func(f *facts) { f.unreadable = true }), false, StateStopped, actNone},
		{"a failed burst backs off", StateStreaming, inputBurstEnded, with(running, func(f *facts) { f.retryAt = later }), false, StateBackoff, actNone},
		{"backoff holds until its time", StateBackoff, inputTimer, with(running, func(f *facts) { f.retryAt = later }), false, StateBackoff, actNone},
		{"backoff ends at its time", StateBackoff, inputTimer, with(running, func(f *facts) { f.retryAt = now }), false, StateStreaming, actFollow},
		{"a past retry time is no backoff", StateBackoff, inputTimer, with(stoppedUnread, func(f *facts) { f.retryAt = earlier }), false, StateStreaming, actDrain},
		{"berth's own running container is never read", StateDiscovered, inputDaemon, with(running, func(f *facts) { f.excludedBy = reasonSelf }), false, StateExcluded, actNone},
		{"berth's own container with an unread log is never drained", StateExcluded, inputDaemon, with(stoppedUnread, func(f *facts) { f.excludedBy = reasonSelf }), false, StateExcluded, actNone},
		{"berth's own container removed is forgotten", StateExcluded, inputDaemon, with(running, func(f *facts) { f.excludedBy, f.gone = reasonSelf, true }), false, StateExcluded, actForget},
		{"a container a rule excludes is never read", StateDiscovered, inputDaemon, with(running, func(f *facts) { f.excludedBy = "exclude name=web-*" }), false, StateExcluded, actNone},
		{"a container a rule excludes is never drained", StateStopped, inputDaemon, with(stoppedUnread, func(f *facts) { f.excludedBy = "label berth.enable=false" }), false, StateExcluded, actNone},
		{"a container excluded by a rename waits for its (cancelled) burst", StateStreaming, inputDaemon, with(running, func(f *facts) { f.excludedBy = "exclude name=web-*" }), false, StateStreaming, actNone},
		{"a container excluded by a rename rests when its burst ends", StateStreaming, inputBurstEnded, with(running, func(f *facts) { f.excludedBy = "exclude name=web-*" }), false, StateExcluded, actNone},
		{"a running container a rename selects is followed", StateExcluded, inputDaemon, running, false, StateStreaming, actFollow},
		{"a stopped container a rename selects is drained", StateExcluded, inputDaemon, stoppedUnread, false, StateStreaming, actDrain},
		{"a stopped container a rename selects, with nothing to read, rests", StateExcluded, inputDaemon, stoppedRead, false, StateStopped, actNone},
		{"a created container a rename selects waits for its start", StateExcluded, inputDaemon, created, false, StateDiscovered, actNone},
		{"an excluded container in backoff rests without a retry", StateBackoff, inputTimer, with(running, func(f *facts) { f.excludedBy = "opt_in"; f.retryAt = earlier }), false, StateExcluded, actNone},
		{"an excluded container removed is forgotten", StateExcluded, inputDaemon, with(stoppedRead, func(f *facts) { f.excludedBy, f.gone = "no include rule matches", true }), false, StateExcluded, actForget},
		{"a container that stopped during backoff and was read rests", StateBackoff, inputDaemon, with(stoppedRead, func(f *facts) { f.retryAt = later }), false, StateStopped, actNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, act := transition(tt.cur, tt.in, tt.f, now, tt.stopping)
			if got != tt.want || act != tt.act {
				t.Errorf("transition(%s, %d, %+v, stopping=%v) = %s, %d; want %s, %d", tt.cur, tt.in, tt.f, tt.stopping, got, act, tt.want, tt.act)
			}
		})
	}
}
