package collectors

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/berthlog/berth/logs"
)

// Fuzz targets for the parsers of the bytes the daemon sends. `go test` runs
// their seeds (below and testdata/fuzz/FuzzX) as ordinary tests; make test
// also fuzzes each for a few seconds (scripts/test.sh).

// shortReader returns at most n bytes per Read, as a socket may: the readers
// must not depend on how the stream arrives.
type shortReader struct {
	r io.Reader
	n int
}

func (s *shortReader) Read(p []byte) (int, error) {
	if len(p) > s.n {
		p = p[:s.n]
	}
	return s.r.Read(p)
}

// fuzzReader gives the stream to a bufio.Reader of bufSize bytes in reads of
// at most chunk bytes (as much as asked when chunk is 0).
func fuzzReader(data []byte, bufSize int, chunk uint8) *bufio.Reader {
	var r io.Reader = bytes.NewReader(data)
	if chunk > 0 {
		r = &shortReader{r: r, n: int(chunk)}
	}
	return bufio.NewReaderSize(r, bufSize)
}

type frameOut struct {
	s   logs.Stream
	msg string
	cut bool
}

// frameModel is the reference for frameReader over a whole stream: the
// messages it must return, then the error that ends it (io.EOF only at a frame
// boundary, io.ErrUnexpectedEOF for a torn header or payload, a
// *DaemonStreamError for stream 3, ErrMalformedMessage for another stream). A
// payload longer than both the buffer and the limit is cut to the limit.
func frameModel(data []byte, bufSize, limit int) ([]frameOut, error) {
	var out []frameOut
	for {
		if len(data) == 0 {
			return out, io.EOF
		}
		if len(data) < frameHeaderLen {
			return out, io.ErrUnexpectedEOF
		}
		kind := data[0]
		size := uint64(data[4])<<24 | uint64(data[5])<<16 | uint64(data[6])<<8 | uint64(data[7])
		data = data[frameHeaderLen:]
		if uint64(len(data)) < size {
			return out, io.ErrUnexpectedEOF
		}
		payload, cut := data[:size], false
		data = data[size:]
		if int(size) > bufSize && int(size) > limit {
			payload, cut = payload[:limit], true
		}
		switch kind {
		case 1, 2:
			out = append(out, frameOut{logs.Stream(kind), string(payload), cut})
		case 3:
			return out, &DaemonStreamError{Message: string(bytes.TrimSpace(payload))}
		default:
			return out, ErrMalformedMessage
		}
	}
}

// readFrames runs a frameReader over data to its first error, checking on the
// way that no message is longer than its frame said, nor than the larger of
// the buffer and the limit, and that a cut message is exactly the limit.
func readFrames(t *testing.T, data []byte, bufSize, limit int, chunk uint8) ([]frameOut, error) {
	t.Helper()
	fr := &frameReader{r: fuzzReader(data, bufSize, chunk), limit: limit}
	var out []frameOut
	pos := 0 // offset of the next frame header in data
	for {
		s, msg, cut, err := fr.next()
		if err != nil {
			return out, err
		}
		size := int(uint32(data[pos+4])<<24 | uint32(data[pos+5])<<16 | uint32(data[pos+6])<<8 | uint32(data[pos+7]))
		if len(msg) > size {
			t.Fatalf("frame at %d: message of %d bytes from a frame of %d", pos, len(msg), size)
		}
		if len(msg) > max(fr.r.Size(), limit) {
			t.Fatalf("frame at %d: message of %d bytes, beyond both the buffer (%d) and the limit (%d)", pos, len(msg), fr.r.Size(), limit)
		}
		if cut != (len(msg) < size) || (cut && len(msg) != limit) {
			t.Fatalf("frame at %d: %d of %d bytes, cut %v (limit %d)", pos, len(msg), size, cut, limit)
		}
		if s != logs.Stdout && s != logs.Stderr {
			t.Fatalf("frame at %d: stream %d", pos, s)
		}
		out = append(out, frameOut{s, string(msg), cut})
		pos += frameHeaderLen + size
		if len(out) > len(data) {
			t.Fatalf("%d messages from %d bytes", len(out), len(data))
		}
	}
}

