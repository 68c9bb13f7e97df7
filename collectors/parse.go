package collectors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/berthlog/berth/logs"
)

// A Docker log message, as the daemon writes it with timestamps=1:
//
//	2024-05-01T10:20:30.123456789Z <content>\n     a complete line
//	2024-05-01T10:20:30.123456789Z <16 KiB of content>  a partial chunk
//
// Non-TTY containers send each message in one stdcopy frame (8-byte header:
// stream, 0, 0, 0, big-endian size). TTY containers send the messages raw, one
// after another, so a partial chunk is followed directly by the next
// message's timestamp.

const (
	// tsWidth is the width of Docker's fixed-width UTC timestamp
	// (RFC3339NanoFixed) followed by one space.
	tsWidth = len("2006-01-02T15:04:05.000000000Z ")
	// chunkSize is the size at which Docker's log copier splits a line that
	// has no newline yet; every chunk but the last is exactly this long.
	chunkSize = 16 * 1024
	// frameHeaderLen is the size of a stdcopy frame header.
	frameHeaderLen = 8
	// stdcopySystemErr is the stdcopy stream number of an error the daemon
	// reports inside the stream.
	stdcopySystemErr = 3
)

// ErrMalformedMessage says that a log message did not start with a timestamp
// berth can use: none, or one at or before year 1 (see minTimestamp). It ends
// a burst through backoff rather than being passed on as a line.
var ErrMalformedMessage = errors.New("log message without a timestamp")

// minTimestamp is the first instant a message's timestamp may have: the
// start of year 2. A zero time.Time (0001-01-01T00:00:00Z) means "no
// position" to the cursor and the checkpoints, so a message stamped then (or
// earlier: no daemon writes such a time; a broken or hostile stream does)
// would be taken as never read and sent again on every re-attach.
var minTimestamp = time.Date(2, time.January, 1, 0, 0, 0, 0, time.UTC)

// DaemonStreamError is an error the daemon wrote inside a logs stream instead
// of a log line ("Error grabbing logs: ..."), or on the stdcopy error stream.
type DaemonStreamError struct{ Message string }

// Error says that the daemon reported the error, and what it wrote.
func (e *DaemonStreamError) Error() string { return "daemon reported in the logs stream: " + e.Message }

// daemonStreamError recognizes the errors that the daemon writes into a logs
// stream as text. It is the one place where berth matches a daemon message
// by its words.
func daemonStreamError(payload []byte) (*DaemonStreamError, bool) {
	const prefix = "Error grabbing logs: "
	if bytes.HasPrefix(payload, []byte(prefix)) {
		return &DaemonStreamError{Message: string(bytes.TrimRight(payload, "\r\n"))}, true
	}
	return nil, false
}

// parseMessage splits one Docker log message into its timestamp and content.
// complete reports whether the message ended a line; the content never
// includes the line's newline. The cache remembers the last date parsed.
func (c *tsCache) parseMessage(p []byte) (ts time.Time, content []byte, complete bool, err error) {
	ts, rest, err := c.parseTimestamp(p)
	if err != nil {
		return time.Time{}, nil, false, err
	}
	if n := len(rest); n > 0 && rest[n-1] == '\n' {
		return ts, rest[:n-1], true, nil
	}
	return ts, rest, false, nil
}

// parseTimestamp reads the timestamp at the start of a message and returns
// the content after the separating space. The fixed-width UTC form the daemon
// writes is parsed without allocating; any other RFC 3339 form falls back to
// time.Parse.
func (c *tsCache) parseTimestamp(p []byte) (time.Time, []byte, error) {
	if len(p) >= tsWidth && p[tsWidth-2] == 'Z' && p[tsWidth-1] == ' ' {
		if t, ok := c.parse(p[:tsWidth-1]); ok {
			if t.Before(minTimestamp) {
				return time.Time{}, nil, fmt.Errorf("%w: %s is at or before year 1", ErrMalformedMessage, p[:tsWidth-1])
			}
			return t, p[tsWidth:], nil
		}
	}
	sp := bytes.IndexByte(p, ' ')
	if sp <= 0 || sp > 64 {
		return time.Time{}, nil, ErrMalformedMessage
	}
	t, err := time.Parse(time.RFC3339Nano, string(p[:sp]))
	if err != nil {
		return time.Time{}, nil, fmt.Errorf("%w: %v", ErrMalformedMessage, err)
	}
	if t.Before(minTimestamp) {
		return time.Time{}, nil, fmt.Errorf("%w: %s is at or before year 1", ErrMalformedMessage, p[:sp])
	}
	return t, p[sp+1:], nil
}

