package dockerapi

import (
	"context"
	"errors"
	"net/http"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/berthlog/berth/collectors"
	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
)

// gotRecord is a record as a sink saw it, its body copied.
type gotRecord struct {
	Container string
	Stream    logs.Stream
	Timestamp time.Time
	Body      string
	Truncated bool
}

// recordingSink keeps a copy of every record it accepts.
type recordingSink struct {
	mu      sync.Mutex
	records []gotRecord
	metas   []*logs.Meta
}

func (s *recordingSink) Consume(_ context.Context, b *logs.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.metas = append(s.metas, b.Meta)
	for _, r := range b.Records {
		s.records = append(s.records, gotRecord{
			Container: b.Meta.Name, Stream: r.Stream, Timestamp: r.Timestamp, Body: string(r.Body), Truncated: r.Truncated,
		})
	}
	return nil
}

func (s *recordingSink) got() []gotRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]gotRecord(nil), s.records...)
}

func checkRecords(t *testing.T, got, want []gotRecord) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d:\n got %+v\nwant %+v", len(got), len(want), got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Container != w.Container || g.Stream != w.Stream || !g.Timestamp.Equal(w.Timestamp) || g.Body != w.Body || g.Truncated != w.Truncated {
			t.Errorf("record %d = %+v, want %+v", i, g, w)
		}
	}
}

// testBursts is a valid burst configuration with the given max_burst.
func testBursts(maxBurst time.Duration) config.Bursts {
	return config.Bursts{IdleTimeout: time.Second, MaxBurst: maxBurst, MaxLineBytes: 1 << 20, ReattachTail: 100}
}

// burst runs one burst of the real collector against the fake daemon.
func burst(t *testing.T, c *Client, sink logs.Sink, cfg config.Bursts, set telemetry.Settings, spec collectors.BurstSpec) collectors.BurstResult {
	t.Helper()
	if spec.Meta == nil {
		spec.Meta = &atomic.Pointer[logs.Meta]{}
	}
	col, err := collectors.NewCollector(c, sink, cfg, "h", set)
	if err != nil {
		t.Fatalf("NewCollector: %v", err)
	}
	done := make(chan collectors.BurstResult, 1)
	go func() { done <- col.Burst(testCtx(t), spec) }()
	select {
	case res := <-done:
		return res
	case <-time.After(30 * time.Second):
		t.Fatal("the burst did not end within 30s")
		return collectors.BurstResult{}
	}
}

