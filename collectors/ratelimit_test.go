package collectors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
)

func TestRateLimitFromLabels(t *testing.T) {
	tests := []struct {
		value string // "-" : no label
		want  float64
		set   bool
		bad   bool
	}{
		{"-", 0, false, false},
		{"100", 100, true, false},
		{" 20 ", 20, true, false},
		{"0.5", 0.5, true, false},
		{"0", 0, true, false},
		{"1e9", 1e9, true, false},
		{"", 0, false, true},
		{"fast", 0, false, true},
		{"-1", 0, false, true},
		{"NaN", 0, false, true},
		{"+Inf", 0, false, true},
		{"2e9", 0, false, true},
		{"100/s", 0, false, true},
	}
	for _, tt := range tests {
		labels := map[string]string{"other": "1"}
		if tt.value != "-" {
			labels[LabelRateLimit] = tt.value
		}
		got, set, err := RateLimitFromLabels(labels)
		if (err != nil) != tt.bad || got != tt.want || set != tt.set {
			t.Errorf("%q: got %v, %v, %v; want %v, %v, error %v", tt.value, got, set, err, tt.want, tt.set, tt.bad)
		}
		if err != nil && !strings.Contains(err.Error(), LabelRateLimit) {
			t.Errorf("%q: error %q does not name the label", tt.value, err)
		}
	}
}

// seqLog is n complete lines "seq=<i>" on stdout, 1 ms apart from t0 (every
// 5th on stderr when mixed).
func seqLog(n int, mixed bool) []fakeMsg {
	out := make([]fakeMsg, n)
	for i := range out {
		s := logs.Stdout
		if mixed && i%5 == 4 {
			s = logs.Stderr
		}
		out[i] = fakeMsg{s, t0.Add(time.Duration(i) * time.Millisecond), fmt.Sprintf("seq=%06d\n", i)}
	}
	return out
}

// timedSink keeps every record it accepts with the (bubble's) time it
// accepted it, and counts batches, empty ones apart.
type timedSink struct {
	mu      sync.Mutex
	seqs    []int
	at      []time.Time
	batches int
	empty   int
	last    logs.Cursor // the cursor of the last batch
}

func (s *timedSink) Consume(_ context.Context, b *logs.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches++
	if len(b.Records) == 0 {
		s.empty++
	}
	s.last = b.Cursor.Clone()
	now := time.Now()
	for _, r := range b.Records {
		n, err := strconv.Atoi(strings.TrimPrefix(string(r.Body), "seq="))
		if err != nil {
			return fmt.Errorf("record %q: %w", r.Body, err)
		}
		s.seqs = append(s.seqs, n)
		s.at = append(s.at, now)
	}
	return nil
}

func (s *timedSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seqs)
}

// checkSeqs fails unless seqs is from, from+1, ..., to-1: no gap, no
// duplicate, in order.
func checkSeqs(t *testing.T, seqs []int, from, to int) {
	t.Helper()
	if len(seqs) != to-from {
		t.Fatalf("got %d records, want %d (seq %d to %d)", len(seqs), to-from, from, to-1)
	}
	for i, s := range seqs {
		if s != from+i {
			t.Fatalf("record %d is seq %d, want %d (a gap or a duplicate)", i, s, from+i)
		}
	}
}

func rateBursts(rl config.RateLimit) config.Bursts {
	cfg := testBursts(1024, 10)
	if rl.Burst == 0 {
		rl.Burst = time.Second
	}
	if rl.Mode == "" {
		rl.Mode = config.RateModeThrottle
	}
	cfg.RateLimit = rl
	return cfg
}

