package events

import (
	"time"

	"github.com/berthlog/berth/collectors"
)

// GapStatus is the last stretch of a container's log that Docker had
// rotated away before berth read it (see collectors.Gap): the lines of
// Stream stamped after From and before To, if any, were never read.
type GapStatus struct {
	Stream  string    `json:"stream"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Seconds float64   `json:"seconds"`
	// Count is the gaps found in the container's log since berth started.
	Count int `json:"count"`
}

// reportGaps says which stretches of the container's log the burst found
// rotated away, and keeps the last for Status. A gap is reported once: the
// burst's cursor moves past it.
func (r *run) reportGaps(ct *container, res *collectors.BurstResult) {
	for _, g := range res.Gaps {
		if g.IsZero() {
			continue
		}
		ct.gaps++
		ct.lastGap = g
		r.log.Warn("container log lines lost: Docker had rotated them away before berth read them",
			"container", ct.name, "id", short(ct.id), "stream", g.Stream.String(),
			"from", g.From.Format(time.RFC3339Nano), "to", g.To.Format(time.RFC3339Nano), "duration", g.Duration())
	}
}

// gapStatus is the container's GapStatus; nil when it had none.
func gapStatus(ct *container) *GapStatus {
	if ct.gaps == 0 {
		return nil
	}
	g := ct.lastGap
	return &GapStatus{Stream: g.Stream.String(), From: g.From, To: g.To, Seconds: g.Duration().Seconds(), Count: ct.gaps}
}
