package export

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestOTLPSinkInstruments: the sink registers its instruments with the
// settings' meter provider, under the names, units and descriptions berth's
// README and dashboards use, and reports its counters through them.
func TestOTLPSinkInstruments(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reader := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		defer mp.Shutdown(context.Background())
		set := telemetry.NopSettings()
		set.MeterProvider = mp
		// One failure then the delivery of the first batch; the second is
		// rejected as invalid.
		exp := &fakeExporter{answers: []error{status.Error(codes.Unavailable, "down"), nil, status.Error(codes.InvalidArgument, "bad")}}
		s := newTestSink(t, exp, &ackLog{}, set)
		newest := time.Now().Add(-90 * time.Second)
		batch := &logs.Batch{Meta: &logs.Meta{ID: "c1", Name: "web"}, Records: []logs.Record{
			{Timestamp: newest.Add(-time.Second), Body: []byte("a")}, {Timestamp: newest, Body: []byte("b")},
		}}
		ctx := context.Background()
		if err := s.Consume(ctx, batch); err != nil {
			t.Fatal(err)
		}
		_, hi := retryWindow(1)
		time.Sleep(hi)
		synctest.Wait()
		if err := s.Consume(ctx, batchOf(testMeta, 2, "x", "y", "z")); err != nil {
			t.Fatal(err)
		}
		if err := s.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Second) // the lag grows while nothing is acknowledged
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(ctx, &rm); err != nil {
			t.Fatal(err)
		}
		got := map[string]metricdata.Metrics{}
		for _, sm := range rm.ScopeMetrics {
			if sm.Scope.Name != telemetry.ScopeName {
				t.Errorf("scope %q, want %q", sm.Scope.Name, telemetry.ScopeName)
			}
			for _, m := range sm.Metrics {
				got[m.Name] = m
			}
		}
		if len(got) != 5 {
			t.Errorf("%d instruments, want the sink's 5", len(got))
		}
		for _, want := range []struct {
			name, unit, description string
			counter                 bool // a monotonic sum, else a gauge
			value                   float64
		}{
			{"berth.records.exported", "{record}", "Log records the backend acknowledged.", true, 2},
			{"berth.records.rejected", "{record}", "Log records dropped: rejected by the backend as invalid, or too large to be sent even alone (not retried).", true, 3},
			{"berth.export.failures", "{failure}", "Failed export attempts (retried).", true, 1},
			{"berth.lag", "s", "Now minus the timestamp of the newest record the backend acknowledged.", false, time.Since(newest).Seconds()},
			{"berth.inflight.bytes", "By", "Bytes of records read but not yet acknowledged.", false, 0},
		} {
			m, ok := got[want.name]
			if !ok {
				t.Errorf("instrument %s missing", want.name)
				continue
			}
			if m.Unit != want.unit || m.Description != want.description {
				t.Errorf("%s: unit %q, description %q; want %q, %q", want.name, m.Unit, m.Description, want.unit, want.description)
			}
			var values []float64
			counter := false
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				counter = d.IsMonotonic && d.Temporality == metricdata.CumulativeTemporality
				for _, p := range d.DataPoints {
					values = append(values, float64(p.Value))
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					values = append(values, float64(p.Value))
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					values = append(values, p.Value)
				}
			default:
				t.Errorf("%s is a %T", want.name, m.Data)
			}
			if counter != want.counter {
				t.Errorf("%s is a %T, want a cumulative counter: %v", want.name, m.Data, want.counter)
			}
			if len(values) != 1 || values[0] != want.value {
				t.Errorf("%s = %v, want %v", want.name, values, want.value)
			}
		}
	})
}

// TestOTLPSinkLagUnobservedBeforeAck: berth.lag has no point before the
// first acknowledgement (an empty pipeline has no lag, not an infinite one).
func TestOTLPSinkLagUnobservedBeforeAck(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	set := telemetry.NopSettings()
	set.MeterProvider = mp
	s := newTestSink(t, &fakeExporter{}, nil, set)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if g, ok := m.Data.(metricdata.Gauge[float64]); m.Name == "berth.lag" && ok && len(g.DataPoints) > 0 {
				t.Errorf("berth.lag = %v before any acknowledgement", g.DataPoints)
			}
		}
	}
}

// TestOTLPSinkTraces: each export request is a berth.export span of the
// settings' tracer provider, with its size and outcome.
func TestOTLPSinkTraces(t *testing.T) {
	synctest.Test(t, testOTLPSinkTraces)
}

func testOTLPSinkTraces(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	set := telemetry.NopSettings()
	set.TracerProvider = tp
	exp := &fakeExporter{answers: []error{status.Error(codes.InvalidArgument, "bad")}}
	acks := &ackLog{}
	s := newTestSink(t, exp, acks, set)
	ctx := context.Background()
	if err := s.Consume(ctx, batchOf(testMeta, 1, "bad")); err != nil {
		t.Fatal(err)
	}
	synctest.Wait() // the rejected batch is exported alone
	if err := s.Consume(ctx, batchOf(testMeta, 2, "a", "b")); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want one per export request (2)", len(spans))
	}
	for i, want := range []map[string]attribute.Value{
		{"records": attribute.IntValue(1), "containers": attribute.IntValue(1), "outcome": attribute.StringValue("rejected")},
		{"records": attribute.IntValue(2), "containers": attribute.IntValue(1), "outcome": attribute.StringValue("ok")},
	} {
		sp := spans[i]
		if sp.Name() != "berth.export" || sp.InstrumentationScope().Name != telemetry.ScopeName {
			t.Errorf("span %d: %s of scope %s", i, sp.Name(), sp.InstrumentationScope().Name)
		}
		attrs := map[string]attribute.Value{}
		for _, kv := range sp.Attributes() {
			attrs[string(kv.Key)] = kv.Value
		}
		for k, v := range want {
			if attrs[k] != v {
				t.Errorf("span %d: %s = %v, want %v", i, k, attrs[k].Emit(), v.Emit())
			}
		}
	}
}
