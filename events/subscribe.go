package events

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// sourceMsg is what the subscriber reports to the manager.
type sourceMsg struct {
	snapshot []Container // after each (re)connect
	at       time.Time   // when the snapshot was listed
	initial  bool        // the first snapshot since berth started
	event    *Event
	err      error // the stream is down
}

// subscriber keeps berth's one events subscription open: subscribe, then
// list (a list taken first would miss what happens in between), then forward
// events; it reconnects with since after every end, backing off after
// failures. It runs in one goroutine, owned by the manager's Run.
type subscriber struct {
	*Manager
	out     chan<- sourceMsg
	bo      *backoff.ExponentialBackOff
	dedup   eventDedup
	since   time.Time // the newest event seen: where a reconnect resumes
	initial bool      // no snapshot sent yet
	warned  repeatLog // the retry warnings of the outage under way
}

// run connects and forwards until ctx ends.
func (s *subscriber) run(ctx context.Context) {
	for {
		connectedAt := time.Now()
		stream, list, err := s.connect(ctx)
		if err != nil {
			if ctx.Err() != nil || !s.retry(ctx, "docker events unavailable; retrying", err) {
				return
			}
			continue
		}
		if !s.send(ctx, sourceMsg{snapshot: list, at: connectedAt, initial: s.initial}) {
			_ = stream.Close()
			return
		}
		s.initial = false
		s.warned = repeatLog{}
		err = s.forward(ctx, stream)
		if ctx.Err() != nil {
			return
		}
		if time.Since(connectedAt) >= s.healthyAfter {
			s.bo.Reset()
		}
		if isIdle(err) {
			// A quiet daemon: reconnect at once, cheaply.
			s.log.Debug("docker events stream idle; reconnecting", "since", s.since)
			continue
		}
		if !s.retry(ctx, "docker events stream ended; reconnecting", err) {
			return
		}
	}
}

// connect subscribes from since, then lists the containers.
func (s *subscriber) connect(ctx context.Context) (EventStream, []Container, error) {
	_, span := s.tracer.Start(ctx, "berth.events.connect", trace.WithAttributes(attribute.Bool("initial", s.initial)))
	defer span.End()
	stream, err := s.src.Subscribe(ctx, s.since)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return nil, nil, err
	}
	list, err := s.src.List(ctx)
	if err != nil {
		_ = stream.Close()
		span.SetStatus(codes.Error, err.Error())
		return nil, nil, err
	}
	span.SetAttributes(attribute.Int("containers", len(list)))
	s.reconnects.Add(ctx, 1)
	return stream, list, nil
}

// errStopping says forward stopped because berth is stopping.
var errStopping = errors.New("berth is stopping")

// forward hands the stream's new events to the manager until the stream ends
// (its error is returned) or ctx does. It closes the stream.
func (s *subscriber) forward(ctx context.Context, stream EventStream) error {
	defer stream.Close()
	for {
		ev, err := stream.Next()
		if err != nil {
			return err
		}
		if s.dedup.replayed(ev) {
			continue
		}
		if ev.Time.After(s.since) {
			s.since = ev.Time
		}
		if !s.send(ctx, sourceMsg{event: &ev}) {
			return errStopping
		}
	}
}

// retry reports a failure to the manager, logs it, and waits out the next
// backoff. It returns false when ctx ended first.
func (s *subscriber) retry(ctx context.Context, msg string, err error) bool {
	d := s.bo.NextBackOff()
	if n, ok := s.warned.due(msg+": "+err.Error(), time.Now(), s.bo.MaxInterval); ok {
		s.log.Warn(msg, "err", err, "retry_in", d.Round(time.Millisecond), "retries_not_logged", n)
	} else {
		s.log.Debug(msg, "err", err, "retry_in", d.Round(time.Millisecond))
	}
	if !s.send(ctx, sourceMsg{err: err}) {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// send hands msg to the manager; false when ctx ended first.
func (s *subscriber) send(ctx context.Context, msg sourceMsg) bool {
	select {
	case s.out <- msg:
		return true
	case <-ctx.Done():
		return false
	}
}

// repeatLog paces the warnings of a failure that repeats: the first is
// logged, then the same failure at most once per interval (the backoff's
// cap), and a different failure at once. The retries in between are logged at
// debug level and counted. An outage that lasts is so a few lines, not a
// storm, and its error is always in /readyz and /status.
type repeatLog struct {
	last       string    // the failure last warned of
	at         time.Time // when
	suppressed int       // the retries since, not warned of
}

// due says whether the failure key, at now, is to be warned of, and how
// many retries were not since the last warning.
func (r *repeatLog) due(key string, now time.Time, interval time.Duration) (int, bool) {
	if key == r.last && now.Sub(r.at) < interval {
		r.suppressed++
		return r.suppressed, false
	}
	n := r.suppressed
	*r = repeatLog{last: key, at: now}
	return n, true
}