// sameEnd reports whether the reader's error is the model's: the same
// sentinel (wrapped or not), or a daemon error with the same message.
func sameEnd(got, want error) bool {
	var gd, wd *DaemonStreamError
	switch {
	case errors.As(want, &wd):
		return errors.As(got, &gd) && gd.Message == wd.Message
	case want == io.EOF:
		return got == io.EOF
	default:
		return errors.Is(got, want)
	}
}

// FuzzFrameReader: for any bytes, frameReader returns exactly the messages
// and the ending error of frameModel, never a message longer than its frame,
// and never panics; and a stream of well-formed frames built from the input
// round-trips (every payload, in order, then io.EOF).
func FuzzFrameReader(f *testing.F) {
	line := ts1 + " hello\n"
	cat := func(frames ...[]byte) []byte { return bytes.Join(frames, nil) }
	f.Add(cat(frame(1, line), frame(2, ts1+" oops\n")), uint16(4096), uint16(1024), uint8(0))
	f.Add(cat(frame(1, line), frame(1, ""), frame(2, line)), uint16(16), uint16(8), uint8(3))
	f.Add(cat(frame(1, strings.Repeat("x", 300)), frame(2, "yz")), uint16(64), uint16(100), uint8(0))         // larger than buffer and limit: cut
	f.Add(cat(frame(1, strings.Repeat("x", 300)), frame(2, "yz")), uint16(64), uint16(500), uint8(7))         // larger than the buffer only
	f.Add(cat(frame(1, line), frame(3, "Error grabbing logs: boom\n")), uint16(4096), uint16(1024), uint8(0)) // daemon error
	f.Add(cat(frame(1, line), frame(7, "x")), uint16(4096), uint16(1024), uint8(0))                           // unknown stream
	f.Add(frame(1, line)[:5], uint16(4096), uint16(1024), uint8(0))                                           // torn header
	f.Add(frame(1, line)[:12], uint16(16), uint16(4), uint8(1))                                               // torn payload
	f.Add([]byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 'a'}, uint16(16), uint16(4), uint8(0))                   // a size far beyond the data
	f.Fuzz(func(t *testing.T, data []byte, bufSize, limit uint16, chunk uint8) {
		bs := max(16, int(bufSize%4097)) // bufio's smallest buffer is 16 bytes
		lim := max(1, int(limit%4097))

		// Any bytes: the reader agrees with the model.
		got, err := readFrames(t, data, bs, lim, chunk)
		want, wantErr := frameModel(data, bs, lim)
		if !sameEnd(err, wantErr) {
			t.Fatalf("ended with %v, want %v", err, wantErr)
		}
		if !equalFrames(got, want) {
			t.Fatalf("messages %q, want %q", got, want)
		}

		// Well-formed frames: the input cut after each newline, each piece
		// one frame, on stdout or stderr by its first byte.
		var stream []byte
		want = want[:0]
		for i, p := range bytes.SplitAfter(data, []byte("\n")) {
			s := logs.Stream(1 + i%2)
			if len(p) > 0 {
				s = logs.Stream(1 + p[0]%2)
			}
			stream = append(stream, frame(byte(s), string(p))...)
			if len(p) > bs && len(p) > lim {
				want = append(want, frameOut{s, string(p[:lim]), true})
			} else {
				want = append(want, frameOut{s, string(p), false})
			}
		}
		got, err = readFrames(t, stream, bs, lim, chunk)
		if err != io.EOF {
			t.Fatalf("well-formed stream ended with %v, want io.EOF", err)
		}
		if !equalFrames(got, want) {
			t.Fatalf("round trip: got %q, want %q", got, want)
		}
	})
}

