package collectors

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
)

// timedResponse is one scripted logs response: its bytes, then, after wait,
// the error that ends it (nil: the end of the stream).
type timedResponse struct {
	body []byte
	wait time.Duration
	err  error
}

// timedSource answers each logs request with the next scripted response.
type timedSource struct {
	mu        sync.Mutex
	responses []timedResponse
}

func (s *timedSource) Inspect(context.Context, string) (*logs.Meta, error) {
	return &logs.Meta{ID: "c1", Name: "web"}, nil
}

func (s *timedSource) Logs(context.Context, string, LogRequest) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.responses[0]
	s.responses = s.responses[1:]
	return &timedBody{r: bytes.NewReader(r.body), wait: r.wait, err: r.err}, nil
}

// timedBody returns its bytes, then waits and ends with its error.
type timedBody struct {
	r    *bytes.Reader
	wait time.Duration
	err  error
}

func (b *timedBody) Read(p []byte) (int, error) {
	if b.r.Len() > 0 {
		return b.r.Read(p)
	}
	time.Sleep(b.wait)
	if b.err != nil {
		return 0, b.err
	}
	return 0, io.EOF
}

func (b *timedBody) Close() error { return nil }

// TestInstruments: the collector creates berth.records.read,
// berth.bytes.read, berth.burst.duration, berth.deadline.expiries and
// berth.logs.requests with
// the meter of its settings, with the names, units, descriptions, bucket
// boundaries and attributes /metrics and the OTLP export have always shown,
// and records what its bursts read and how they ended.
func TestInstruments(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		set, reader := metricSettings(t)
		deadline := fmt.Errorf("read: %w", os.ErrDeadlineExceeded)
		var first bytes.Buffer
		for i := range 3 {
			writeMsg(&first, fakeMsg{logs.Stdout, at(i + 1), "0123456789\n"}, false) // 10 bytes of body each
		}
		writeMsg(&first, fakeMsg{logs.Stderr, at(4), "oops!!!\n"}, false) // 7 bytes
		src := &timedSource{responses: []timedResponse{
			{body: first.Bytes(), wait: 2 * time.Second, err: deadline}, // quiet for 2s: an idle end
			{wait: time.Minute, err: deadline},                          // a request that runs into max_burst
		}}
		cfg := testBursts(1024, 10)
		cfg.MaxBurst = time.Minute
		c := newCollector(t, src, &memSink{}, cfg, set)
		res := c.Burst(context.Background(), spec(logs.BeginningCursor(), false))
		if res.End != EndIdle || res.Lines != 4 || res.Duration != 2*time.Second {
			t.Fatalf("first burst = %+v, want an idle end after 4 lines and 2s", res)
		}
		res = c.Burst(context.Background(), spec(res.Cursor, false))
		if res.End != EndMaxBurst || res.Lines != 0 || res.Duration != time.Minute {
			t.Fatalf("second burst = %+v, want a max_burst end after 1m", res)
		}

		got, scopes := collectMetrics(t, reader)
		for _, want := range []struct{ name, unit, description string }{
			{"berth.records.read", "{record}", "Log records read from Docker, by log.iostream."},
			{"berth.bytes.read", "By", "Bytes of log record bodies read from Docker, by log.iostream."},
			{"berth.burst.duration", "s", "Duration of log bursts, by end reason."},
			{"berth.deadline.expiries", "{expiry}", "Log bursts ended by a connection deadline, by kind (idle or max_burst)."},
			{"berth.logs.requests", "{request}", "Logs requests sent to Docker (attaches, re-attaches and reads of stopped containers' logs)."},
		} {
			m, ok := got[want.name]
			if !ok {
				t.Errorf("instrument %s missing", want.name)
				continue
			}
			if m.Unit != want.unit || m.Description != want.description {
				t.Errorf("%s: unit %q, description %q; want %q, %q", want.name, m.Unit, m.Description, want.unit, want.description)
			}
			if scopes[want.name] != telemetry.ScopeName {
				t.Errorf("%s: scope %q, want %q", want.name, scopes[want.name], telemetry.ScopeName)
			}
		}
		if len(got) != 5 {
			t.Errorf("instruments %v, want the five above", slices.Sorted(maps.Keys(got)))
		}
		if d, ok := got["berth.logs.requests"].Data.(metricdata.Sum[int64]); !ok || len(d.DataPoints) != 1 || d.DataPoints[0].Value != 2 || !d.IsMonotonic {
			t.Errorf("berth.logs.requests = %+v, want a counter at 2 (one request per burst)", got["berth.logs.requests"].Data)
		}
		if r := sumBy(t, got["berth.records.read"], "log.iostream"); len(r) != 2 || r["stdout"] != 3 || r["stderr"] != 1 {
			t.Errorf("records read by log.iostream %v, want stdout 3, stderr 1", r)
		}
		if b := sumBy(t, got["berth.bytes.read"], "log.iostream"); len(b) != 2 || b["stdout"] != 30 || b["stderr"] != 7 {
			t.Errorf("bytes read by log.iostream %v, want stdout 30, stderr 7", b)
		}
		if d := sumBy(t, got["berth.deadline.expiries"], "kind"); len(d) != 2 || d["idle"] != 1 || d["max_burst"] != 1 {
			t.Errorf("deadline expiries by kind %v, want idle 1, max_burst 1", d)
		}
		h, ok := got["berth.burst.duration"].Data.(metricdata.Histogram[float64])
		if !ok {
			t.Fatalf("berth.burst.duration is a %T, want a float64 histogram", got["berth.burst.duration"].Data)
		}
		sums := map[string]float64{}
		for _, p := range h.DataPoints {
			if !slices.Equal(p.Bounds, burstDurationBuckets) {
				t.Errorf("bucket boundaries %v, want %v", p.Bounds, burstDurationBuckets)
			}
			if p.Attributes.Len() != 1 || p.Count != 1 {
				t.Errorf("point %v: %d bursts, want 1 and only end_reason", p.Attributes.ToSlice(), p.Count)
			}
			v, _ := p.Attributes.Value("end_reason")
			sums[v.AsString()] += p.Sum
		}
		if len(sums) != 2 || sums["idle_deadline"] != 2 || sums["max_burst"] != 60 {
			t.Errorf("burst durations by end_reason %v, want idle_deadline 2s, max_burst 60s", sums)
		}
	})
}

// TestInstrumentsAllocateNothing: recording a batch and a burst's end with
// the SDK allocates nothing (the attribute sets are built once).
func TestInstrumentsAllocateNothing(t *testing.T) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	set := telemetry.NopSettings()
	set.MeterProvider = mp
	inst, err := newInstruments(set.Meter())
	if err != nil {
		t.Fatal(err)
	}
	record := func() {
		inst.read([2]int64{3, 1}, [2]int64{30, 7})
		inst.burstEnded(EndIdle, time.Second)
		inst.burstEnded(EndMaxBurst, time.Minute)
		inst.burstEnded(EndEOF, time.Millisecond)
	}
	record() // the first measurement of each series allocates it
	if n := testing.AllocsPerRun(100, record); n != 0 {
		t.Errorf("%v allocations per batch and burst end, want 0", n)
	}
}
