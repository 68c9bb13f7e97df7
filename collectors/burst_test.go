package collectors

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
)

var t0 = time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)

func at(ns int) time.Time { return t0.Add(time.Duration(ns)) }

func newTestCollector(t *testing.T, d *fakeDaemon, sink logs.Sink, maxLine, tail int) *Collector {
	t.Helper()
	return newCollector(t, d, sink, testBursts(maxLine, tail), telemetry.NopSettings())
}

func spec(c logs.Cursor, follow bool) BurstSpec {
	return BurstSpec{ID: "c1", Follow: follow, Cursor: c, Meta: new(atomic.Pointer[logs.Meta])}
}

func TestBurstReadsEveryLine(t *testing.T) {
	d := &fakeDaemon{log: []fakeMsg{
		{logs.Stdout, at(1), "a\n"}, {logs.Stderr, at(2), "b\n"}, {logs.Stdout, at(3), "\n"}, {logs.Stdout, at(4), "c\n"},
	}}
	sink := &memSink{}
	res := newTestCollector(t, d, sink, 1024, 10).Burst(context.Background(), spec(logs.BeginningCursor(), false))
	if res.End != EndEOF || res.Err != nil {
		t.Fatalf("end %v err %v", res.End, res.Err)
	}
	want := []string{"stdout:a", "stderr:b", "stdout:", "stdout:c"}
	if got := sink.bodies(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
	if d.requests[0].Tail != TailAll || !d.requests[0].Since.IsZero() {
		t.Fatalf("first read of a new container must ask for the whole log, got %+v", d.requests[0])
	}
	if res.Lines != 4 || !res.Cursor.Streams[0].Time.Equal(at(4)) || !res.Cursor.Streams[1].Time.Equal(at(2)) {
		t.Fatalf("result %+v", res)
	}
	if r := sink.records[1]; r.Timestamp != at(2) || r.Stream != logs.Stderr || r.Observed.IsZero() {
		t.Fatalf("record %+v", r)
	}
}

// TestBurstClockStepsBack: inside one response, a line older than the newest
// one read is a new line (the host clock stepped back), not a repeat; only a
// re-attached response's replayed start is de-duplicated.
func TestBurstClockStepsBack(t *testing.T) {
	d := &fakeDaemon{log: []fakeMsg{
		{logs.Stdout, at(10), "ten\n"}, {logs.Stdout, at(11), "eleven\n"},
		{logs.Stdout, at(5), "five\n"}, {logs.Stdout, at(6), "six\n"}, {logs.Stdout, at(12), "twelve\n"},
	}}
	sink := &memSink{}
	c := newTestCollector(t, d, sink, 1024, 10)
	res := c.Burst(context.Background(), spec(logs.BeginningCursor(), false))
	want := []string{"stdout:ten", "stdout:eleven", "stdout:five", "stdout:six", "stdout:twelve"}
	if got := sink.bodies(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q (end %v, err %v)", got, want, res.End, res.Err)
	}
	// Re-attached from there, the replayed end of the log is no new line.
	sink.records = nil
	res = c.Burst(context.Background(), spec(res.Cursor, false))
	if got := sink.bodies(); len(got) != 0 || res.Err != nil {
		t.Fatalf("re-attach delivered %q (err %v), want nothing", got, res.Err)
	}
}

func TestBurstJoinsPartialChunks(t *testing.T) {
	// "é" split across the chunk boundary: the first chunk ends with its
	// first byte, the second starts with its second.
	e := "é"
	d := &fakeDaemon{log: []fakeMsg{
		{logs.Stdout, at(1), "aaa" + e[:1]},
		{logs.Stderr, at(2), "interleaved\n"},
		{logs.Stdout, at(3), e[1:] + "bbb"},
		{logs.Stdout, at(4), "ccc\n"},
		{logs.Stdout, at(5), "next\n"},
	}}
	sink := &memSink{}
	res := newTestCollector(t, d, sink, 1024, 10).Burst(context.Background(), spec(logs.BeginningCursor(), false))
	want := []string{"stderr:interleaved", "stdout:aaaébbbccc", "stdout:next"}
	if got := sink.bodies(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q (end %v, err %v)", got, want, res.End, res.Err)
	}
	if sink.records[1].Timestamp != at(1) {
		t.Fatalf("a joined line takes its first chunk's timestamp, got %v", sink.records[1].Timestamp)
	}
}

func TestBurstTruncatesLongLines(t *testing.T) {
	d := &fakeDaemon{log: []fakeMsg{
		{logs.Stdout, at(1), strings.Repeat("x", 600)},
		{logs.Stdout, at(2), strings.Repeat("y", 600)},
		{logs.Stdout, at(3), "zz\n"},
		{logs.Stdout, at(4), "after\n"},
		{logs.Stderr, at(5), strings.Repeat("€", 400) + "\n"}, // one message, over the limit
	}}
	sink := &memSink{}
	newTestCollector(t, d, sink, 1024, 10).Burst(context.Background(), spec(logs.BeginningCursor(), false))
	if len(sink.records) != 3 {
		t.Fatalf("got %d records, want 3: %q", len(sink.records), sink.bodies())
	}
	r := sink.records[0]
	if len(r.Body) != 1024 || !r.Truncated || string(r.Body) != strings.Repeat("x", 600)+strings.Repeat("y", 424) {
		t.Fatalf("truncated record: len %d truncated %v", len(r.Body), r.Truncated)
	}
	if r := sink.records[1]; string(r.Body) != "after" || r.Truncated {
		t.Fatalf("the line after a truncated one: %q %v", r.Body, r.Truncated)
	}
	if r := sink.records[2]; len(r.Body) != 1023 || !r.Truncated || !strings.HasPrefix(strings.Repeat("€", 400), string(r.Body)) {
		t.Fatalf("a cut must not split a UTF-8 character: len %d truncated %v", len(r.Body), r.Truncated)
	}
}

// TestBurstTruncatedLineIsAPrefix: a line cut where a multi-byte character
// would cross max_line_bytes keeps nothing of its later chunks, though the
// character left room for a few bytes: its record is a prefix of the line
// (found by FuzzBurstReread).
func TestBurstTruncatedLineIsAPrefix(t *testing.T) {
	head := strings.Repeat("a", 1023)
	d := &fakeDaemon{log: []fakeMsg{
		{logs.Stdout, at(1), head + "€"}, // the 1024-byte limit falls inside "€"
		{logs.Stdout, at(1), "xyz\n"},    // "x" would fit, but it does not follow head in the line
		{logs.Stdout, at(2), "next\n"},
	}}
	sink := &memSink{}
	newTestCollector(t, d, sink, 1024, 10).Burst(context.Background(), spec(logs.BeginningCursor(), false))
	if len(sink.records) != 2 {
		t.Fatalf("got %d records, want 2", len(sink.records))
	}
	if r := sink.records[0]; string(r.Body) != head || !r.Truncated {
		t.Fatalf("cut line: %d bytes ending %q, truncated %v; want the %d bytes before the character, truncated", len(r.Body), r.Body[max(0, len(r.Body)-3):], r.Truncated, len(head))
	}
	if r := sink.records[1]; string(r.Body) != "next" || r.Truncated {
		t.Fatalf("the next line: %q, truncated %v", r.Body, r.Truncated)
	}
}

func TestBurstTTY(t *testing.T) {
	chunk := strings.Repeat("q", chunkSize)
	d := &fakeDaemon{tty: true, log: []fakeMsg{
		{logs.Stdout, at(1), "hello\r\n"},
		{logs.Stdout, at(2), chunk},
		{logs.Stdout, at(3), "end\r\n"},
		{logs.Stdout, at(4), "\r\n"},
	}}
	sink := &memSink{}
	res := newTestCollector(t, d, sink, 1<<20, 10).Burst(context.Background(), spec(logs.BeginningCursor(), true))
	want := []string{"stdout:hello", "stdout:" + chunk + "end", "stdout:"}
	if got := sink.bodies(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %.60q, want %.60q (err %v)", got, want, res.Err)
	}
}

func TestBurstDaemonErrorInStream(t *testing.T) {
	// The daemon writes its error on stderr, without a timestamp, after
	// the lines it could read.
	d := &fakeDaemon{log: []fakeMsg{{logs.Stdout, at(1), "ok\n"}}, trailer: frame(2, "Error grabbing logs: invalid character\n")}
	res := newTestCollector(t, d, &memSink{}, 1024, 10).Burst(context.Background(), spec(logs.BeginningCursor(), true))
	var de *DaemonStreamError
	if res.End != EndError || !errors.As(res.Err, &de) {
		t.Fatalf("end %v err %v, want a DaemonStreamError", res.End, res.Err)
	}
	if res.Lines != 1 || !res.Cursor.Streams[0].Time.Equal(at(1)) {
		t.Fatalf("the line before the error must be kept: %+v", res)
	}
}

func TestEndCursorSkipsOldLines(t *testing.T) {
	d := &fakeDaemon{log: []fakeMsg{
		{logs.Stdout, at(1), "old1\n"}, {logs.Stderr, at(2), "old2\n"}, {logs.Stdout, at(3), "new1\n"}, {logs.Stderr, at(4), "new2\n"},
	}}
	sink := &memSink{}
	res := newTestCollector(t, d, sink, 1024, 10).Burst(context.Background(), spec(logs.EndCursor(at(2)), true))
	if got := strings.Join(sink.bodies(), "|"); got != "stdout:new1|stderr:new2" {
		t.Fatalf("got %q", got)
	}
	if d.requests[0].Tail != 10 || !d.requests[0].Since.IsZero() {
		t.Fatalf("an end cursor asks for a bounded tail without since: %+v", d.requests[0])
	}
	if res.Requests != 1 {
		t.Fatalf("requests = %d, want 1", res.Requests)
	}
}

func TestReattachWidensTailOnlyOnGap(t *testing.T) {
	var log []fakeMsg
	for i := range 5000 {
		log = append(log, fakeMsg{logs.Stdout, at(i + 1), fmt.Sprintf("line %d\n", i)})
	}
	d := &fakeDaemon{log: log[:100]}
	sink := &memSink{}
	c := newTestCollector(t, d, sink, 1024, 4)
	res := c.Burst(context.Background(), spec(logs.BeginningCursor(), true))
	if res.Lines != 100 {
		t.Fatalf("first burst read %d lines", res.Lines)
	}
	// Two lines more: the tail of 4 reaches the boundary, one request.
	d.log = log[:102]
	res = c.Burst(context.Background(), spec(res.Cursor, true))
	if res.Lines != 2 || res.Requests != 1 {
		t.Fatalf("small gap: lines %d requests %d, want 2 and 1", res.Lines, res.Requests)
	}
	if r := d.requests[len(d.requests)-1]; r.Tail != 4 || !r.Since.IsZero() {
		// stderr has no boundary yet: its unseen lines may be older than
		// stdout's boundary, so there is no since.
		t.Fatalf("re-attach request %+v, want tail 4 and no since", r)
	}
	// A large gap: widened 4 -> 64 -> 1024 -> 16384.
	d.log = log
	res = c.Burst(context.Background(), spec(res.Cursor, true))
	if res.Lines != 5000-102 || res.Requests != 4 {
		t.Fatalf("large gap: lines %d requests %d, want %d and 4", res.Lines, res.Requests, 5000-102)
	}
	got := sink.bodies()
	for i, b := range got {
		if b != fmt.Sprintf("stdout:line %d", i) {
			t.Fatalf("record %d is %q", i, b)
		}
	}
}

func TestSinkFailureKeepsCursor(t *testing.T) {
	d := &fakeDaemon{log: []fakeMsg{{logs.Stdout, at(1), "a\n"}, {logs.Stdout, at(2), "b\n"}}}
	sink := &memSink{fail: 1}
	c := newTestCollector(t, d, sink, 1024, 10)
	res := c.Burst(context.Background(), spec(logs.BeginningCursor(), false))
	if res.End != EndError || res.Lines != 0 || !res.Cursor.IsBeginning() {
		t.Fatalf("a refused batch must not advance the cursor: %+v", res)
	}
	res = c.Burst(context.Background(), spec(res.Cursor, false))
	if got := strings.Join(sink.bodies(), "|"); got != "stdout:a|stdout:b" || res.End != EndEOF {
		t.Fatalf("after the sink recovered: %q %v", got, res.End)
	}
}

// TestReattachExactlyOnce cuts the stream at random points of a log whose
// streams interleave out of timestamp order, share timestamps and split lines
// into chunks, and re-attaches until EOF: every line must arrive exactly once
// and in order per stream.
func TestReattachExactlyOnce(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 7))
		var log []fakeMsg
		var want [3][]string
		clock := [3]int{0, 0, 0}
		seq := [3]int{}
		for len(log) < 300 {
			s := logs.Stream(1 + rng.IntN(2))
			// Each stream's clock moves forward, sometimes not at all (lines
			// sharing a timestamp); the other stream can be behind (out of
			// order). Identical content never shares a timestamp within a
			// stream: the cursor tells such lines apart only by order.
			clock[s] += rng.IntN(3)
			line := fmt.Sprintf("%s-%d", s, seq[s])
			seq[s]++
			if rng.IntN(8) == 0 {
				// A line in three chunks; Docker gives them one timestamp,
				// or (other versions) one each.
				log = append(log, fakeMsg{s, at(clock[s]), line + "-p1"})
				clock[s] += rng.IntN(2)
				log = append(log, fakeMsg{s, at(clock[s]), line + "-p2"})
				clock[s] += rng.IntN(2)
				log = append(log, fakeMsg{s, at(clock[s]), line + "-p3\n"})
				want[s] = append(want[s], line+"-p1"+line+"-p2"+line+"-p3")
				continue
			}
			if rng.IntN(10) == 0 {
				clock[s]++
				line = "dup" // the same content as other lines, at its own time
			}
			log = append(log, fakeMsg{s, at(clock[s]), line + "\n"})
			want[s] = append(want[s], line)
			if line == "dup" {
				clock[s]++
			}
		}
		cuts := make([]int, 200)
		for i := range cuts {
			cuts[i] = 1 + rng.IntN(20)
		}
		// The log grows while berth reads it, as a running container's does.
		visible := make([]int, len(cuts))
		for i, v := 0, 0; i < len(visible); i++ {
			v += rng.IntN(30)
			visible[i] = v
		}
		// It runs: a follow stream's end is no end of its log, and a line
		// whose last chunk is yet to come stays whole.
		d := &fakeDaemon{log: log, cutAfter: cuts, visible: visible, running: true}
		sink := &memSink{}
		c := newTestCollector(t, d, sink, 1024, 1+rng.IntN(8))
		cur := logs.BeginningCursor()
		for i := 0; ; i++ {
			res := c.Burst(context.Background(), spec(cur, true))
			cur = res.Cursor
			if res.End == EndEOF && len(d.requests) > 0 && d.seen(len(d.requests)-1) == len(log) {
				break
			}
			if (res.End != EndIdle && res.End != EndEOF) || i > 500 {
				t.Fatalf("seed %d: burst %d ended %v (%v)", seed, i, res.End, res.Err)
			}
		}
		var got [3][]string
		for _, r := range sink.records {
			got[r.Stream] = append(got[r.Stream], string(r.Body))
		}
		for s := 1; s <= 2; s++ {
			if strings.Join(got[s], ",") != strings.Join(want[s], ",") {
				t.Fatalf("seed %d stream %d:\n got %q\nwant %q", seed, s, got[s], want[s])
			}
		}
	}
}