func equalFrames(a, b []frameOut) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzRawReader checks the TTY cutter on any bytes (with an optional run of
// filler inserted, to reach Docker's 16 KiB chunks), in any buffer size, limit
// and read size:
//   - it never panics, returns only non-empty stdout messages and ends with
//     io.EOF;
//   - a message is at most limit+bufSize-1 bytes: the limit is checked before
//     each read of at most one buffer (max_line_bytes itself is enforced
//     when the burst clips the line, see FuzzBurstReread);
//   - a cut message (truncated) holds at least limit bytes;
//   - the messages are the input: m1 d1 m2 d2 ... where d_i is empty unless
//     m_i was cut, in which case it is the rest of that line through its
//     newline (or to the end);
//   - each message ends at its first newline, or, without a newline, at the
//     first timestamp at or after tsWidth+chunkSize bytes, or where it was
//     cut, or at the end of the input. The last piece before EOF is returned
//     whole, without looking for timestamps in it.
func FuzzRawReader(f *testing.F) {
	ts2 := "2024-05-01T10:20:30.223456789Z"
	f.Add([]byte(ts1+" one\r\n"+ts1+" two\r\n"+ts2+" last without newline"), uint16(0), uint16(0), uint16(4096), uint32(1<<20), uint8(0))
	// A partial chunk: 16 KiB of filler after "ts1 ", then the next message's timestamp.
	f.Add([]byte(ts1+" "+ts2+" tail\r\n"+ts2+" \r\n"), uint16(chunkSize), uint16(tsWidth), uint16(4096), uint32(1<<20), uint8(0))
	f.Add([]byte(ts1+" "+ts2+" tail\r\n"), uint16(chunkSize+2), uint16(tsWidth), uint16(16), uint32(1<<20), uint8(200))
	// A line beyond the limit, cut, the rest dropped up to its newline.
	f.Add([]byte(ts1+" \n"+ts1+" next\n"), uint16(50_000), uint16(tsWidth), uint16(4096), uint32(20_000), uint8(0))
	f.Add([]byte(ts1+" x\n"), uint16(0), uint16(0), uint16(16), uint32(5), uint8(1))
	f.Add([]byte("no timestamp\nat all"), uint16(0), uint16(0), uint16(64), uint32(7), uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, pad, padAt, bufSize uint16, limit uint32, chunk uint8) {
		at := int(padAt) % (len(data) + 1)
		in := make([]byte, 0, len(data)+int(pad))
		in = append(in, data[:at]...)
		in = append(in, bytes.Repeat([]byte("a"), int(pad))...)
		in = append(in, data[at:]...)
		lim := max(1, int(min(limit, 1<<20)))
		rr := &rawReader{r: fuzzReader(in, max(16, int(bufSize)), chunk), limit: lim}
		bs := rr.r.Size()
		minCut := tsWidth + chunkSize
		pos := 0
		for n := 0; ; n++ {
			s, msg, cut, err := rr.next()
			if err != nil {
				if err != io.EOF {
					t.Fatalf("at %d: err %v, want io.EOF", pos, err)
				}
				break
			}
			if n > len(in) {
				t.Fatalf("%d messages from %d bytes", n, len(in))
			}
			if s != logs.Stdout || len(msg) == 0 {
				t.Fatalf("at %d: stream %v, %d bytes", pos, s, len(msg))
			}
			if len(msg) > lim+bs-1 {
				t.Fatalf("at %d: message of %d bytes, beyond limit %d + buffer %d - 1", pos, len(msg), lim, bs)
			}
			if !bytes.HasPrefix(in[pos:], msg) {
				t.Fatalf("at %d: message %.40q is not the input there (%.40q)", pos, msg, in[pos:])
			}
			start := pos
			pos += len(msg)
			nl := bytes.IndexByte(msg, '\n')
			last := !cut && pos == len(in)
			switch {
			case nl >= 0:
				if nl != len(msg)-1 || cut {
					t.Fatalf("at %d: newline at %d of a %d-byte message (cut %v)", start, nl, len(msg), cut)
				}
			case cut:
				if len(msg) < lim {
					t.Fatalf("at %d: cut at %d bytes, below the limit %d", start, len(msg), lim)
				}
			case last:
			default:
				if len(msg) < minCut || !looksLikeTimestamp(in[pos:]) {
					t.Fatalf("at %d: a %d-byte message without newline, not followed by a timestamp", start, len(msg))
				}
			}
			// No earlier boundary: no timestamp at or after minCut that the
			// reader had whole before this message's end.
			if !last || nl >= 0 {
				end := len(msg)
				if cut {
					end -= tsWidth - 1
				}
				for q := minCut; q < end; q++ {
					if looksLikeTimestamp(in[start+q:]) {
						t.Fatalf("at %d: timestamp at %d inside a %d-byte message", start, q, len(msg))
					}
				}
			}
			if cut {
				if i := bytes.IndexByte(in[pos:], '\n'); i >= 0 {
					pos += i + 1
				} else {
					pos = len(in)
				}
			}
		}
		if pos != len(in) {
			t.Fatalf("EOF after %d of %d bytes", pos, len(in))
		}
	})
}

