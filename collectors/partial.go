package collectors

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/berthlog/berth/logs"
)

// Lines that never end. Docker keeps a line without its newline in its copier
// until 16 KiB of it or the container's exit, then writes what it has as a
// chunk without a newline; a progress bar (text and carriage returns, no
// newline) is such a line for as long as it runs, and the last output of a
// container that exits without a newline is one for good. The chunks of a
// line wait in the burst's pending line, outside the cursor, until the chunk
// that ends it. A line that has not ended is sent as it is, marked
// log.partial (logs.Record.Partial), and the cursor moves past its chunks:
//
//   - when its stream has brought no byte for partial_flush_timeout while the
//     burst waits for bytes (the flusher, beside the reader);
//   - when the log ends: the end of a read to the end (a stopped
//     container's), or of a follow stream whose container stopped;
//   - when the burst ends idle and idle_timeout is at least
//     partial_flush_timeout (a TTY's last chunk waits in the raw reader until
//     the next message's timestamp shows where it ends: only this end and
//     EOF send it).
//
// What the line writes afterwards (the rest of the progress bar, its
// newline) is a record of its own: at least once, as everywhere, so the
// flushed part is never sent again, and nothing is dropped at a re-attach.

// holding says whether the reader holds anything a wait may have to send:
// a multiline record being joined, or a line that has not ended.
func (st *burstState) holding() bool {
	return st.pending[0].active || st.pending[1].active ||
		(st.rules != nil && (st.join[0].Held() || st.join[1].Held()))
}

// flushPartial emits stream i's pending line, if any, as a record marked
// partial and moves the cursor past its chunks. The stream's multiline
// record, older than the line, goes first.
func (st *burstState) flushPartial(i int) {
	p := &st.pending[i]
	if !p.active {
		return
	}
	if st.rules != nil {
		st.closeHeld(i)
	}
	p.active = false
	st.emit(logs.Stream(i+1), p.ts, p.buf, p.truncated)
	st.batch.Records[len(st.batch.Records)-1].Partial = true
	st.cursor.Streams[i].Merge(&p.bound)
}

// closeDue sends what has waited for bytes long enough: multiline records
// after multiline.timeout, lines that have not ended after partial (zero:
// never). It returns how long until the next of what it still holds is due;
// zero when nothing is.
func (st *burstState) closeDue(waited, partial time.Duration) time.Duration {
	var next time.Duration
	due := func(after time.Duration) bool {
		if waited >= after {
			return true
		}
		if left := after - waited; next == 0 || left < next {
			next = left
		}
		return false
	}
	for i := range st.pending {
		if st.rules != nil && st.join[i].Held() && due(st.rules.Timeout) {
			st.closeHeld(i)
		}
		if st.pending[i].active && partial > 0 && due(partial) {
			st.flushPartial(i)
		}
	}
	return next
}

// idlePartials sends the lines that have not ended when a burst ends idle,
// if idle_timeout is at least partial (they waited that long). On a TTY's
// raw stream a message without a newline may still be in the raw reader: a
// stream quiet for idle_timeout has sent it whole.
func (st *burstState) idlePartials(idle, partial time.Duration) {
	if partial <= 0 || idle < partial {
		return
	}
	if st.tty {
		// The bytes held may be several messages (two chunks of one line):
		// each is cut at its boundary, so that its position is its own and
		// a re-attach recognises it.
		for {
			msg, cut := st.raw.held()
			if len(msg) == 0 {
				break
			}
			ts, content, complete, err := st.ts.parseMessage(msg)
			if err != nil {
				break
			}
			h := logs.MessageHash(content)
			if !st.cursor.Seen(logs.Stdout, ts, h) {
				st.add(logs.Stdout, ts, h, content, complete || cut, cut)
			}
		}
	}
	st.flushPartial(0)
	st.flushPartial(1)
}

// endPartials sends the lines that have not ended when the log has: the
// end of a read to the end (not following), or of a follow stream whose
// container stopped (or stopped and started again). A follow stream's end
// alone does not say it: the inspect after it does.
func (c *Collector) endPartials(ctx context.Context, st *burstState, meta *atomic.Pointer[logs.Meta], res *BurstResult) {
	st.flushPartial(0)
	st.flushPartial(1)
	if err := c.flush(ctx, st, meta, res); err != nil {
		res.End, res.Err = EndError, err
	}
}

// held returns the next message the raw reader holds, without reading:
// one cut at its boundary, else all it holds (a stream quiet for
// idle_timeout has sent its last message whole); nil when it holds none.
// cut says the message was cut at the line limit.
func (rr *rawReader) held() (msg []byte, cut bool) {
	if msg, cut, ok := rr.cut(); ok {
		return msg, cut
	}
	return rr.rest(), false
}

// rest returns the bytes the raw reader holds that it has not returned, and
// forgets them.
func (rr *rawReader) rest() []byte {
	if rr.drop || rr.off >= len(rr.acc) {
		return nil
	}
	msg := rr.acc[rr.off:]
	rr.off = len(rr.acc)
	return msg
}