// countingSink sees, at each batch it accepts, what the burst's progress
// said of its lines before the batch.
type countingSink struct {
	progress *BurstProgress
	before   []int64 // the counter at each Consume
	sizes    []int64 // the records of each batch
}

func (s *countingSink) Consume(_ context.Context, b *logs.Batch) error {
	s.before = append(s.before, s.progress.Lines.Load())
	s.sizes = append(s.sizes, int64(len(b.Records)))
	return nil
}

// TestBurstProgressMovesPerBatch: the progress's lines grow as each batch
// is accepted, while the burst runs, by the batch's records, and end grown
// by exactly the burst's Lines; its newest timestamp is the last line's.
func TestBurstProgressMovesPerBatch(t *testing.T) {
	const lines = 2*maxBatchRecords + 100 // at least three batches
	var log []fakeMsg
	for i := range lines {
		log = append(log, fakeMsg{logs.Stdout, at(i + 1), fmt.Sprintf("line %d\n", i)})
	}
	const already = 7 // what earlier bursts of the container delivered
	var progress BurstProgress
	progress.Lines.Store(already)
	sink := &countingSink{progress: &progress}
	sp := spec(logs.BeginningCursor(), false)
	sp.Progress = &progress
	res := newTestCollector(t, &fakeDaemon{log: log}, sink, 1024, 10).Burst(context.Background(), sp)
	if res.End != EndEOF || res.Lines != lines {
		t.Fatalf("burst = end %v, %d lines (err %v); want EOF and %d lines", res.End, res.Lines, res.Err, lines)
	}
	if len(sink.sizes) < 3 {
		t.Fatalf("%d batches, want at least 3", len(sink.sizes))
	}
	sum := int64(already)
	for i := range sink.sizes {
		if sink.before[i] != sum {
			t.Fatalf("batch %d: the counter said %d before it, want %d (the batches before it)", i, sink.before[i], sum)
		}
		sum += sink.sizes[i]
	}
	if got := progress.Lines.Load(); got != already+res.Lines {
		t.Fatalf("counter %d after the burst, want %d + Lines %d", got, already, res.Lines)
	}
	if got := progress.NewestTime(); !got.Equal(at(lines)) {
		t.Fatalf("newest %v after the burst, want the last line's %v", got, at(lines))
	}
}

