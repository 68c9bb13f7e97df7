package collectors

import (
	"time"

	"github.com/berthlog/berth/logs"
)

// Gap is a stretch of a container's log that Docker no longer held when
// berth asked for it: rotated away (json-file or local max-size/max-file)
// while berth was held back or stopped. The lines of Stream stamped after
// From and before To, if there were any, were never read.
//
// How it is known: a re-attach asks from the cursor (since is inclusive),
// so while Docker holds the stream's newest consumed line the response
// brings that line again before any newer one of the stream. When the
// stream's first message in a response that reaches back to since is newer
// than the cursor, the cursor's line is gone, and so is every line written
// between it and that message. berth cannot tell how many there were (none,
// if the line berth had read was the last of the file that was removed);
// it reports the range, never a count. A stream whose cursor is only a
// threshold (initial_position: end) or that has no cursor is not judged.
type Gap struct {
	Stream logs.Stream
	From   time.Time // the stream's cursor: the newest line berth had read
	To     time.Time // the oldest line of the stream Docker still held
}

// IsZero reports whether no gap is recorded.
func (g Gap) IsZero() bool { return g.Stream == 0 }

// Duration is the time the gap spans.
func (g Gap) Duration() time.Duration { return g.To.Sub(g.From) }

// gapWatch judges the first message of each stream in one response: the one
// place that decides a gap. It is armed per response and costs one branch
// per message once both streams are judged.
type gapWatch struct {
	// bound is each stream's boundary when the response started; zero once
	// the stream is judged, or when it cannot be.
	bound    [2]time.Time
	watching bool
	// found is the gap of each stream found in this burst, by Stream-1.
	found [2]Gap
}

// arm prepares for a response read from cursor c. unbounded says the
// response holds every message since c.Since(): a bounded tail is judged
// only once its first message shows where its window starts (see first).
func (g *gapWatch) arm(c *logs.Cursor) {
	g.watching = false
	for i := range g.bound {
		g.bound[i] = c.Streams[i].Time
		if len(c.Streams[i].Hashes) == 0 {
			// A boundary without the lines consumed at it cannot tell a
			// replay: not judged.
			g.bound[i] = time.Time{}
		}
		g.watching = g.watching || !g.bound[i].IsZero()
	}
}

// windowStarts takes the first message of a bounded tail, stamped ts: a
// stream whose boundary is older than the window's start may have its line
// before the window, not rotated away, and is not judged. Docker does not
// write the two streams in strict timestamp order, so a boundary within
// streamSkew after the window's start is not judged either.
func (g *gapWatch) windowStarts(ts time.Time) {
	for i := range g.bound {
		if g.bound[i].Before(ts.Add(streamSkew)) {
			g.bound[i] = time.Time{}
		}
	}
	g.watching = !g.bound[0].IsZero() || !g.bound[1].IsZero()
}

// streamSkew bounds how much older than a message of one stream a message
// of the other stream written after it in the log may be stamped.
const streamSkew = time.Second

// see judges a message of stream s stamped ts; old is what the cursor said
// of it. The first message of a stream is the oldest the response holds of
// it: when it is new and newer than the boundary, the boundary's line is no
// longer in the log. It returns true when it found a gap.
func (g *gapWatch) see(s logs.Stream, ts time.Time, old bool) bool {
	i := s - 1
	b := g.bound[i]
	if b.IsZero() {
		return false
	}
	g.bound[i] = time.Time{}
	g.watching = !g.bound[1-i].IsZero()
	if old || !ts.After(b) {
		return false
	}
	g.found[i] = Gap{Stream: s, From: b, To: ts}
	return true
}