// parseFixedUTC parses "2006-01-02T15:04:05.000000000Z".
func parseFixedUTC(b []byte) (time.Time, bool) {
	var c tsCache
	return c.parse(b)
}

// tsCache parses fixed-width UTC timestamps, remembering the last date: the
// lines of a stream share it for a day, and the time of day is then a few
// multiplications.
type tsCache struct {
	day     [10]byte // "2006-01-02" of dayUnix; zero: empty
	dayUnix int64
}

func (c *tsCache) parse(b []byte) (time.Time, bool) {
	if len(b) != 30 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' ||
		b[16] != ':' || b[19] != '.' || b[29] != 'Z' {
		return time.Time{}, false
	}
	hour, ok1 := digits2(b[11], b[12])
	minute, ok2 := digits2(b[14], b[15])
	sec, ok3 := digits2(b[17], b[18])
	nsec := 0
	for _, d := range b[20:29] {
		if d < '0' || d > '9' {
			return time.Time{}, false
		}
		nsec = nsec*10 + int(d-'0')
	}
	if !(ok1 && ok2 && ok3) || hour > 23 || minute > 59 || sec > 60 {
		return time.Time{}, false
	}
	if c.day[0] == 0 || [10]byte(b[:10]) != c.day {
		y1, ok1 := digits2(b[0], b[1])
		y2, ok2 := digits2(b[2], b[3])
		month, ok3 := digits2(b[5], b[6])
		day, ok4 := digits2(b[8], b[9])
		if !(ok1 && ok2 && ok3 && ok4) || month < 1 || month > 12 || day < 1 || day > 31 {
			return time.Time{}, false
		}
		c.dayUnix = time.Date(y1*100+y2, time.Month(month), day, 0, 0, 0, 0, time.UTC).Unix()
		c.day = [10]byte(b[:10])
	}
	return time.Unix(c.dayUnix+int64(hour*3600+minute*60+sec), int64(nsec)).UTC(), true
}

func digits2(a, b byte) (int, bool) {
	if a < '0' || a > '9' || b < '0' || b > '9' {
		return 0, false
	}
	return int(a-'0')*10 + int(b-'0'), true
}

// looksLikeTimestamp reports whether b starts with a fixed-width timestamp and
// its space: the start of the next message in a raw (TTY) stream.
func looksLikeTimestamp(b []byte) bool {
	if len(b) < tsWidth || b[tsWidth-1] != ' ' {
		return false
	}
	_, ok := parseFixedUTC(b[:tsWidth-1])
	return ok
}

// messageReader yields the messages of one logs response.
type messageReader interface {
	// next returns the stream and the bytes of the next message (timestamp
	// included). The bytes are valid until the next call. truncated reports
	// that the message was larger than the reader keeps and was cut.
	next() (s logs.Stream, msg []byte, truncated bool, err error)
	// buffered reports whether bytes are waiting that next can return
	// without reading from the connection.
	buffered() bool
}

// frameReader reads stdcopy frames directly from the response, without a
// demultiplexing goroutine or pipe: a frame that fits in the bufio buffer is
// returned in place.
type frameReader struct {
	r     *bufio.Reader
	big   []byte // reused for frames larger than the bufio buffer
	limit int    // frames beyond this are cut (the rest is discarded)
}

func (f *frameReader) buffered() bool { return f.r != nil && f.r.Buffered() > 0 }

