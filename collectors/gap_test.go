package collectors

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/berthlog/berth/logs"
)

// numbered is stdout line i stamped at(i).
func numbered(from, to int) []fakeMsg {
	var out []fakeMsg
	for i := from; i <= to; i++ {
		out = append(out, fakeMsg{logs.Stdout, at(i), fmt.Sprintf("line %d\n", i)})
	}
	return out
}

// TestGapRotatedAway: lines 11 to 49 were rotated away before the re-attach:
// the burst reports the range from its cursor (line 10) to the oldest line
// Docker still holds (line 50), counts it, and delivers what is left once.
func TestGapRotatedAway(t *testing.T) {
	set, reader := metricSettings(t)
	d := &fakeDaemon{log: numbered(1, 10)}
	sink := &memSink{}
	c := newCollector(t, d, sink, testBursts(1024, 4), set)
	res := c.Burst(context.Background(), spec(logs.BeginningCursor(), false))
	if res.Lines != 10 || !res.Gaps[0].IsZero() || !res.Gaps[1].IsZero() {
		t.Fatalf("first burst: %+v", res)
	}
	d.log = numbered(50, 60)
	res = c.Burst(context.Background(), spec(res.Cursor, false))
	want := Gap{Stream: logs.Stdout, From: at(10), To: at(50)}
	if res.Gaps[0] != want || !res.Gaps[1].IsZero() {
		t.Fatalf("gaps %+v, want stdout %+v", res.Gaps, want)
	}
	if res.Lines != 11 || res.Err != nil {
		t.Fatalf("after the gap: lines %d err %v, want 11", res.Lines, res.Err)
	}
	got := sink.bodies()
	for i, b := range got {
		n := i + 1
		if i >= 10 {
			n = i + 40
		}
		if b != fmt.Sprintf("stdout:line %d", n) {
			t.Fatalf("record %d is %q", i, b)
		}
	}
	m, _ := collectMetrics(t, reader)
	if n := sumBy(t, m["berth.log.gaps"], "log.iostream"); n["stdout"] != 1 || n["stderr"] != 0 {
		t.Errorf("berth.log.gaps %v, want stdout 1", n)
	}
	sec, ok := m["berth.log.gap.duration"].Data.(metricdata.Sum[float64])
	if !ok || len(sec.DataPoints) != 1 || sec.DataPoints[0].Value != (40*time.Nanosecond).Seconds() {
		t.Errorf("berth.log.gap.duration %+v, want one point of 40ns", m["berth.log.gap.duration"].Data)
	}
	// Re-attached again, nothing is missing any more.
	res = c.Burst(context.Background(), spec(res.Cursor, false))
	if !res.Gaps[0].IsZero() || res.Lines != 0 {
		t.Fatalf("second re-attach: %+v", res)
	}
}

// TestGapNotWhenQuiet: a container that was quiet for a long time, then
// wrote, is no gap: the cursor's line is still in the log and comes first.
// Nor is a rotation that kept the cursor's line, nor a cursor that is only a
// threshold (initial_position: end).
func TestGapNotWhenQuiet(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cursor func(c *Collector, d *fakeDaemon) logs.Cursor
		log    []fakeMsg
	}{
		{"quiet then a line much later", nil, append(numbered(1, 10), fakeMsg{logs.Stdout, at(int(time.Hour)), "late\n"})},
		{"rotated, the cursor's line kept", nil, numbered(10, 60)},
		{"threshold only", func(*Collector, *fakeDaemon) logs.Cursor { return logs.EndCursor(at(10)) }, numbered(50, 60)},
		{"stderr's line before a tail window", func(c *Collector, d *fakeDaemon) logs.Cursor {
			d.log = append([]fakeMsg{{logs.Stderr, at(0), "e0\n"}}, numbered(1, 10)...)
			return c.Burst(context.Background(), spec(logs.BeginningCursor(), false)).Cursor
		}, append(append([]fakeMsg{{logs.Stderr, at(0), "e0\n"}}, numbered(1, 11)...), fakeMsg{logs.Stderr, at(12), "e1\n"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &fakeDaemon{log: numbered(1, 10)}
			sink := &memSink{}
			c := newTestCollector(t, d, sink, 1024, 4)
			var cur logs.Cursor
			if tc.cursor != nil {
				cur = tc.cursor(c, d)
			} else {
				cur = c.Burst(context.Background(), spec(logs.BeginningCursor(), false)).Cursor
			}
			d.log = tc.log
			res := c.Burst(context.Background(), spec(cur, false))
			if !res.Gaps[0].IsZero() || !res.Gaps[1].IsZero() || res.Err != nil {
				t.Fatalf("gaps %+v err %v, want none", res.Gaps, res.Err)
			}
			if res.Lines == 0 {
				t.Fatalf("the re-attach delivered nothing: %v", sink.bodies())
			}
		})
	}
}

// TestGapBothStreams: each stream's first message is judged against its own
// boundary.
func TestGapBothStreams(t *testing.T) {
	d := &fakeDaemon{log: []fakeMsg{
		{logs.Stdout, at(1), "o1\n"}, {logs.Stderr, at(2), "e2\n"}, {logs.Stdout, at(3), "o3\n"}, {logs.Stderr, at(4), "e4\n"},
	}}
	sink := &memSink{}
	c := newTestCollector(t, d, sink, 1024, 100)
	res := c.Burst(context.Background(), spec(logs.BeginningCursor(), false))
	d.log = []fakeMsg{{logs.Stderr, at(9), "e9\n"}, {logs.Stdout, at(10), "o10\n"}}
	res = c.Burst(context.Background(), spec(res.Cursor, false))
	wantOut := Gap{Stream: logs.Stdout, From: at(3), To: at(10)}
	wantErr := Gap{Stream: logs.Stderr, From: at(4), To: at(9)}
	if res.Gaps[0] != wantOut || res.Gaps[1] != wantErr {
		t.Fatalf("gaps %+v, want %+v and %+v", res.Gaps, wantOut, wantErr)
	}
	if got := strings.Join(sink.bodies(), "|"); got != "stdout:o1|stderr:e2|stdout:o3|stderr:e4|stderr:e9|stdout:o10" {
		t.Fatalf("records %q", got)
	}
}
