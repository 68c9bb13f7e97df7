package collectors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/berthlog/berth/logs"
)

const ts1 = "2024-05-01T10:20:30.123456789Z"

func TestParseMessage(t *testing.T) {
	want := time.Date(2024, 5, 1, 10, 20, 30, 123456789, time.UTC)
	tests := []struct {
		name     string
		in       string
		ts       time.Time
		content  string
		complete bool
		err      error
	}{
		{"line", ts1 + " hello\n", want, "hello", true, nil},
		{"partial chunk", ts1 + " hello", want, "hello", false, nil},
		{"empty line", ts1 + " \n", want, "", true, nil},
		{"content with spaces and CR", ts1 + " a b\r\n", want, "a b\r", true, nil},
		{"offset form falls back", "2024-05-01T12:20:30.123456789+02:00 x\n", want, "x", true, nil},
		{"short fraction falls back", "2024-05-01T10:20:30.5Z x\n", time.Date(2024, 5, 1, 10, 20, 30, 5e8, time.UTC), "x", true, nil},
		{"no timestamp", "Error grabbing logs: boom\n", time.Time{}, "", false, ErrMalformedMessage},
		{"garbage digits", "2024-0X-01T10:20:30.123456789Z x\n", time.Time{}, "", false, ErrMalformedMessage},
		{"empty", "", time.Time{}, "", false, ErrMalformedMessage},
		// The zero time means "no position": a message stamped with it (or
		// earlier) would be read again on every re-attach.
		{"zero time", "0001-01-01T00:00:00.000000000Z x\n", time.Time{}, "", false, ErrMalformedMessage},
		{"zero time, short form", "0001-01-01T00:00:00Z x\n", time.Time{}, "", false, ErrMalformedMessage},
		{"late in year 1", "0001-12-31T23:59:59.999999999Z x\n", time.Time{}, "", false, ErrMalformedMessage},
		{"year 0", "0000-06-01T10:20:30.123456789Z x\n", time.Time{}, "", false, ErrMalformedMessage},
		{"year 2 by its offset, year 1 in UTC", "0002-01-01T00:30:00+01:00 x\n", time.Time{}, "", false, ErrMalformedMessage},
		{"first instant of year 2", "0002-01-01T00:00:00.000000000Z x\n", time.Date(2, 1, 1, 0, 0, 0, 0, time.UTC), "x", true, nil},
	}
	// Each message is parsed by a fresh cache and by one that every message
	// before it went through: the remembered date must not change a result.
	var shared tsCache
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fresh tsCache
			for _, c := range []*tsCache{&fresh, &shared} {
				ts, content, complete, err := c.parseMessage([]byte(tt.in))
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				if err != nil {
					continue
				}
				if !ts.Equal(tt.ts) || string(content) != tt.content || complete != tt.complete {
					t.Fatalf("got (%v, %q, %v), want (%v, %q, %v)", ts, content, complete, tt.ts, tt.content, tt.complete)
				}
			}
		})
	}
}

func TestDaemonStreamError(t *testing.T) {
	if e, ok := daemonStreamError([]byte("Error grabbing logs: invalid character 'x'\n")); !ok || !strings.Contains(e.Error(), "invalid character") {
		t.Fatalf("not recognized: %v %v", e, ok)
	}
	if _, ok := daemonStreamError([]byte(ts1 + " Error grabbing logs: a line that says so\n")); ok {
		t.Fatal("a log line that mentions the error was taken for a daemon error")
	}
}

func frame(kind byte, payload string) []byte {
	b := make([]byte, 8, 8+len(payload))
	b[0] = kind
	binary.BigEndian.PutUint32(b[4:], uint32(len(payload)))
	return append(b, payload...)
}

func TestFrameReader(t *testing.T) {
	big := strings.Repeat("x", 100_000)
	var in bytes.Buffer
	in.Write(frame(1, "a\n"))
	in.Write(frame(2, "b\n"))
	in.Write(frame(1, big))
	in.Write(frame(2, big+"yz")) // beyond the limit: cut
	in.Write(frame(1, "c\n"))
	in.Write(frame(3, "daemon failed\n"))
	fr := &frameReader{r: bufio.NewReaderSize(&in, 4096), limit: 100_001}
	type got struct {
		s   logs.Stream
		msg string
		cut bool
	}
	var out []got
	for {
		s, msg, cut, err := fr.next()
		if err != nil {
			var de *DaemonStreamError
			if !errors.As(err, &de) || de.Message != "daemon failed" {
				t.Fatalf("end: %v, want the daemon's error", err)
			}
			break
		}
		out = append(out, got{s, string(msg), cut})
	}
	want := []got{{logs.Stdout, "a\n", false}, {logs.Stderr, "b\n", false}, {logs.Stdout, big, false}, {logs.Stderr, big + "y", true}, {logs.Stdout, "c\n", false}}
	if len(out) != len(want) {
		t.Fatalf("got %d messages, want %d", len(out), len(want))
	}
	for i := range want {
		if out[i] != want[i] {
			t.Fatalf("message %d: got (%v, %.20q, %v), want (%v, %.20q, %v)", i, out[i].s, out[i].msg, out[i].cut, want[i].s, want[i].msg, want[i].cut)
		}
	}
}