// TestBurstThrottle: with a limit in throttle mode, a container that wrote
// n lines at once has every one delivered, in order, none twice, and no
// faster than the bucket allows: by any time t after the start at most
// burst + rate*t records (plus the quantum taken ahead, a tenth of a second
// at the rate). The records still go out in batches, not one by one.
func TestBurstThrottle(t *testing.T) {
	for _, tt := range []struct {
		name  string
		rl    config.RateLimit
		n     int
		rate  float64 // the binding rate, in lines per second
		burst float64 // the binding bucket, in lines
	}{
		{"lines", config.RateLimit{LinesPerSecond: 100}, 1000, 100, 100},
		{"bytes", config.RateLimit{BytesPerSecond: 1000}, 300, 100, 100}, // "seq=000000" is 10 bytes
		{"both, lines bind", config.RateLimit{LinesPerSecond: 50, BytesPerSecond: 1 << 20, Burst: 2 * time.Second}, 400, 50, 100},
		{"label", config.RateLimit{}, 300, 30, 30}, // berth.rate_limit=30
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				d := &fakeDaemon{log: seqLog(tt.n, true)}
				if tt.name == "label" {
					d.labels = map[string]string{LabelRateLimit: "30"}
				}
				sink := &timedSink{}
				start := time.Now()
				res := newCollector(t, d, sink, rateBursts(tt.rl), telemetry.NopSettings()).Burst(context.Background(), spec(logs.BeginningCursor(), false))
				elapsed := time.Since(start)
				if res.End != EndEOF || res.Err != nil || res.Lines != int64(tt.n) || res.Dropped != 0 {
					t.Fatalf("result %+v, want EOF, %d lines, none dropped", res, tt.n)
				}
				checkSeqs(t, sink.seqs, 0, tt.n)
				quantum := max(1, tt.rate/10)
				for i, at := range sink.at {
					allowed := tt.burst + tt.rate*at.Sub(start).Seconds() + quantum
					if float64(i+1) > allowed {
						t.Fatalf("record %d delivered after %v: faster than the limit (%v allowed)", i, at.Sub(start), allowed)
					}
				}
				least := time.Duration((float64(tt.n) - tt.burst - quantum) / tt.rate * float64(time.Second))
				most := time.Duration((float64(tt.n) - tt.burst + quantum) / tt.rate * float64(time.Second))
				if elapsed < least || elapsed > most {
					t.Errorf("took %v, want %v to %v", elapsed, least, most)
				}
				if maxBatches := tt.n/int(quantum) + 4; sink.batches > maxBatches {
					t.Errorf("%d batches for %d records, want at most %d: throttled records go out a quantum at a time", sink.batches, tt.n, maxBatches)
				}
				if !res.Cursor.Streams[1].Time.Equal(d.log[tt.n-1].ts) { // the last line is on stderr
					t.Errorf("cursor %+v, want the last line", res.Cursor)
				}
			})
		})
	}
}

// TestBurstThrottleKeepsBucket: the container's buckets (BurstSpec.Rate)
// outlive a burst: a re-attach right after a burst that emptied them waits,
// one after a quiet time finds them refilled.
func TestBurstThrottleKeepsBucket(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := rateBursts(config.RateLimit{LinesPerSecond: 10})
		var rs RateState
		run := func(log []fakeMsg, cur logs.Cursor) (time.Duration, BurstResult) {
			sink := &timedSink{}
			sp := spec(cur, false)
			sp.Rate = &rs
			start := time.Now()
			res := newCollector(t, &fakeDaemon{log: log}, sink, cfg, telemetry.NopSettings()).Burst(context.Background(), sp)
			if res.Err != nil || res.Lines != int64(len(log)) {
				t.Fatalf("result %+v, want %d lines", res, len(log))
			}
			return time.Since(start), res
		}
		log := seqLog(10, false)
		if took, _ := run(log, logs.BeginningCursor()); took != 0 {
			t.Fatalf("a full bucket's worth took %v, want no wait", took)
		}
		if took, _ := run(log, logs.BeginningCursor()); took < 900*time.Millisecond {
			t.Fatalf("right after, a bucket's worth took %v, want about 1s: the bucket was refilled", took)
		}
		time.Sleep(2 * time.Second)
		if took, _ := run(log, logs.BeginningCursor()); took != 0 {
			t.Fatalf("after a quiet time, a bucket's worth took %v, want no wait", took)
		}
	})
}

// TestBurstThrottleShutdown: a burst waiting for its rate limit ends at
// once when berth stops, with the records it delivered committed; the rest
// are read by the next burst from its cursor: no gap, no duplicate.
func TestBurstThrottleShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := seqLog(100, true)
		cfg := rateBursts(config.RateLimit{LinesPerSecond: 10})
		sink := &timedSink{}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan BurstResult, 1)
		go func() {
			done <- newCollector(t, &fakeDaemon{log: log}, sink, cfg, telemetry.NopSettings()).Burst(ctx, spec(logs.BeginningCursor(), true))
		}()
		time.Sleep(3 * time.Second)
		synctest.Wait()
		cancel()
		synctest.Wait()
		var res BurstResult
		select {
		case res = <-done:
		default:
			t.Fatal("the burst still waits for its rate limit after the cancel")
		}
		if res.End != EndShutdown || res.Lines != int64(sink.count()) || res.Lines < 35 || res.Lines > 45 {
			t.Fatalf("result %+v with %d delivered, want a shutdown after about 40 lines", res, sink.count())
		}
		first := sink.count()
		res2 := newCollector(t, &fakeDaemon{log: log}, sink, rateBursts(config.RateLimit{}), telemetry.NopSettings()).Burst(context.Background(), spec(res.Cursor, false))
		if res2.Err != nil {
			t.Fatal(res2.Err)
		}
		checkSeqs(t, sink.seqs, 0, len(log))
		if res2.Lines != int64(len(log)-first) {
			t.Errorf("second burst %d lines, want %d", res2.Lines, len(log)-first)
		}
	})
}

