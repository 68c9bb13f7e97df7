package logs

import (
	"hash/crc32"
	"time"
)

// Cursor is where a container's log has been read up to. Docker's since is
// inclusive at nanosecond precision, the daemon does not deliver stdout and
// stderr in timestamp order, and distinct lines can share a timestamp; so the
// cursor keeps, per stream, the newest timestamp consumed and the hashes of
// the messages consumed at exactly that timestamp (the chunks of a long line
// share one). A re-attach drops a message when it is older than its stream's
// boundary, or at the boundary's timestamp and part of the boundary's
// sequence: the first such message may match any boundary hash (a tail window
// can start inside the sequence), the following ones must match the next
// hashes in order. Two messages of one stream with the same content at the
// same nanosecond are told apart only by their order.
//
// Threshold is a floor for every stream: messages at or before it are old.
// berth sets it when it starts at the end of a log it has not read
// (initial_position: end), so that the lines before it are never sent. A
// message stamped on a whole second (a daemon that sends whole-second
// timestamps: Podman) is old only when that whole second is before the
// threshold's: the lines of the threshold's own second are sent.
type Cursor struct {
	Threshold time.Time
	Streams   [2]StreamCursor // indexed by Stream-1
}

// StreamCursor is the boundary of one stream: the newest timestamp consumed
// and the hashes of the messages consumed at exactly that timestamp, in order.
type StreamCursor struct {
	Time   time.Time
	Hashes []uint32
	next   int // the boundary hash the current response must match next; -1: none matched yet
	// live says that the current response has already brought a new message
	// of this stream: its replayed start is over (see Seen).
	live bool
	// recent is what the current response brought, to tell the daemon
	// going back from the clock stepping back (see Seen).
	recent recentMessages
}

// BeginningCursor reads a log from its first line.
func BeginningCursor() Cursor { return Cursor{} }

// EndCursor reads only the lines written after t.
func EndCursor(t time.Time) Cursor { return Cursor{Threshold: t} }

// IsBeginning reports whether nothing has been consumed and no threshold is
// set: the whole log is to be read.
func (c *Cursor) IsBeginning() bool {
	return c.Threshold.IsZero() && c.Streams[0].Time.IsZero() && c.Streams[1].Time.IsZero()
}

// Since is the lower bound to request: the oldest position any stream may
// still need. A stream without a boundary may still have unseen lines anywhere
// after the threshold (the daemon does not order the streams by time), so it
// bounds since by the threshold, or leaves it unbounded. Zero means no bound;
// with no boundary at all there is none, so that the old lines a bounded tail
// returns show that it reached the cursor.
func (c *Cursor) Since() time.Time {
	if c.Streams[0].Time.IsZero() && c.Streams[1].Time.IsZero() {
		return time.Time{}
	}
	var since time.Time
	for i := range c.Streams {
		t := c.Streams[i].Time
		if t.IsZero() {
			t = c.Threshold
		}
		if t.IsZero() {
			return time.Time{}
		}
		if since.IsZero() || t.Before(since) {
			since = t
		}
	}
	return since
}

// Newest is the newest timestamp the cursor has consumed.
func (c *Cursor) Newest() time.Time {
	n := c.Threshold
	for i := range c.Streams {
		if c.Streams[i].Time.After(n) {
			n = c.Streams[i].Time
		}
	}
	return n
}

// Rewind prepares the cursor for a new response: replayed boundary messages
// are matched from the first one again.
func (c *Cursor) Rewind() {
	for i := range c.Streams {
		c.Streams[i].next = -1
		c.Streams[i].live = false
		c.Streams[i].recent.reset()
	}
}