// TestBurstProgressSkipsRefusedBatches: a batch the sink refused is not
// delivered.
func TestBurstProgressSkipsRefusedBatches(t *testing.T) {
	d := &fakeDaemon{log: []fakeMsg{{logs.Stdout, at(1), "a\n"}, {logs.Stdout, at(2), "b\n"}}}
	var progress BurstProgress
	sp := spec(logs.BeginningCursor(), false)
	sp.Progress = &progress
	res := newTestCollector(t, d, &memSink{fail: 1}, 1024, 10).Burst(context.Background(), sp)
	if res.End != EndError || res.Lines != 0 || progress.Lines.Load() != 0 || !progress.NewestTime().IsZero() {
		t.Fatalf("refused batch: end %v, Lines %d, progress %d lines, newest %v; want error, 0, 0, none",
			res.End, res.Lines, progress.Lines.Load(), progress.NewestTime())
	}
}

// logsErrSource is a LogSource whose logs request fails with err after
// wait, as a request that got no response header fails at the connection's
// deadline.
type logsErrSource struct {
	err  error
	wait time.Duration
}

func (s logsErrSource) Inspect(context.Context, string) (*logs.Meta, error) {
	return &logs.Meta{ID: "c1", Name: "web", Running: true}, nil
}

func (s logsErrSource) Logs(context.Context, string, LogRequest) (io.ReadCloser, error) {
	time.Sleep(s.wait)
	return nil, s.err
}