// TestBurstEndToEndIdle: frames become records, in order, with Docker's
// timestamps and their streams; a stall then ends the burst as a normal idle
// end, not before the idle timeout (EndIdle says before max_burst), with
// nothing left running. (No tighter upper bound: see
// TestLogsIdleDeadlineEndsStalledRead.)
func TestBurstEndToEndIdle(t *testing.T) {
	const idle = 400 * time.Millisecond
	d := newFakeDaemon(t)
	info := nonTTY("c1")
	info["Name"] = "/web"
	d.setContainer("c1", info)
	base := time.Date(2024, 5, 1, 10, 20, 30, 123456789, time.UTC)
	stalled := make(chan time.Time, 1)
	d.setLogs(func(lw *logWriter, _ *http.Request) {
		_ = lw.Frame(1, base, "line 1\n")
		_ = lw.Frame(2, base.Add(time.Microsecond), "oops 1\n")
		_ = lw.Frame(1, base.Add(2*time.Microsecond), "line 2\n")
		stalled <- time.Now()
		lw.Stall()
	})
	c := newTestClient(t, d, config.Docker{}, config.Bursts{IdleTimeout: idle, MaxBurst: time.Minute})
	if err := c.ping(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	sink := &recordingSink{}
	before := goleak.IgnoreCurrent()

	res := burst(t, c, sink, testBursts(time.Minute), telemetry.NopSettings(),
		collectors.BurstSpec{ID: "c1", Follow: true, Cursor: logs.BeginningCursor()})
	end := time.Now()

	if res.End != collectors.EndIdle || res.Err != nil {
		t.Fatalf("burst ended %q (err %v), want %q", res.End, res.Err, collectors.EndIdle)
	}
	stallAt := <-stalled
	if el := end.Sub(stallAt); el < idle-50*time.Millisecond {
		t.Errorf("the burst ended %v after the stall, before the idle timeout %v", el, idle)
	}
	checkRecords(t, sink.got(), []gotRecord{
		{"web", logs.Stdout, base, "line 1", false},
		{"web", logs.Stderr, base.Add(time.Microsecond), "oops 1", false},
		{"web", logs.Stdout, base.Add(2 * time.Microsecond), "line 2", false},
	})
	if res.Lines != 3 || res.Requests != 1 {
		t.Errorf("Lines %d, Requests %d; want 3, 1", res.Lines, res.Requests)
	}
	if got := res.Cursor.Streams[logs.Stdout-1].Time; !got.Equal(base.Add(2 * time.Microsecond)) {
		t.Errorf("stdout cursor at %v, want the last stdout line %v", got, base.Add(2*time.Microsecond))
	}
	if got := res.Cursor.Streams[logs.Stderr-1].Time; !got.Equal(base.Add(time.Microsecond)) {
		t.Errorf("stderr cursor at %v, want the last stderr line %v", got, base.Add(time.Microsecond))
	}
	goleak.VerifyNone(t, before)
}

// TestBurstEndToEndEOF: a stopped container's follow stream ends, the burst
// says EOF and, inspecting again, that the container stopped.
func TestBurstEndToEndEOF(t *testing.T) {
	d := newFakeDaemon(t)
	info := nonTTY("c1")
	info["State"] = map[string]any{"Running": false, "Status": "exited"}
	d.setContainer("c1", info)
	base := time.Date(2024, 5, 1, 10, 20, 30, 0, time.UTC)
	d.setLogs(func(lw *logWriter, _ *http.Request) {
		_ = lw.Frame(1, base, "last words\n")
	})
	c := newTestClient(t, d, config.Docker{}, config.Bursts{IdleTimeout: 5 * time.Second})
	sink := &recordingSink{}
	res := burst(t, c, sink, testBursts(time.Minute), telemetry.NopSettings(),
		collectors.BurstSpec{ID: "c1", Follow: true, Cursor: logs.BeginningCursor()})
	if res.End != collectors.EndEOF || !res.Stopped || res.Gone {
		t.Fatalf("burst = %+v, want EOF, stopped, not gone", res)
	}
	checkRecords(t, sink.got(), []gotRecord{{"c1", logs.Stdout, base, "last words", false}})
}

// TestBurstEndToEndMaxBurst: a container that never goes quiet is cut at
// max_burst (not before it), reported as such, with every line read so far
// delivered.
func TestBurstEndToEndMaxBurst(t *testing.T) {
	const maxBurst = 600 * time.Millisecond
	d := newFakeDaemon(t)
	d.setContainer("c1", nonTTY("c1"))
	base := time.Date(2024, 5, 1, 10, 20, 30, 0, time.UTC)
	var sent atomic.Int64
	d.setLogs(func(lw *logWriter, r *http.Request) {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			sent.Add(1) // before the write: the record may be read before Frame returns
			if err := lw.Frame(1, base.Add(time.Duration(i)*time.Millisecond), "tick\n"); err != nil {
				return
			}
			select {
			case <-tick.C:
			case <-r.Context().Done():
				return
			case <-lw.d.release:
				return
			}
		}
	})
	c := newTestClient(t, d, config.Docker{}, config.Bursts{IdleTimeout: 2 * time.Second, MaxBurst: maxBurst})
	sink := &recordingSink{}
	start := time.Now()
	res := burst(t, c, sink, testBursts(maxBurst), telemetry.NopSettings(),
		collectors.BurstSpec{ID: "c1", Follow: true, Cursor: logs.BeginningCursor()})
	el := time.Since(start)
	if res.End != collectors.EndMaxBurst || res.Err != nil {
		t.Fatalf("burst ended %q (err %v), want %q", res.End, res.Err, collectors.EndMaxBurst)
	}
	if el < maxBurst {
		t.Errorf("burst took %v, less than max_burst %v", el, maxBurst)
	}
	got := sink.got()
	if len(got) < 10 || int64(len(got)) > sent.Load() {
		t.Fatalf("%d records of %d frames sent", len(got), sent.Load())
	}
	for i, r := range got {
		if want := base.Add(time.Duration(i) * time.Millisecond); !r.Timestamp.Equal(want) || r.Body != "tick" {
			t.Fatalf("record %d = %+v, want tick at %v: a gap or a duplicate", i, r, want)
		}
	}
}

// TestBurstEndToEndTTY: a TTY container's raw stream becomes records without
// the terminal's carriage return.
func TestBurstEndToEndTTY(t *testing.T) {
	d := newFakeDaemon(t)
	info := nonTTY("c1")
	info["Config"] = map[string]any{"Tty": true, "Image": "app:1"}
	info["State"] = map[string]any{"Running": false, "Status": "exited"}
	d.setContainer("c1", info)
	base := time.Date(2024, 5, 1, 10, 20, 30, 0, time.UTC)
	d.setLogs(func(lw *logWriter, _ *http.Request) {
		_ = lw.Raw(base.Format(dockerTS) + " hello\r\n")
		_ = lw.Raw(base.Add(time.Second).Format(dockerTS) + " world\r\n")
	})
	c := newTestClient(t, d, config.Docker{}, config.Bursts{})
	sink := &recordingSink{}
	res := burst(t, c, sink, testBursts(time.Minute), telemetry.NopSettings(),
		collectors.BurstSpec{ID: "c1", Follow: false, Cursor: logs.BeginningCursor()})
	if res.End != collectors.EndEOF || res.Err != nil {
		t.Fatalf("burst ended %q (err %v), want EOF", res.End, res.Err)
	}
	checkRecords(t, sink.got(), []gotRecord{
		{"c1", logs.Stdout, base, "hello", false},
		{"c1", logs.Stdout, base.Add(time.Second), "world", false},
	})
}

