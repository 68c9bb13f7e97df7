package collectors

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
)

// testBursts is a valid burst configuration (see config.Config.Validate)
// with the line limit and re-attach tail of a test.
func testBursts(maxLine, tail int) config.Bursts {
	return config.Bursts{IdleTimeout: time.Minute, MaxBurst: time.Hour, MaxLineBytes: maxLine, ReattachTail: tail}
}

// newCollector returns a Collector of the tests' host "h".
func newCollector(tb testing.TB, src LogSource, sink logs.Sink, cfg config.Bursts, set telemetry.Settings) *Collector {
	tb.Helper()
	c, err := NewCollector(src, sink, cfg, "h", set)
	if err != nil {
		tb.Fatalf("NewCollector: %v", err)
	}
	return c
}

// metricSettings returns settings whose meter provider the returned reader
// collects.
func metricSettings(t *testing.T) (telemetry.Settings, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	set := telemetry.NopSettings()
	set.MeterProvider = mp
	return set, reader
}

// collectMetrics returns what the reader holds, by instrument name, with the
// instrumentation scope each came from.
func collectMetrics(t *testing.T, reader *sdkmetric.ManualReader) (map[string]metricdata.Metrics, map[string]string) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got, scopes := map[string]metricdata.Metrics{}, map[string]string{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			got[m.Name] = m
			scopes[m.Name] = sm.Scope.Name
		}
	}
	return got, scopes
}

// sumBy adds up the points of a sum by the value of the attribute key.
func sumBy(t *testing.T, m metricdata.Metrics, key string) map[string]int64 {
	t.Helper()
	d, ok := m.Data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s is a %T, want an int64 sum", m.Name, m.Data)
	}
	if !d.IsMonotonic || d.Temporality != metricdata.CumulativeTemporality {
		t.Errorf("%s: monotonic %v, temporality %v; want a monotonic cumulative counter", m.Name, d.IsMonotonic, d.Temporality)
	}
	out := map[string]int64{}
	for _, p := range d.DataPoints {
		if p.Attributes.Len() != 1 {
			t.Errorf("%s point has attributes %v, want only %s", m.Name, p.Attributes.ToSlice(), key)
		}
		v, _ := p.Attributes.Value(attribute.Key(key))
		out[v.Emit()] += p.Value
	}
	return out
}

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
	labels   map[string]string
}

func (d *fakeDaemon) Inspect(context.Context, string) (*logs.Meta, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return &logs.Meta{ID: "c1", Name: "web", TTY: d.tty, Running: d.running, Labels: d.labels}, nil
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
		r.SeverityText = bytes.Clone(r.SeverityText)
		attrs := make([]logs.Attr, len(r.Attrs))
		for i, a := range r.Attrs {
			attrs[i] = logs.Attr{Key: bytes.Clone(a.Key), Value: bytes.Clone(a.Value), Kind: a.Kind}
		}
		r.Attrs = attrs
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