// TestBurstLogsRequestEnds: a logs request that got no response header
// before the connection's deadline ends the burst as an idle deadline, or as
// max_burst once the request has run for max_burst, by the error's type,
// without an error; other failures stay errors. Each end is counted once, by
// its reason. The bubble's clock makes the durations exact.
func TestBurstLogsRequestEnds(t *testing.T) {
	const maxBurst = 5 * time.Minute
	deadline := fmt.Errorf("no response header: %w", &net.OpError{Op: "read", Net: "unix", Err: os.ErrDeadlineExceeded})
	tests := []struct {
		name       string
		err        error
		wait       time.Duration
		cancel     bool
		want       EndReason
		wantErr    bool
		wantExpiry string // the deadline.expiries kind counted; "" for none
	}{
		{name: "deadline before the response header", err: deadline, wait: 30 * time.Second, want: EndIdle, wantExpiry: "idle"},
		{name: "the hard deadline before the response header", err: deadline, wait: maxBurst, want: EndMaxBurst, wantExpiry: "max_burst"},
		{name: "deadline just before max_burst", err: deadline, wait: maxBurst - time.Nanosecond, want: EndIdle, wantExpiry: "idle"},
		{name: "deadline while berth stops", err: deadline, wait: time.Second, cancel: true, want: EndShutdown},
		{name: "daemon unreachable", err: errors.New("cannot connect"), want: EndError, wantErr: true},
		{name: "a timeout that is not the connection's deadline", err: context.DeadlineExceeded, wait: maxBurst, want: EndError, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				if tt.cancel {
					cancel()
				}
				set, reader := metricSettings(t)
				cfg := testBursts(1024, 10)
				cfg.MaxBurst = maxBurst
				c := newCollector(t, logsErrSource{err: tt.err, wait: tt.wait}, &memSink{}, cfg, set)
				res := c.Burst(ctx, spec(logs.BeginningCursor(), true))
				if res.End != tt.want || (res.Err != nil) != tt.wantErr {
					t.Fatalf("burst ended %q (err %v), want %q (error: %v)", res.End, res.Err, tt.want, tt.wantErr)
				}
				if tt.wantErr && !errors.Is(res.Err, tt.err) {
					t.Errorf("err %v does not wrap %v", res.Err, tt.err)
				}
				if res.Requests != 1 || res.Lines != 0 || !res.Cursor.IsBeginning() {
					t.Errorf("result %+v, want 1 request, no line, the cursor unchanged", res)
				}
				if res.Duration != tt.wait {
					t.Errorf("duration %v, want exactly the %v the request took", res.Duration, tt.wait)
				}
				got, _ := collectMetrics(t, reader)
				h := got["berth.burst.duration"].Data.(metricdata.Histogram[float64])
				if len(h.DataPoints) != 1 || h.DataPoints[0].Count != 1 || h.DataPoints[0].Sum != tt.wait.Seconds() {
					t.Fatalf("burst duration points %+v, want one burst of %v", h.DataPoints, tt.wait)
				}
				if v, _ := h.DataPoints[0].Attributes.Value("end_reason"); v.AsString() != string(tt.want) {
					t.Errorf("burst counted with end_reason %q, want %q", v.AsString(), tt.want)
				}
				expiries := map[string]int64{}
				if m, ok := got["berth.deadline.expiries"]; ok {
					expiries = sumBy(t, m, "kind")
				}
				want := map[string]int64{}
				if tt.wantExpiry != "" {
					want[tt.wantExpiry] = 1
				}
				if !maps.Equal(expiries, want) {
					t.Errorf("deadline expiries %v, want %v", expiries, want)
				}
			})
		})
	}
}

