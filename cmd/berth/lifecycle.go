package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"
)

// lifecycle starts berth's parts in order and stops them in reverse: the
// order is what guarantees delivery (the manager stops reading before the
// exporter delivers what was read, and the exporter acknowledges before the
// checkpoints are saved for the last time). Each part is added once it has
// started; a part that fails to start leaves the ones before it to stop.
//
// Parts that run in the background (the manager, the checkpoint saver, the
// HTTP server) are goroutines of one errgroup: the first to fail ends the
// run, and stopping a part waits for its goroutine.
type lifecycle struct {
	log   *slog.Logger
	group *errgroup.Group
	ended context.Context // done when a background part returned an error
	stops []stopStep      // in start order
}

// stopStep stops one part within a bound.
type stopStep struct {
	name string
	// bound is this step's own time, whatever is left of the shutdown
	// deadline (so that the checkpoints are saved and the telemetry flushed
	// even after a step before them ran out of time); 0: what is left of
	// the shutdown deadline.
	bound time.Duration
	stop  func(ctx context.Context) error
}

func newLifecycle(log *slog.Logger) *lifecycle {
	g, ended := errgroup.WithContext(context.Background())
	return &lifecycle{log: log, group: g, ended: ended}
}

// onStop registers how to stop a part that has started.
func (l *lifecycle) onStop(name string, bound time.Duration, stop func(ctx context.Context) error) {
	l.stops = append(l.stops, stopStep{name: name, bound: bound, stop: stop})
}

// goRun runs a background part until its context is cancelled, which its stop
// step does; the step then waits for run to return, within the step's bound.
// run returning before its stop, with an error or without, ends the whole
// run (see Failed).
func (l *lifecycle) goRun(name string, bound time.Duration, run func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	l.group.Go(func() error {
		defer close(done)
		err := run(ctx)
		switch {
		case ctx.Err() != nil:
			return nil // stopped
		case err != nil:
			return fmt.Errorf("%s: %w", name, err)
		default:
			return fmt.Errorf("%s returned before it was stopped", name)
		}
	})
	l.onStop(name, bound, func(stopCtx context.Context) error {
		cancel()
		select {
		case <-done:
			return nil
		case <-stopCtx.Done():
			return fmt.Errorf("still running: %w", stopCtx.Err())
		}
	})
}

// Failed is done when a background part failed; Err then says which.
func (l *lifecycle) Failed() <-chan struct{} { return l.ended.Done() }

// Err returns the first background failure, once Failed is done.
func (l *lifecycle) Err() error { return context.Cause(l.ended) }

// shutdown stops every part in reverse order of start, each within its own
// bound or else within what is left of timeout, and returns every failure,
// naming its part. It
// returns only when every step has returned or run out of time; a step that
// ran out of time leaves its goroutine behind, which the error says.
func (l *lifecycle) shutdown(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var errs []error
	for i := len(l.stops) - 1; i >= 0; i-- {
		s := l.stops[i]
		end := deadline
		if s.bound > 0 {
			end = time.Now().Add(s.bound)
		}
		ctx, cancel := context.WithDeadline(context.Background(), end)
		start := time.Now()
		err := s.stop(ctx)
		cancel()
		l.log.Debug("stopped", "part", s.name, "took", time.Since(start).Round(time.Millisecond), "err", err)
		if err != nil {
			errs = append(errs, fmt.Errorf("stopping %s: %w", s.name, err))
		}
	}
	l.stops = nil
	return errors.Join(errs...)
}
