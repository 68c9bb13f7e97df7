//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
)

// eventRecorder records the daemon's container events for the suite's
// containers, in the order the stream delivers them, on its own goroutine.
type eventRecorder struct {
	mu     sync.Mutex
	evs    []events.Message
	err    error
	cancel context.CancelFunc
	done   chan struct{}
}

// recordEvents starts recording; cleanup stops it and waits for it.
func recordEvents(t *testing.T) *eventRecorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	msgs, errs := suite.docker.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", "container"), filters.Arg("label", labelKey+"="+labelValue))})
	r := &eventRecorder{cancel: cancel, done: make(chan struct{})}
	go func() { // owned: ends when cancel ends the stream
		defer close(r.done)
		for {
			select {
			case m := <-msgs:
				r.mu.Lock()
				r.evs = append(r.evs, m)
				r.mu.Unlock()
			case err := <-errs:
				r.mu.Lock()
				r.err = err
				r.mu.Unlock()
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

// all returns a copy of the events recorded so far, in stream order.
func (r *eventRecorder) all() []events.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]events.Message(nil), r.evs...)
}

// of returns the events of container id.
func (r *eventRecorder) of(id string) []events.Message {
	var out []events.Message
	for _, m := range r.all() {
		if m.Actor.ID == id {
			out = append(out, m)
		}
	}
	return out
}

// describe prints events as "action@time" in stream order.
func describe(ms []events.Message) string {
	s := ""
	for i, m := range ms {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%s@%s", m.Action, time.Unix(0, m.TimeNano).UTC().Format("15:04:05.000000000"))
	}
	return s
}

// outOfOrder counts the events whose time is before the time of an event
// the stream delivered earlier, and describes the first few.
func (r *eventRecorder) outOfOrder() (int, []string) {
	var maxNano int64
	var maxEv events.Message
	n := 0
	var ex []string
	for _, m := range r.all() {
		if m.TimeNano < maxNano {
			n++
			if len(ex) < 3 {
				ex = append(ex, fmt.Sprintf("%s %s at %d delivered after %s %s at %d (%v earlier)",
					short(m.Actor.ID), m.Action, m.TimeNano, short(maxEv.Actor.ID), maxEv.Action, maxNano, time.Duration(maxNano-m.TimeNano)))
			}
			continue
		}
		maxNano, maxEv = m.TimeNano, m
	}
	return n, ex
}