// BenchmarkBurstProgress is BenchmarkBurst with a progress, as the manager
// runs every burst: it costs two atomic operations per batch, not per line.
// Reported per line.
func BenchmarkBurstProgress(b *testing.B) {
	src := &benchSource{body: benchBody()}
	c := newCollector(b, src, &countSink{}, testBursts(1<<20, 100), telemetry.NopSettings())
	meta := new(atomic.Pointer[logs.Meta])
	meta.Store(&logs.Meta{ID: "c"})
	var progress BurstProgress
	b.SetBytes(int64(len(src.body)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		res := c.Burst(context.Background(), BurstSpec{ID: "c", Cursor: logs.BeginningCursor(), Meta: meta, Progress: &progress})
		if res.Lines != benchLines {
			b.Fatalf("read %d lines: %v", res.Lines, res.Err)
		}
	}
	if got := progress.Lines.Load(); got != int64(b.N)*benchLines {
		b.Fatalf("progress %d lines, want %d", got, int64(b.N)*benchLines)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchLines), "ns/line")
}

// longLines is a multiplexed response of n lines of size bytes (newline
// included), each split into the daemon's 16 KiB messages, generated as it
// is read: the test holds no copy of it.
type longLines struct {
	n, size int
	line    int    // the line being written
	off     int    // its bytes written
	buf     []byte // the current frame, unread part
	frame   []byte
}

var xs = bytes.Repeat([]byte("x"), chunkSize)

// Read fills p whole, as a fast daemon does: a burst then always has bytes
// buffered, and hands over a batch only when a bound says so.
func (l *longLines) Read(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		n, err := l.read(p)
		total += n
		p = p[n:]
		if err != nil {
			if total > 0 {
				return total, nil
			}
			return 0, err
		}
	}
	return total, nil
}

func (l *longLines) read(p []byte) (int, error) {
	if len(l.buf) == 0 {
		if l.line == l.n {
			return 0, io.EOF
		}
		chunk := min(chunkSize, l.size-l.off)
		ts := t0.Add(time.Duration(l.line) * time.Millisecond).UTC().Format("2006-01-02T15:04:05.000000000Z07:00")
		l.frame = l.frame[:0]
		l.frame = append(l.frame, byte(logs.Stdout), 0, 0, 0, 0, 0, 0, 0)
		binary.BigEndian.PutUint32(l.frame[4:], uint32(len(ts)+1+chunk))
		l.frame = append(l.frame, ts...)
		l.frame = append(l.frame, ' ')
		l.frame = append(l.frame, xs[:chunk-1]...)
		l.off += chunk
		if l.off == l.size {
			l.frame = append(l.frame, '\n')
			l.line, l.off = l.line+1, 0
		} else {
			l.frame = append(l.frame, 'x')
		}
		l.buf = l.frame
	}
	n := copy(p, l.buf)
	l.buf = l.buf[n:]
	return n, nil
}

func (l *longLines) Close() error { return nil }

type longLinesSource struct{ n, size int }

func (s longLinesSource) Inspect(context.Context, string) (*logs.Meta, error) {
	return &logs.Meta{ID: "c1", Name: "web"}, nil
}

func (s longLinesSource) Logs(context.Context, string, LogRequest) (io.ReadCloser, error) {
	return &longLines{n: s.n, size: s.size}, nil
}

// batchSizes records each batch's records and body bytes, keeping nothing
// else.
type batchSizes struct {
	lines   int
	records []int
	bytes   []int
}

func (s *batchSizes) Consume(_ context.Context, b *logs.Batch) error {
	n := 0
	for i := range b.Records {
		n += len(b.Records[i].Body)
	}
	s.lines += len(b.Records)
	s.records = append(s.records, len(b.Records))
	s.bytes = append(s.bytes, n)
	return nil
}

// TestBatchBoundedByBytes: 1024 lines of 256 KiB, read as fast as the daemon
// can send them, are handed to the sink in batches of at most
// maxBatchBytes + one line, not in one batch of 256 MiB.
func TestBatchBoundedByBytes(t *testing.T) {
	const lines, size = 1024, 256 << 10
	sink := &batchSizes{}
	c := newCollector(t, longLinesSource{lines, size}, sink, testBursts(1<<20, 100), telemetry.NopSettings())
	meta := new(atomic.Pointer[logs.Meta])
	res := c.Burst(context.Background(), BurstSpec{ID: "c1", Cursor: logs.BeginningCursor(), Meta: meta})
	if res.End != EndEOF || res.Lines != lines || sink.lines != lines {
		t.Fatalf("burst %v %v: %d lines, sink %d; want %d", res.End, res.Err, res.Lines, sink.lines, lines)
	}
	for i, n := range sink.bytes {
		if n >= maxBatchBytes+size {
			t.Fatalf("batch %d holds %d records, %d bytes; want less than %d (maxBatchBytes and one line)", i, sink.records[i], n, maxBatchBytes+size)
		}
	}
	if len(sink.bytes) < lines*(size-1)/(maxBatchBytes+size) {
		t.Fatalf("%d batches for %d MiB", len(sink.bytes), lines*size>>20)
	}
	if n := arenasHeld.Load(); n != 0 {
		t.Errorf("%d arenas held after the burst returned", n)
	}
	t.Logf("%d batches, largest %d bytes", len(sink.bytes), slices.Max(sink.bytes))
}

// TestBurstDaemonReplaysInStream: Docker's json-file follow reader can send
// a stretch of the log again in the middle of a response (seen with 8 KiB
// lines written fast: lines 1211 to 1999 of 2000 sent twice). The lines
// older than the cursor are dropped, and so are the replayed lines at the
// cursor's own timestamp; two identical lines at one nanosecond that are not
// a replay are both kept.
func TestBurstDaemonReplaysInStream(t *testing.T) {
	d := &fakeDaemon{log: []fakeMsg{
		{logs.Stdout, at(1), "a\n"}, {logs.Stdout, at(2), "b\n"}, {logs.Stdout, at(3), "c1\n"}, {logs.Stdout, at(3), "c2\n"},
		// the replay
		{logs.Stdout, at(2), "b\n"}, {logs.Stdout, at(3), "c1\n"}, {logs.Stdout, at(3), "c2\n"},
		{logs.Stdout, at(4), "d\n"}, {logs.Stdout, at(5), "e\n"}, {logs.Stdout, at(5), "e\n"},
		// a replay of the last line alone
		{logs.Stdout, at(4), "d\n"}, {logs.Stdout, at(5), "e\n"}, {logs.Stdout, at(5), "e\n"},
	}}
	sink := &memSink{}
	res := newTestCollector(t, d, sink, 1024, 10).Burst(context.Background(), spec(logs.BeginningCursor(), true))
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	want := []string{"stdout:a", "stdout:b", "stdout:c1", "stdout:c2", "stdout:d", "stdout:e", "stdout:e"}
	if got := sink.bodies(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q,\nwant %q", got, want)
	}
}

// waitingBody serves its bytes, then, as a quiet container does, has
// nothing: the read that would wait records what the bursts hold meanwhile
// and ends as the idle deadline does.
type waitingBody struct {
	r           *bytes.Reader
	heldThen    int64
	readersThen int64
	waited      bool
}

func (w *waitingBody) Read(p []byte) (int, error) {
	if w.r.Len() > 0 {
		return w.r.Read(p)
	}
	w.heldThen, w.readersThen, w.waited = arenasHeld.Load(), readersHeld.Load(), true
	return 0, fmt.Errorf("read: %w", os.ErrDeadlineExceeded)
}

func (w *waitingBody) Close() error { return nil }

type waitingSource struct{ body *waitingBody }

func (s waitingSource) Inspect(context.Context, string) (*logs.Meta, error) {
	return &logs.Meta{ID: "c1", Name: "web"}, nil
}

func (s waitingSource) Logs(context.Context, string, LogRequest) (io.ReadCloser, error) {
	return s.body, nil
}

// TestQuietBurstHoldsNoArena: a burst waiting for a quiet container's next
// bytes holds no arena (the bodies' buffer, 256 KiB and up) and no
// connection buffer (64 KiB): it gave them back once its batch was handed
// over and nothing more was buffered, so idle streams cost neither.
func TestQuietBurstHoldsNoArena(t *testing.T) {
	var buf bytes.Buffer
	for i := range 10 {
		writeMsg(&buf, fakeMsg{logs.Stdout, at(i + 1), fmt.Sprintf("line %d\n", i)}, false)
	}
	body := &waitingBody{r: bytes.NewReader(buf.Bytes())}
	sink := &memSink{}
	c := newCollector(t, waitingSource{body}, sink, testBursts(1<<20, 100), telemetry.NopSettings())
	res := c.Burst(context.Background(), spec(logs.BeginningCursor(), true))
	if res.End != EndIdle || len(sink.bodies()) != 10 {
		t.Fatalf("end %v (%v), %d records; want an idle end after 10", res.End, res.Err, len(sink.bodies()))
	}
	if !body.waited || body.heldThen != 0 || body.readersThen != 0 {
		t.Fatalf("while waiting for bytes the bursts held %d arenas and %d connection buffers (waited %v), want none", body.heldThen, body.readersThen, body.waited)
	}
	if n := readersHeld.Load(); n != 0 {
		t.Fatalf("after the burst %d connection buffers are held, want none", n)
	}
}
