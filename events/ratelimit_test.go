package events

import (
	"fmt"
	"strings"
	"testing"

	"github.com/berthlog/berth/collectors"
)

// TestRateLimitStatus: a container's rate-limit buckets are the same across
// its bursts; /status shows the records its limit dropped, the running
// burst's included, once each; a bad berth.rate_limit label is reported for
// the container, which is collected all the same.
func TestRateLimitStatus(t *testing.T) {
	h := newHarness(t)
	h.src.setList(selected("c1", "web", "app:1"), selected("bad", "noisy", "app:1", collectors.LabelRateLimit, "lots"))
	h.start(testConfig())
	var last string
	waitDropped := func(what string, want int64) {
		t.Helper()
		waitFor(t, what, func() bool {
			c, ok := h.container("c1")
			last = fmt.Sprintf("%+v", c)
			return ok && c.Dropped == want
		}, func() string { return last })
	}

	a := h.col.waitBurst(t, "c1", 1)
	if a.spec.Rate == nil {
		t.Fatalf("%s has no rate state", a)
	}
	a.spec.Progress.Dropped.Add(7)
	waitDropped("status to show the 7 records the running burst dropped", 7)
	a.end(t, outcome{End: collectors.EndIdle, Dropped: 7})
	b := h.col.waitBurst(t, "c1", 2)
	if b.spec.Rate != a.spec.Rate {
		t.Errorf("burst #2 has rate state %p, burst #1 had %p: the buckets must outlive a burst", b.spec.Rate, a.spec.Rate)
	}
	waitDropped("status to show burst #1's 7 dropped records once", 7)
	b.spec.Progress.Dropped.Add(3)
	waitDropped("status to show 7 + 3 dropped", 10)

	if !b.spec.Follow || !a.spec.Follow {
		t.Errorf("%s, %s: want follow bursts", a, b)
	}
	h.col.waitBurst(t, "bad", 1)
	c, ok := h.container("bad")
	if !ok || c.State != StateStreaming || len(c.LabelErrors) != 1 || !strings.Contains(c.LabelErrors[0], collectors.LabelRateLimit+`="lots"`) {
		t.Errorf("bad: %+v, want it streaming with its label error", c)
	}
}

// TestUnparsedStatus: /status shows a container's lines sent unparsed, the
// running burst's included, once each: a container whose records have all
// arrived shows them before its burst ends.
func TestUnparsedStatus(t *testing.T) {
	h := newHarness(t)
	h.src.setList(selected("c1", "web", "app:1"))
	h.start(testConfig())
	var last string
	waitUnparsed := func(what string, want int64) {
		t.Helper()
		waitFor(t, what, func() bool {
			c, ok := h.container("c1")
			last = fmt.Sprintf("%+v", c)
			return ok && c.Unparsed == want
		}, func() string { return last })
	}
	a := h.col.waitBurst(t, "c1", 1)
	a.spec.Progress.Unparsed.Add(2)
	waitUnparsed("status to show the running burst's 2 unparsed lines", 2)
	a.end(t, outcome{End: collectors.EndIdle, Unparsed: 2})
	b := h.col.waitBurst(t, "c1", 2)
	waitUnparsed("status to show burst #1's 2 unparsed lines once", 2)
	b.spec.Progress.Unparsed.Add(1)
	waitUnparsed("status to show 2 + 1 unparsed lines", 3)
}