// Seen reports whether a message was consumed before, and if it matches a
// boundary hash it moves past it.
//
// The replayed start of a response (a re-attach asks from the boundary on)
// is matched against the boundary. After a stream's first new message in a
// response, a message older than the boundary is either the daemon sending a
// stretch of the log again (Docker's json-file follow reader does so around a
// rotation) or a line written after the host clock stepped back: it is a
// replay only if this response already brought it (same timestamp and
// content, among the stream's last recentSize messages); otherwise it is new.
// So a clock step loses nothing, and a replay longer than recentSize is sent
// again (at least once, never lost).
func (c *Cursor) Seen(s Stream, ts time.Time, h uint32) bool {
	sc := &c.Streams[s-1]
	if sc.live && ts.Before(sc.Time) {
		if sc.recent.has(ts, h) {
			// The messages at the boundary's timestamp that follow are
			// the boundary's again: match them from the first, as at the
			// start of a response.
			sc.next = -1
			return true
		}
		sc.recent.add(ts, h)
		return false
	}
	if !sc.live && !c.Threshold.IsZero() && !latest(ts).After(c.Threshold) {
		return true
	}
	switch {
	case sc.Time.IsZero() || ts.After(sc.Time):
		sc.live = true
		sc.recent.add(ts, h)
		return false
	case ts.Before(sc.Time):
		return true
	}
	if sc.next < 0 {
		for j, x := range sc.Hashes {
			if x == h {
				sc.next = j + 1
				return true
			}
		}
	} else if sc.next < len(sc.Hashes) && sc.Hashes[sc.next] == h {
		sc.next++
		return true
	}
	sc.next = len(sc.Hashes) // the rest at this timestamp is new
	sc.live = true
	sc.recent.add(ts, h)
	return false
}

// latest is the latest instant a message stamped ts may have been written.
// A timestamp without a fraction of a second is taken as whole-second
// precision (Podman before 5.8 truncates every timestamp to the second): the
// line may have been written up to a second later. Compared with the
// threshold, such a line in the threshold's second is sent rather than lost;
// Docker stamps a line on an exact second once in a billion.
func latest(ts time.Time) time.Time {
	if ts.Nanosecond() == 0 {
		return ts.Add(time.Second - time.Nanosecond)
	}
	return ts
}

// recentSize is how many of a stream's messages of the current response are
// remembered to recognise the daemon sending them again.
const recentSize = 1024

// recentMessages is a ring of the last recentSize messages (timestamp and
// content hash) a stream brought in the current response. It belongs to the
// working cursor of a burst: copies and clones of a cursor do not carry it.
type recentMessages struct {
	nanos  []int64
	hashes []uint32
	pos    int // where the next message goes once the ring is full
}

func (r *recentMessages) add(ts time.Time, h uint32) {
	if len(r.nanos) < recentSize {
		r.nanos = append(r.nanos, ts.UnixNano())
		r.hashes = append(r.hashes, h)
		return
	}
	r.nanos[r.pos], r.hashes[r.pos] = ts.UnixNano(), h
	r.pos = (r.pos + 1) % recentSize
}

func (r *recentMessages) has(ts time.Time, h uint32) bool {
	n := ts.UnixNano()
	for i := range r.nanos {
		if r.nanos[i] == n && r.hashes[i] == h {
			return true
		}
	}
	return false
}

// reset empties the ring, keeping its memory.
func (r *recentMessages) reset() {
	r.nanos, r.hashes, r.pos = r.nanos[:0], r.hashes[:0], 0
}

// Advance records a consumed message.
func (sc *StreamCursor) Advance(ts time.Time, h uint32) {
	if ts.After(sc.Time) {
		sc.Time = ts
		sc.Hashes = sc.Hashes[:0]
	} else if ts.Before(sc.Time) {
		return
	}
	sc.Hashes = append(sc.Hashes, h)
	sc.next = len(sc.Hashes)
}

// Merge advances sc by every message recorded in o (a line's chunks).
func (sc *StreamCursor) Merge(o *StreamCursor) {
	for _, h := range o.Hashes {
		sc.Advance(o.Time, h)
	}
}

// Reset empties a pending line's boundary, keeping its memory.
func (sc *StreamCursor) Reset() {
	sc.Time = time.Time{}
	sc.Hashes = sc.Hashes[:0]
	sc.next = -1
	sc.live = false
}

// CopyFrom makes c an independent copy of o, reusing c's memory.
func (c *Cursor) CopyFrom(o *Cursor) {
	c.Threshold = o.Threshold
	for i := range c.Streams {
		c.Streams[i].Time = o.Streams[i].Time
		c.Streams[i].Hashes = append(c.Streams[i].Hashes[:0], o.Streams[i].Hashes...)
		c.Streams[i].next = o.Streams[i].next
		c.Streams[i].live = o.Streams[i].live
	}
}

// Clone returns an independent copy of the cursor.
func (c Cursor) Clone() Cursor {
	var n Cursor
	n.CopyFrom(&c)
	return n
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// MessageHash identifies a message's content at the boundary. CRC-32C is
// computed in hardware and is stable across restarts, so a persisted cursor
// still matches after berth restarts.
func MessageHash(content []byte) uint32 { return crc32.Checksum(content, castagnoli) }