// TestBurstDrop: in drop mode a container that writes faster than its limit
// has the records beyond it dropped, counted (result, progress, metric by
// container), and its cursor moved past them, even when the last records
// were all dropped (an empty batch carries the cursor).
func TestBurstDrop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 500
		log := seqLog(n+100, true)
		set, reader := metricSettings(t)
		sink := &timedSink{}
		progress := &BurstProgress{}
		var rs RateState
		sp := spec(logs.BeginningCursor(), false)
		sp.Progress, sp.Rate = progress, &rs
		cfg := rateBursts(config.RateLimit{LinesPerSecond: 100, Mode: config.RateModeDrop})
		start := time.Now()
		d := &fakeDaemon{log: log, visible: []int{n}}
		res := newCollector(t, d, sink, cfg, set).Burst(context.Background(), sp)
		if time.Since(start) != 0 {
			t.Errorf("drop mode waited %v", time.Since(start))
		}
		if res.Err != nil || res.End != EndEOF {
			t.Fatalf("result %+v", res)
		}
		// All at once: the bucket's 100, no more.
		if res.Lines != 100 || res.Dropped != n-100 || res.Lines+res.Dropped != n {
			t.Fatalf("delivered %d, dropped %d; want 100 and %d", res.Lines, res.Dropped, n-100)
		}
		checkSeqs(t, sink.seqs, 0, 100)
		if progress.Dropped.Load() != res.Dropped || progress.Lines.Load() != res.Lines {
			t.Errorf("progress %d lines, %d dropped; want the result's", progress.Lines.Load(), progress.Dropped.Load())
		}
		last := log[n-1]
		if !res.Cursor.Streams[0].Time.Equal(log[n-2].ts) || !res.Cursor.Streams[1].Time.Equal(last.ts) {
			t.Errorf("cursor %+v, want past the last (dropped) lines of each stream", res.Cursor)
		}
		if !sink.last.Streams[1].Time.Equal(last.ts) {
			t.Errorf("last batch's cursor %+v: the checkpoint does not move past the dropped lines", sink.last)
		}
		got, _ := collectMetrics(t, reader)
		m, ok := got["berth.records.dropped"]
		if !ok {
			t.Fatal("no berth.records.dropped")
		}
		pts := m.Data.(metricdata.Sum[int64]).DataPoints
		if len(pts) != 1 || pts[0].Value != n-100 {
			t.Fatalf("berth.records.dropped points %+v, want one of %d", pts, n-100)
		}
		if v, _ := pts[0].Attributes.Value(attribute.Key("container.id")); v.AsString() != "c1" {
			t.Errorf("berth.records.dropped attributes %v, want container.id c1", pts[0].Attributes.ToSlice())
		}
		if v, _ := pts[0].Attributes.Value(attribute.Key("container.name")); v.AsString() != "web" {
			t.Errorf("berth.records.dropped attributes %v, want container.name web", pts[0].Attributes.ToSlice())
		}

		// A re-attach from the cursor at once, the bucket still empty:
		// the 100 new lines are all dropped, none of the old read again,
		// and a batch of no record carries the cursor past them.
		sink2 := &timedSink{}
		sp2 := spec(res.Cursor, false)
		sp2.Rate = &rs
		res2 := newCollector(t, &fakeDaemon{log: log}, sink2, cfg, set).Burst(context.Background(), sp2)
		if res2.Err != nil || res2.Lines != 0 || res2.Dropped != 100 {
			t.Fatalf("re-attach: %+v, want the 100 new lines dropped", res2)
		}
		if sink2.empty != 1 || sink2.batches != 1 || !sink2.last.Streams[1].Time.Equal(log[len(log)-1].ts) {
			t.Errorf("re-attach: %d batches (%d empty), last cursor %+v; want one empty batch past the last line", sink2.batches, sink2.empty, sink2.last)
		}
		if !res2.Cursor.Streams[1].Time.Equal(log[len(log)-1].ts) {
			t.Errorf("re-attach cursor %+v, want past the last line", res2.Cursor)
		}
	})
}