func TestFrameReaderTornFrame(t *testing.T) {
	b := frame(1, "hello\n")
	for _, n := range []int{3, 10} {
		fr := &frameReader{r: bufio.NewReader(bytes.NewReader(b[:n])), limit: 1 << 20}
		if _, _, _, err := fr.next(); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("cut at %d: err = %v, want io.ErrUnexpectedEOF", n, err)
		}
	}
	fr := &frameReader{r: bufio.NewReader(bytes.NewReader(nil)), limit: 1 << 20}
	if _, _, _, err := fr.next(); err != io.EOF {
		t.Fatalf("empty stream: err = %v, want io.EOF", err)
	}
	fr = &frameReader{r: bufio.NewReader(bytes.NewReader(frame(7, "x"))), limit: 1 << 20}
	if _, _, _, err := fr.next(); !errors.Is(err, ErrMalformedMessage) {
		t.Fatalf("unknown stream: err = %v, want ErrMalformedMessage", err)
	}
}

func TestRawReader(t *testing.T) {
	chunk := strings.Repeat("é", chunkSize/2) // exactly 16 KiB of two-byte characters
	ts2 := "2024-05-01T10:20:30.223456789Z"
	in := ts1 + " one\r\n" +
		ts1 + " " + chunk + // a partial chunk: the next timestamp follows directly
		ts2 + " tail\r\n" +
		ts2 + " \r\n" +
		ts2 + " last without newline"
	rr := &rawReader{r: bufio.NewReaderSize(strings.NewReader(in), 4096), limit: 1 << 20}
	var got []string
	for {
		_, msg, _, err := rr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(msg))
	}
	want := []string{ts1 + " one\r\n", ts1 + " " + chunk, ts2 + " tail\r\n", ts2 + " \r\n", ts2 + " last without newline"}
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d: %.80q", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("message %d: got %.60q (len %d), want %.60q (len %d)", i, got[i], len(got[i]), want[i], len(want[i]))
		}
	}
}

func TestRawReaderCutsEndlessLine(t *testing.T) {
	// Not Docker's chunking (no timestamp after 16 KiB): the line is kept up
	// to the limit, marked cut, and the rest up to its newline is dropped.
	long := strings.Repeat("z", 50_000)
	in := ts1 + " " + long + "\n" + ts1 + " next\n"
	rr := &rawReader{r: bufio.NewReaderSize(strings.NewReader(in), 4096), limit: 20_000}
	_, msg, cut, err := rr.next()
	if err != nil || !cut || len(msg) < 20_000 || len(msg) > 30_000 {
		t.Fatalf("first: len %d cut %v err %v", len(msg), cut, err)
	}
	_, msg, cut, err = rr.next()
	if err != nil || cut || string(msg) != ts1+" next\n" {
		t.Fatalf("second: %.40q cut %v err %v", msg, cut, err)
	}
}

func TestRawReaderChunkWithReplacementCharacters(t *testing.T) {
	// json-file stores the half of "é" that ends a chunk as U+FFFD: the
	// chunk comes back 2 bytes longer than 16 KiB.
	chunk := strings.Repeat("a", chunkSize-1) + "\uFFFD"
	ts2 := "2024-05-01T10:20:30.223456789Z"
	in := ts1 + " " + chunk + ts2 + " \uFFFDrest\r\n" + ts2 + " next\r\n"
	rr := &rawReader{r: bufio.NewReaderSize(strings.NewReader(in), 4096), limit: 1 << 20}
	var got []string
	for {
		_, msg, _, err := rr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(msg))
	}
	want := []string{ts1 + " " + chunk, ts2 + " \uFFFDrest\r\n", ts2 + " next\r\n"}
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("message %d: got len %d, want len %d", i, len(got[i]), len(want[i]))
		}
	}
}
