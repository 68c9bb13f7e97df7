package main

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestLifecycleStopsInReverse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLifecycle(slog.New(slog.DiscardHandler))
		var order []string
		note := func(name string) func(context.Context) error {
			return func(context.Context) error { order = append(order, name); return nil }
		}
		l.onStop("telemetry", time.Second, note("telemetry"))
		l.onStop("exporter", 0, note("exporter"))
		l.goRun("manager", 0, func(ctx context.Context) error {
			<-ctx.Done()
			order = append(order, "manager")
			return nil
		})
		l.onStop("http", time.Second, note("http"))
		if err := l.shutdown(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		if want := []string{"http", "manager", "exporter", "telemetry"}; !reflect.DeepEqual(order, want) {
			t.Errorf("stopped in order %v, want %v", order, want)
		}
	})
}

func TestLifecycleBoundsEachStep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLifecycle(slog.New(slog.DiscardHandler))
		var waited []time.Duration
		slow := func(ctx context.Context) error {
			start := time.Now()
			<-ctx.Done()
			waited = append(waited, time.Since(start))
			return ctx.Err()
		}
		l.onStop("last", 0, slow) // gets what is left of the 10 s
		l.onStop("first", 2*time.Second, slow)
		err := l.shutdown(10 * time.Second)
		if want := []time.Duration{2 * time.Second, 8 * time.Second}; !reflect.DeepEqual(waited, want) {
			t.Errorf("steps waited %v, want %v", waited, want)
		}
		if err == nil || !strings.Contains(err.Error(), "stopping first") || !strings.Contains(err.Error(), "stopping last") {
			t.Errorf("shutdown error %v, want both steps named", err)
		}
	})
}

func TestLifecycleBackgroundFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLifecycle(slog.New(slog.DiscardHandler))
		boom := errors.New("boom")
		l.goRun("saver", 0, func(ctx context.Context) error { return boom })
		select {
		case <-l.Failed():
		case <-time.After(time.Minute):
			t.Fatal("a failed background part did not end the run")
		}
		if err := l.Err(); !errors.Is(err, boom) || !strings.Contains(err.Error(), "saver") {
			t.Errorf("Err() = %v, want boom named with its part", err)
		}
		if err := l.shutdown(time.Second); err != nil {
			t.Errorf("shutdown after the part returned: %v", err)
		}
	})
}

func TestLifecycleStopIsNotAFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLifecycle(slog.New(slog.DiscardHandler))
		l.goRun("manager", 0, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
		if err := l.shutdown(time.Second); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		select {
		case <-l.Failed():
			t.Errorf("a part that returned because it was stopped counts as failed: %v", l.Err())
		default:
		}
	})
}

func TestLifecycleEarlyReturnIsAFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLifecycle(slog.New(slog.DiscardHandler))
		l.goRun("manager", 0, func(context.Context) error { return nil })
		<-l.Failed()
		if err := l.Err(); err == nil || !strings.Contains(err.Error(), "manager returned before it was stopped") {
			t.Errorf("Err() = %v", err)
		}
		if err := l.shutdown(time.Second); err != nil {
			t.Error(err)
		}
	})
}