// TestBurstDropPaced: lines written at the rate are all kept; written
// faster, what the bucket refills in between is kept: with 1 ms between
// lines and 100 lines/s, the first 100 and then one in 10.
func TestBurstDropPaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 1100
		pr, pw := io.Pipe()
		sink := &timedSink{}
		cfg := rateBursts(config.RateLimit{LinesPerSecond: 100, Mode: config.RateModeDrop})
		done := make(chan BurstResult, 1)
		go func() {
			done <- newCollector(t, &pipeSource{r: pr}, sink, cfg, telemetry.NopSettings()).Burst(context.Background(), spec(logs.BeginningCursor(), true))
		}()
		for i := range n {
			var buf bytes.Buffer
			writeMsg(&buf, fakeMsg{logs.Stdout, time.Now(), fmt.Sprintf("seq=%06d\n", i)}, false)
			if _, err := pw.Write(buf.Bytes()); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			time.Sleep(time.Millisecond)
		}
		_ = pw.Close()
		res := <-done
		if res.Lines+res.Dropped != n {
			t.Fatalf("delivered %d + dropped %d, want %d", res.Lines, res.Dropped, n)
		}
		// 100 from the full bucket, then 1 per 10 ms over 1.1 s: about 110.
		if res.Lines < 200 || res.Lines > 215 {
			t.Errorf("delivered %d of %d, want about 210", res.Lines, n)
		}
		for i := 1; i < len(sink.seqs); i++ {
			if sink.seqs[i] <= sink.seqs[i-1] {
				t.Fatalf("seq %d after %d: out of order or twice", sink.seqs[i], sink.seqs[i-1])
			}
		}
	})
}

// TestBurstDropMultiline: in drop mode a joined record is kept or dropped
// whole, never cut.
func TestBurstDropMultiline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var log []fakeMsg
		for i := range 6 {
			log = append(log, lines(logs.Stdout, t0.Add(time.Duration(i)*time.Second), javaTrace)...)
		}
		cfg := multilineBursts(1<<16, config.Multiline{Preset: "java"})
		cfg.RateLimit = config.RateLimit{LinesPerSecond: 2, Burst: time.Second, Mode: config.RateModeDrop}
		sink := &memSink{}
		res := newCollector(t, &fakeDaemon{log: log}, sink, cfg, telemetry.NopSettings()).Burst(context.Background(), spec(logs.BeginningCursor(), false))
		if res.Err != nil || res.Lines != 2 || res.Dropped != 4 {
			t.Fatalf("result %+v, want 2 records kept and 4 dropped", res)
		}
		for _, b := range sink.bodies() {
			if b != "stdout:"+javaTrace {
				t.Errorf("record %q, want the whole trace", b)
			}
		}
		if !res.Cursor.Streams[0].Time.Equal(log[len(log)-1].ts) {
			t.Errorf("cursor %+v, want past the last trace", res.Cursor)
		}
	})
}

// TestBurstThrottleMultiline: in throttle mode a joined record costs one
// line: six Java traces (four lines each) at 2 records per second with a
// bucket of 2 arrive whole over 1.5 s: the first two from the bucket, the
// next three 0.5 s apart, and the last, closed by the end of the stream,
// at once; its cost is owed by the container's buckets, and its next burst
// pays it before reading on.
func TestBurstThrottleMultiline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var log []fakeMsg
		for i := range 6 {
			log = append(log, lines(logs.Stdout, t0.Add(time.Duration(i)*time.Second), javaTrace)...)
		}
		cfg := multilineBursts(1<<16, config.Multiline{Preset: "java"})
		cfg.RateLimit = config.RateLimit{LinesPerSecond: 2, Burst: time.Second, Mode: config.RateModeThrottle}
		sink := &memSink{}
		var rs RateState
		sp := spec(logs.BeginningCursor(), false)
		sp.Rate = &rs
		start := time.Now()
		res := newCollector(t, &fakeDaemon{log: log}, sink, cfg, telemetry.NopSettings()).Burst(context.Background(), sp)
		if took := time.Since(start); took != 1500*time.Millisecond {
			t.Errorf("6 records at 2/s with a bucket of 2 took %v, want 1.5s", took)
		}
		if !rs.lim.owing() {
			t.Error("the last record's cost is not owed")
		}
		if res.Err != nil || res.Lines != 6 || res.Dropped != 0 {
			t.Fatalf("result %+v, want 6 records", res)
		}
		for _, b := range sink.bodies() {
			if b != "stdout:"+javaTrace {
				t.Errorf("record %q, want the whole trace", b)
			}
		}
		// The next burst, at once, pays the debt with its first record's
		// cost (0.5 s each) before it reads on; its second record, closed
		// by the end of the stream, is owed in turn.
		more := lines(logs.Stdout, t0.Add(time.Minute), "one")
		more = append(more, lines(logs.Stdout, t0.Add(time.Minute+time.Second), "two")...)
		start = time.Now()
		sp.Cursor = res.Cursor
		res = newCollector(t, &fakeDaemon{log: append(log, more...)}, sink, cfg, telemetry.NopSettings()).Burst(context.Background(), sp)
		if res.Err != nil || res.Lines != 2 {
			t.Fatalf("second burst %+v, want the 2 new records", res)
		}
		if took := time.Since(start); took != time.Second || !rs.lim.owing() {
			t.Errorf("second burst took %v (owing %v), want 1s: the debt and the first record paid, the second owed", took, rs.lim.owing())
		}
	})
}

// TestBurstRateLabelBad: a berth.rate_limit label berth cannot use leaves
// the configuration's limit (here none) in force: the container is read in
// full.
func TestBurstRateLabelBad(t *testing.T) {
	d := &fakeDaemon{log: seqLog(50, false), labels: map[string]string{LabelRateLimit: "lots"}}
	sink := &timedSink{}
	cfg := rateBursts(config.RateLimit{Mode: config.RateModeDrop})
	res := newCollector(t, d, sink, cfg, telemetry.NopSettings()).Burst(context.Background(), spec(logs.BeginningCursor(), false))
	if res.Err != nil || res.Lines != 50 || res.Dropped != 0 {
		t.Fatalf("result %+v, want all 50 lines", res)
	}
	// A good label limits a container the configuration does not.
	d = &fakeDaemon{log: seqLog(50, false), labels: map[string]string{LabelRateLimit: "20"}}
	res = newCollector(t, d, &timedSink{}, cfg, telemetry.NopSettings()).Burst(context.Background(), spec(logs.BeginningCursor(), false))
	if res.Lines != 20 || res.Dropped != 30 {
		t.Fatalf("with berth.rate_limit=20: %+v, want 20 kept, 30 dropped", res)
	}
}

// TestLimiterLongRecord: a record larger than the whole byte bucket costs
// the whole bucket, so it passes once the bucket is full, in both modes.
func TestLimiterLongRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var l limiter
		l.configure(rateParams{bytes: 100, burst: time.Second, drop: true})
		if !l.take(5000) {
			t.Fatal("a record larger than the bucket was dropped with the bucket full")
		}
		if l.take(1) {
			t.Fatal("a record passed with the bucket empty")
		}
		time.Sleep(time.Second)
		if !l.take(5000) {
			t.Fatal("a record larger than the bucket was dropped once it refilled")
		}
		l.configure(rateParams{bytes: 100, burst: time.Second})
		if !l.take(5000) || l.owing() || !l.take(5000) || !l.owing() {
			t.Fatal("throttle: the first long record should pass, the second owe")
		}
		start := time.Now()
		if err := l.pay(context.Background()); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took != time.Second {
			t.Errorf("paying a whole bucket took %v, want 1s", took)
		}
		ctx, cancel := context.WithCancel(context.Background())
		l.take(5000)
		go func() { time.Sleep(100 * time.Millisecond); cancel() }()
		if err := l.pay(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("pay after cancel: %v, want context.Canceled", err)
		}
	})
}

// BenchmarkBurstRateLimit is BenchmarkBurst with a limit on every
// container that never binds (1e9 lines and bytes per second): the cost of
// the buckets' book-keeping on the per-line path.
func BenchmarkBurstRateLimit(b *testing.B) {
	src := &benchSource{body: benchBody()}
	cfg := testBursts(1<<20, 100)
	cfg.RateLimit = config.RateLimit{LinesPerSecond: 1e9, BytesPerSecond: 1e12, Burst: time.Second, Mode: config.RateModeDrop}
	c := newCollector(b, src, &countSink{}, cfg, telemetry.NopSettings())
	meta := new(atomic.Pointer[logs.Meta])
	meta.Store(&logs.Meta{ID: "c"})
	var rs RateState
	b.SetBytes(int64(len(src.body)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		res := c.Burst(context.Background(), BurstSpec{ID: "c", Cursor: logs.BeginningCursor(), Meta: meta, Rate: &rs})
		if res.Lines != benchLines {
			b.Fatalf("read %d lines (%d dropped): %v", res.Lines, res.Dropped, res.Err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchLines), "ns/line")
}