// daysIn is the number of days of a month.
func daysIn(year int, month time.Month) int {
	return time.Date(year, month+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// FuzzParseTimestamp checks the timestamp parser against time.Parse
// (RFC3339Nano): parseTimestamp accepts a message exactly when time.Parse
// accepts its text up to the first space (at most 64 bytes), returning the
// same instant and the rest after the space, else fails with
// ErrMalformedMessage. The one difference is the fast path's leniency in
// Docker's fixed form: second 60 and a day past the month's end, which
// time.Parse rejects, are taken as time.Date would normalize them (the daemon
// never writes either). Every timestamp in Docker's fixed form is parsed by the
// fast path. A cache that parsed another message first, or the same one
// before, answers as a fresh one. A timestamp before year 2 (minTimestamp) is
// malformed whatever time.Parse says: the zero time means "no position".
func FuzzParseTimestamp(f *testing.F) {
	f.Add([]byte(ts1+" hello\n"), []byte("2024-05-01T00:00:00.000000000Z x"))
	f.Add([]byte(ts1+" hello\n"), []byte("2024-05-02T23:59:59.999999999Z x"))
	f.Add([]byte("2024-05-01T12:20:30.123456789+02:00 x\n"), []byte(ts1+" "))
	f.Add([]byte("2024-05-01T10:20:30.5Z x"), []byte(""))
	f.Add([]byte("2024-02-29T10:20:30.123456789Z leap day"), []byte("2023-02-29T10:20:30.123456789Z not one"))
	f.Add([]byte("2024-04-31T10:20:30.123456789Z past the month"), []byte(ts1+" "))
	f.Add([]byte("2024-05-01T10:20:60.000000000Z leap second"), []byte(ts1+" "))
	f.Add([]byte("2024-05-01T24:00:00.000000000Z "), []byte(ts1+" "))
	f.Add([]byte("0000-01-01T00:00:00.000000000Z "), []byte("9999-12-31T23:59:59.999999999Z "))
	f.Add([]byte("2024-0X-01T10:20:30.123456789Z x"), []byte(ts1+" "))
	f.Add([]byte("Error grabbing logs: boom\n"), []byte(""))
	f.Fuzz(func(t *testing.T, msg, prev []byte) {
		// The reference.
		var want time.Time
		var wantRest []byte
		wantOK := false
		if sp := bytes.IndexByte(msg, ' '); sp > 0 && sp <= 64 {
			if tt, err := time.Parse(time.RFC3339Nano, string(msg[:sp])); err == nil && !tt.Before(minTimestamp) {
				want, wantRest, wantOK = tt, msg[sp+1:], true
			}
		}
		// The fast path's own answer on the fixed-form prefix.
		var fresh tsCache
		var fixed []byte
		if len(msg) >= tsWidth-1 {
			fixed = msg[:tsWidth-1]
		}
		fastT, fastOK := fresh.parse(fixed)
		if fastOK {
			if !fixedShape(fixed) {
				t.Fatalf("parse accepted %q, not Docker's fixed form", fixed)
			}
			if norm := fixedDate(fixed); !fastT.Equal(norm) || fastT.Location() != time.UTC {
				t.Fatalf("parse(%q) = %v, want %v", fixed, fastT, norm)
			}
		}
		if wantOK && string(fixed) == want.UTC().Format("2006-01-02T15:04:05.000000000Z07:00") && !fastOK {
			t.Fatalf("parse rejected %q, Docker's fixed form of %v", fixed, want)
		}

		check := func(c *tsCache, what string) {
			t.Helper()
			got, rest, err := c.parseTimestamp(msg)
			if err != nil {
				if !errors.Is(err, ErrMalformedMessage) {
					t.Fatalf("%s: err %v, want ErrMalformedMessage", what, err)
				}
				if wantOK {
					t.Fatalf("%s: rejected %.40q (%v), time.Parse accepts it as %v", what, msg, err, want)
				}
				return
			}
			if wantOK {
				if !got.Equal(want) || !bytes.Equal(rest, wantRest) {
					t.Fatalf("%s: %.40q = (%v, %q), time.Parse says (%v, %q)", what, msg, got, rest, want, wantRest)
				}
				return
			}
			// Accepted where time.Parse is not: only the fast path's
			// leniency, normalized as time.Date does.
			if !fastOK || !got.Equal(fastT) || !bytes.Equal(rest, msg[tsWidth:]) {
				t.Fatalf("%s: accepted %.40q as %v, which time.Parse rejects", what, msg, got)
			}
			d := fixedFields(fixed)
			if d.sec != 60 && d.day <= daysIn(d.year, time.Month(d.month)) {
				t.Fatalf("%s: accepted %q as %v, which time.Parse rejects", what, fixed, got)
			}
		}
		var c tsCache
		check(&c, "fresh cache")
		c = tsCache{}
		_, _, _ = c.parseTimestamp(prev)
		check(&c, "after another message")
		check(&c, "again")
	})
}

type fixedTime struct{ year, month, day, hour, min, sec, nsec int }

// fixedFields reads the fields of Docker's fixed form, which fixedShape
// checked.
func fixedFields(b []byte) fixedTime {
	n := func(s []byte) int {
		v := 0
		for _, d := range s {
			v = v*10 + int(d-'0')
		}
		return v
	}
	return fixedTime{n(b[0:4]), n(b[5:7]), n(b[8:10]), n(b[11:13]), n(b[14:16]), n(b[17:19]), n(b[20:29])}
}

// fixedDate is the time the fixed form names, normalized as time.Date does.
func fixedDate(b []byte) time.Time {
	d := fixedFields(b)
	return time.Date(d.year, time.Month(d.month), d.day, d.hour, d.min, d.sec, d.nsec, time.UTC)
}

// fixedShape reports whether b is "dddd-dd-ddTdd:dd:dd.dddddddddZ" with the
// fields in range (month 1-12, day 1-31, hour 0-23, minute 0-59, second 0-60).
func fixedShape(b []byte) bool {
	if len(b) != tsWidth-1 {
		return false
	}
	for i, c := range b {
		var want byte
		switch i {
		case 4, 7:
			want = '-'
		case 10:
			want = 'T'
		case 13, 16:
			want = ':'
		case 19:
			want = '.'
		case 29:
			want = 'Z'
		default:
			if c < '0' || c > '9' {
				return false
			}
			continue
		}
		if c != want {
			return false
		}
	}
	d := fixedFields(b)
	return d.month >= 1 && d.month <= 12 && d.day >= 1 && d.day <= 31 && d.hour <= 23 && d.min <= 59 && d.sec <= 60
}

// String helps a failing fuzz input print readably.
func (f frameOut) String() string { return fmt.Sprintf("%v:%.40q cut=%v", f.s, f.msg, f.cut) }