// TestBurstEndToEndGone: a container removed before the burst is reported
// gone, not retried as a fault.
func TestBurstEndToEndGone(t *testing.T) {
	d := newFakeDaemon(t)
	c := newTestClient(t, d, config.Docker{}, config.Bursts{})
	res := burst(t, c, &recordingSink{}, testBursts(time.Minute), telemetry.NopSettings(),
		collectors.BurstSpec{ID: "gone", Follow: true, Cursor: logs.BeginningCursor()})
	if !res.Gone {
		t.Fatalf("burst of a missing container = %+v, want Gone", res)
	}
}

// deadlineExpiries returns berth.deadline.expiries by kind, as the reader
// holds it.
func deadlineExpiries(t *testing.T, reader *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "berth.deadline.expiries" {
				for _, p := range sum.DataPoints {
					v, _ := p.Attributes.Value("kind")
					out[v.AsString()] += p.Value
				}
			}
		}
	}
	return out
}

// TestBurstEndToEndNoResponseHeader: a re-attach to a frozen daemon, which
// takes the logs request and never writes a response header, ends as an idle
// deadline (no error, so no backoff; counted as an idle deadline expiry)
// not before the idle timeout (EndIdle says before max_burst), with nothing
// left running.
func TestBurstEndToEndNoResponseHeader(t *testing.T) {
	const idle = 400 * time.Millisecond
	d := newFakeDaemon(t)
	d.setContainer("c1", nonTTY("c1"))
	base := time.Date(2024, 5, 1, 10, 20, 30, 0, time.UTC)
	var requests atomic.Int64
	d.setLogs(func(lw *logWriter, _ *http.Request) {
		if requests.Add(1) == 1 {
			// The first burst reads a line, then the stream goes quiet.
			_ = lw.Frame(1, base, "before the freeze\n")
		}
		// The re-attach gets nothing at all: no status line, no header.
		lw.Stall()
	})
	c := newTestClient(t, d, config.Docker{}, config.Bursts{IdleTimeout: idle, MaxBurst: time.Minute})
	if err := c.ping(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	set := telemetry.NopSettings()
	set.MeterProvider = mp
	cfg := testBursts(time.Minute)
	sink := &recordingSink{}
	meta := &atomic.Pointer[logs.Meta]{}
	first := burst(t, c, sink, cfg, set, collectors.BurstSpec{ID: "c1", Follow: true, Cursor: logs.BeginningCursor(), Meta: meta})
	if first.End != collectors.EndIdle || first.Lines != 1 {
		t.Fatalf("first burst = %+v, want an idle end after 1 line", first)
	}
	before := goleak.IgnoreCurrent()

	start := time.Now()
	res := burst(t, c, sink, cfg, set, collectors.BurstSpec{ID: "c1", Follow: true, Cursor: first.Cursor, Meta: meta})
	el := time.Since(start)

	if res.End != collectors.EndIdle || res.Err != nil {
		t.Fatalf("re-attach ended %q (err %v), want %q without an error", res.End, res.Err, collectors.EndIdle)
	}
	if el < idle-50*time.Millisecond {
		t.Errorf("re-attach ended after %v, before the idle timeout %v", el, idle)
	}
	if res.Requests != 1 || res.Lines != 0 || !reflect.DeepEqual(res.Cursor, first.Cursor) {
		t.Errorf("re-attach = %+v, want 1 request, no line and the cursor it started from", res)
	}
	if got := requests.Load(); got != 2 {
		t.Errorf("the daemon saw %d logs requests, want 2 (no silent retry)", got)
	}
	if got := deadlineExpiries(t, reader); len(got) != 1 || got["idle"] != 2 {
		t.Errorf("deadline expiries by kind %v, want both bursts' counted as idle", got)
	}
	goleak.VerifyNone(t, before)
}

// TestBurstEndToEndNoDaemon: the deadline classification does not swallow a
// daemon that cannot be reached: that is still an error, which backs off.
func TestBurstEndToEndNoDaemon(t *testing.T) {
	// A socket path nothing listens on.
	c, err := New(config.Docker{DockerHost: "unix://" + shortSocketPath(t), ControlTimeout: 5 * time.Second}, config.Bursts{IdleTimeout: 400 * time.Millisecond, MaxBurst: time.Minute}, noEnv)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	meta := &atomic.Pointer[logs.Meta]{}
	meta.Store(&logs.Meta{ID: "c1", Name: "c1"})
	res := burst(t, c, &recordingSink{}, testBursts(time.Minute), telemetry.NopSettings(),
		collectors.BurstSpec{ID: "c1", Follow: true, Cursor: logs.BeginningCursor(), Meta: meta})
	if res.End != collectors.EndError || res.Err == nil || errors.Is(res.Err, os.ErrDeadlineExceeded) {
		t.Fatalf("burst without a daemon ended %q (err %v), want an error that is not a deadline", res.End, res.Err)
	}
}
