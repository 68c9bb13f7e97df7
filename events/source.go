package events

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/berthlog/berth/collectors"
	"github.com/berthlog/berth/logs"
)

// Event is one container event from the daemon.
type Event struct {
	ID         string
	Action     string // start, die, destroy, rename, ...
	Time       time.Time
	Attributes map[string]string // name, image, exitCode, oldName, ...
	// Meta is what the attributes of a create or start event say of the
	// container (name, image, labels; not its TTY), nil for other events.
	Meta *logs.Meta
}

// Container is one entry of the daemon's container list.
type Container struct {
	ID     string
	Name   string
	State  string            // created, running, paused, restarting, removing, exited, dead
	Image  string            // the reference it was created from (nginx:1.25), as its create event says
	Labels map[string]string // all its labels
}

// Running reports whether a container in this state may be writing logs.
func (c Container) Running() bool {
	switch c.State {
	case "running", "paused", "restarting":
		return true
	}
	return false
}

// EventStream is an open events subscription. Next blocks until an event, an
// error, or the stream's idle deadline; Close ends it.
type EventStream interface {
	Next() (Event, error)
	Close() error
}

// Source is what the manager needs from Docker besides the bursts.
type Source interface {
	// Subscribe opens the container events stream, replaying the events the
	// daemon still holds from since on.
	Subscribe(ctx context.Context, since time.Time) (EventStream, error)
	// List returns every container, running or not.
	List(ctx context.Context) ([]Container, error)
}

// Collector runs one burst in the caller's goroutine.
type Collector interface {
	Burst(ctx context.Context, spec collectors.BurstSpec) collectors.BurstResult
}

// isIdle reports whether a stream ended at its idle deadline rather than
// failing.
func isIdle(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }
