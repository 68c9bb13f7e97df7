package events

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthlog/berth/collectors"
	"github.com/berthlog/berth/logs"
)

// lockedBuffer is a log destination the manager's goroutine writes while
// the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestGapReported: a burst that found a stretch of the log rotated away is
// reported once, as a warning naming the container, the stream and the
// range, and /status keeps the last gap and counts them.
func TestGapReported(t *testing.T) {
	var out lockedBuffer
	h := newHarness(t)
	h.set.Logger = slog.New(slog.NewTextHandler(&out, nil))
	h.src.setList(running("c1"))
	h.start(testConfig())
	from := time.Date(2024, 5, 1, 10, 0, 0, 123456789, time.UTC)
	to := from.Add(90 * time.Second)
	for i, g := range [][2]collectors.Gap{
		{{Stream: logs.Stdout, From: from.Add(-time.Hour), To: from}},
		{{}, {Stream: logs.Stderr, From: from, To: to}},
	} {
		b := h.col.waitBurst(t, "c1", i+1)
		b.end(t, outcome{End: collectors.EndIdle, Gaps: g})
	}
	h.col.waitBurst(t, "c1", 3)
	c, _ := h.container("c1")
	want := GapStatus{Stream: "stderr", From: from, To: to, Seconds: 90, Count: 2}
	if c.LastGap == nil || *c.LastGap != want {
		t.Fatalf("last_gap %+v, want %+v", c.LastGap, want)
	}
	var warned []string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.Contains(l, "level=WARN") && strings.Contains(l, "rotated them away") {
			warned = append(warned, l)
		}
	}
	if len(warned) != 2 || !strings.Contains(warned[1], "container=c1") || !strings.Contains(warned[1], "stream=stderr") ||
		!strings.Contains(warned[1], "from=2024-05-01T10:00:00.123456789Z") || !strings.Contains(warned[1], "to=2024-05-01T10:01:30.123456789Z") {
		t.Fatalf("warnings %q, want two, the second naming c1, stderr and its range", warned)
	}
	h.col.waitBurst(t, "c1", 3).end(t, outcome{End: collectors.EndIdle})
	h.col.waitBurst(t, "c1", 4)
	if c2, _ := lookup(h.status(), "c1"); c2.LastGap == nil || *c2.LastGap != want {
		t.Fatalf("a burst without a gap changed the count: %+v", c2.LastGap)
	}
}
