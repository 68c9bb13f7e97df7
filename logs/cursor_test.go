package logs

import (
	"testing"
	"time"
)

// TestThresholdWholeSeconds: a daemon that stamps lines with whole seconds
// (Podman) gives a line written after the threshold, in the threshold's
// second, a timestamp before it; that line is new, not old. Lines of the
// seconds before stay old, and nanosecond timestamps compare exactly.
func TestThresholdWholeSeconds(t *testing.T) {
	sec := time.Date(2026, 11, 29, 23, 30, 54, 0, time.UTC)
	threshold := sec.Add(500 * time.Millisecond)
	for _, tc := range []struct {
		what string
		ts   time.Time
		old  bool
	}{
		{"whole second of the threshold's second", sec, false},
		{"whole second before it", sec.Add(-time.Second), true},
		{"whole second after it", sec.Add(time.Second), false},
		{"nanoseconds before the threshold", threshold.Add(-time.Nanosecond), true},
		{"nanoseconds at the threshold", threshold, true},
		{"nanoseconds after the threshold", threshold.Add(time.Nanosecond), false},
	} {
		c := EndCursor(threshold)
		c.Rewind()
		if got := c.Seen(Stdout, tc.ts, 1); got != tc.old {
			t.Errorf("%s (%s): Seen = %v, want %v", tc.what, tc.ts.Format(time.RFC3339Nano), got, tc.old)
		}
	}
}