func (f *frameReader) next() (logs.Stream, []byte, bool, error) {
	hdr, err := f.r.Peek(frameHeaderLen)
	if err != nil {
		if errors.Is(err, io.EOF) && len(hdr) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, false, err
	}
	kind := hdr[0]
	size := int(binary.BigEndian.Uint32(hdr[4:8]))
	if _, err := f.r.Discard(frameHeaderLen); err != nil {
		return 0, nil, false, err
	}
	var payload []byte
	truncated := false
	if size <= f.r.Size() {
		payload, err = f.r.Peek(size)
		if err != nil {
			return 0, nil, false, eofIsUnexpected(err)
		}
		_, _ = f.r.Discard(size)
	} else {
		keep := min(size, f.limit)
		if cap(f.big) < keep {
			f.big = make([]byte, keep)
		}
		payload = f.big[:keep]
		if _, err := io.ReadFull(f.r, payload); err != nil {
			return 0, nil, false, eofIsUnexpected(err)
		}
		if size > keep {
			truncated = true
			if _, err := f.r.Discard(size - keep); err != nil {
				return 0, nil, false, eofIsUnexpected(err)
			}
		}
	}
	switch kind {
	case byte(logs.Stdout), byte(logs.Stderr):
		return logs.Stream(kind), payload, truncated, nil
	case stdcopySystemErr:
		return 0, nil, false, &DaemonStreamError{Message: string(bytes.TrimSpace(payload))}
	default:
		return 0, nil, false, fmt.Errorf("%w: stdcopy frame with unknown stream %d", ErrMalformedMessage, kind)
	}
}

func eofIsUnexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// rawReader cuts a TTY container's raw stream into messages. A message ends
// at its newline, or after chunkSize bytes of content when the next message's
// timestamp follows directly (a partial chunk).
type rawReader struct {
	r     *bufio.Reader
	acc   []byte // bytes read but not yet returned
	off   int    // start of the unreturned bytes in acc
	limit int    // a message that grows beyond this without a boundary is cut
	drop  bool   // discarding the rest of a cut message up to its newline
	// end is the error that ended the stream (io.EOF): acc holds all that
	// is left of it.
	end error
}

func (rr *rawReader) buffered() bool {
	return (rr.r != nil && rr.r.Buffered() > 0) || rr.off < len(rr.acc)
}

func (rr *rawReader) next() (logs.Stream, []byte, bool, error) {
	for {
		if msg, truncated, ok := rr.cut(); ok {
			return logs.Stdout, msg, truncated, nil
		}
		if rr.end != nil {
			// What is left after the last boundary is the stream's last
			// message, a chunk without a newline.
			if msg := rr.rest(); len(msg) > 0 {
				return logs.Stdout, msg, false, nil
			}
			return 0, nil, false, rr.end
		}
		if rr.off > 0 {
			rr.acc = append(rr.acc[:0], rr.acc[rr.off:]...)
			rr.off = 0
		}
		chunk, err := rr.r.ReadSlice('\n')
		if rr.drop {
			if err == nil {
				rr.drop = false
			}
		} else {
			rr.acc = append(rr.acc, chunk...)
		}
		switch {
		case err == nil || errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			// The bytes that came with the end may hold several messages
			// (a partial chunk, then the container's last output): they
			// are cut at their boundaries like any others.
			rr.end = err
		default:
			return 0, nil, false, err
		}
	}
}

// cut returns the next whole message in acc, if there is one. A message ends
// at its newline, or, when it is a partial chunk, where the next message's
// timestamp starts. A partial chunk holds 16 KiB of the container's output,
// but json-file stores a UTF-8 character split by the chunking (or any
// invalid byte) as U+FFFD, so the daemon may return a few bytes more: the
// boundary is the first timestamp at or after 16 KiB of content.
func (rr *rawReader) cut() (msg []byte, truncated, ok bool) {
	a := rr.acc[rr.off:]
	if len(a) == 0 {
		return nil, false, false
	}
	minCut := tsWidth + chunkSize
	nl := bytes.IndexByte(a, '\n')
	if nl >= 0 && nl < minCut {
		rr.off += nl + 1
		return a[:nl+1], false, true
	}
	end := len(a)
	if nl >= 0 {
		end = nl
	}
	for p := minCut; p+tsWidth <= end; p++ {
		if a[p] >= '0' && a[p] <= '9' && looksLikeTimestamp(a[p:]) {
			rr.off += p
			return a[:p], false, true
		}
	}
	if nl >= 0 {
		rr.off += nl + 1
		return a[:nl+1], false, true
	}
	if len(a) >= rr.limit {
		rr.off = len(rr.acc)
		rr.drop = true
		return a, true, true
	}
	return nil, false, false
}
