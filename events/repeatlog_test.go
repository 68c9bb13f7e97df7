package events

import (
	"testing"
	"time"
)

// TestRepeatLog: a failure that repeats is warned of once, then at most once
// per interval, counting the retries between; a different failure is warned
// of at once.
func TestRepeatLog(t *testing.T) {
	const interval = 30 * time.Second
	t0 := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	var r repeatLog
	for i, step := range []struct {
		key      string
		at       time.Duration
		wantDue  bool
		wantSkip int // on a due step: the retries not warned of since the last warning
	}{
		{"permission denied", 0, true, 0},
		{"permission denied", 500 * time.Millisecond, false, 0},
		{"permission denied", 1500 * time.Millisecond, false, 0},
		{"permission denied", 3500 * time.Millisecond, false, 0},
		{"permission denied", 29 * time.Second, false, 0},
		{"permission denied", 30 * time.Second, true, 4},
		{"permission denied", 45 * time.Second, false, 0},
		{"connection refused", 46 * time.Second, true, 1},
		{"connection refused", 47 * time.Second, false, 0},
		{"permission denied", 48 * time.Second, true, 1},
	} {
		n, due := r.due(step.key, t0.Add(step.at), interval)
		if due != step.wantDue || (due && n != step.wantSkip) {
			t.Errorf("step %d (%s at %v): due %v with %d not logged, want %v with %d", i, step.key, step.at, due, n, step.wantDue, step.wantSkip)
		}
	}
}
