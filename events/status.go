package events

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Status is a snapshot of the manager for operators.
type Status struct {
	Connected bool `json:"events_connected"`
	// EventsError is the Docker error that ended or refused the events
	// connection, while it is down.
	EventsError string            `json:"events_error,omitempty"`
	Containers  []ContainerStatus `json:"containers"`
	Streams     int               `json:"streams_open"`
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
	// SelectedBy is the rule that collects it (default, include
	// name=web-*, label berth.enable=true, ...); ExcludedBy the one that
	// excludes it (berth's own container, exclude image=nginx:*, label
	// berth.enable=false, opt_in ..., no include rule matches). One is set.
	SelectedBy string `json:"selected_by,omitempty"`
	ExcludedBy string `json:"excluded_by,omitempty"`
	// LabelErrors are its labels berth could not use, e.g. a berth.enable
	// that is neither true nor false (it is then collected).
	LabelErrors []string `json:"label_errors,omitempty"`
	// Dropped is the records its rate limit dropped (rate_limit.mode
	// drop), the running burst's included.
	Dropped int64 `json:"dropped,omitempty"`
	// LastGap is the last stretch of its log Docker had rotated away
	// before berth read it; absent when none.
	LastGap *GapStatus `json:"last_gap,omitempty"`
	// Unparsed counts its lines that were to be parsed (berth.parse,
	// parse.format) and were not in the format: they were sent as they
	// are, never dropped. The running burst's are included.
	Unparsed int64 `json:"unparsed_lines,omitempty"`
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

// status builds the snapshot; it runs in the manager's goroutine.
func (r *run) status() Status {
	s := Status{Connected: r.connected.Load(), EventsError: r.ConnectError(), Streams: r.active}
	for _, id := range slices.Sorted(maps.Keys(r.containers)) {
		ct := r.containers[id]
		s.Containers = append(s.Containers, ContainerStatus{
			ID: short(ct.id), Name: ct.name, State: ct.state, Lines: ct.lines + ct.progress.Lines.Load(),
			Newest: laterOf(ct.cursor.Newest(), ct.progress.NewestTime()), LastEnd: string(ct.lastEnd), LastError: ct.lastErr,
			SelectedBy: ct.selectedBy, ExcludedBy: ct.excludedBy, LastGap: gapStatus(ct),
		})
		if ct.labelError != "" {
			s.Containers[len(s.Containers)-1].LabelErrors = []string{ct.labelError}
		}
		s.Containers[len(s.Containers)-1].Dropped = ct.dropped + ct.progress.Dropped.Load()
		s.Containers[len(s.Containers)-1].Unparsed = ct.unparsed + ct.progress.Unparsed.Load()
	}
	return s
}

// short is the 12-character form of a container ID that Docker prints.
func short(id string) string { return id[:min(12, len(id))] }

// laterOf returns the later of a and b.
func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
