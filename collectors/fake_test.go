package collectors

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/berthlog/berth/logs"
)

// fakeMsg is one message of a fake container's log file, as json-file keeps
// it: content with its newline when it ends a line, without when it is a
// partial chunk.
type fakeMsg struct {
	stream  logs.Stream
	ts      time.Time
	content string
}

// fakeDaemon serves a fixed log the way the daemon does: tail counts the
// last messages by file position, since keeps those at or after it, frames
// are stdcopy (or raw for TTY). cutAfter, when set, ends the response with a
// deadline error after that many messages, as an idle deadline would.
type fakeDaemon struct {
	mu       sync.Mutex
	log      []fakeMsg
	tty      bool
	cutAfter []int // per request; missing or 0: no cut
	visible  []int // per request: how much of the log exists yet; missing: all
	requests []LogRequest
	running  bool
	trailer  []byte // written after the messages, as the daemon writes its errors
}

func (d *fakeDaemon) Inspect(context.Context, string) (*logs.Meta, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return &logs.Meta{ID: "c1", Name: "web", TTY: d.tty, Running: d.running}, nil
}

func (d *fakeDaemon) Logs(_ context.Context, _ string, req LogRequest) (io.ReadCloser, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := len(d.requests)
	d.requests = append(d.requests, req)
	msgs := d.log[:d.seen(n)]
	if req.Tail >= 0 && req.Tail < len(msgs) {
		msgs = msgs[len(msgs)-req.Tail:]
	}
	var buf bytes.Buffer
	count := 0
	cut := 0
	if n < len(d.cutAfter) {
		cut = d.cutAfter[n]
	}
	for _, m := range msgs {
		if !req.Since.IsZero() && m.ts.Before(req.Since) {
			continue
		}
		if cut > 0 && count == cut {
			return &cutReader{r: bytes.NewReader(buf.Bytes())}, nil
		}
		writeMsg(&buf, m, d.tty)
		count++
	}
	buf.Write(d.trailer)
	return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
}

func writeMsg(buf *bytes.Buffer, m fakeMsg, tty bool) {
	payload := m.ts.UTC().Format("2006-01-02T15:04:05.000000000Z07:00") + " " + m.content
	if tty {
		buf.WriteString(payload)
		return
	}
	var hdr [8]byte
	hdr[0] = byte(m.stream)
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(payload)))
	buf.Write(hdr[:])
	buf.WriteString(payload)
}

// cutReader ends with a deadline error instead of EOF.
type cutReader struct{ r *bytes.Reader }

func (c *cutReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF {
		return n, fmt.Errorf("read: %w", os.ErrDeadlineExceeded)
	}
	return n, err
}

func (c *cutReader) Close() error { return nil }

// memSink keeps copies of every record it accepted.
type memSink struct {
	mu      sync.Mutex
	records []logs.Record
	fail    int // fail this many Consume calls first
}

func (s *memSink) Consume(_ context.Context, b *logs.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail > 0 {
		s.fail--
		return fmt.Errorf("sink unavailable")
	}
	for _, r := range b.Records {
		r.Body = bytes.Clone(r.Body)
		s.records = append(s.records, r)
	}
	return nil
}

func (s *memSink) bodies() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.records))
	for i, r := range s.records {
		out[i] = r.Stream.String() + ":" + string(r.Body)
	}
	return out
}

// seen is how much of the log request n could see.
func (d *fakeDaemon) seen(n int) int {
	if n < len(d.visible) {
		return min(d.visible[n], len(d.log))
	}
	return len(d.log)
}
