package telemetry

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/berthlog/berth/export"
	"github.com/berthlog/berth/logs"
)

func TestInstruments(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	m, err := newMetrics(mp.Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	m.EventsConnected()
	sink := export.NewOTLPSink(acceptAll{}, nil, export.OTLPSinkConfig{Backoff: export.BackoffConfig{Initial: time.Millisecond, Max: time.Millisecond, Multiplier: 2}}, nil)
	batch := &logs.Batch{Meta: &logs.Meta{ID: "c1", Name: "web"}, Records: []logs.Record{{Timestamp: time.Unix(1, 0), Body: []byte("a")}, {Timestamp: time.Unix(1, 0), Body: []byte("b")}}}
	if err := sink.Consume(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if err := sink.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	err = m.Observe(Gauges{
		Containers: func(context.Context) (map[string]int64, int64, error) {
			return map[string]int64{"streaming": 2, "stopped": 1}, 2, nil
		},
		Sink: sink,
	})
	if err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, mm := range sm.Metrics {
			got[mm.Name] = mm
		}
	}
	units := map[string]string{
		"berth.events.reconnects": "{reconnect}",
		"berth.containers":        "{container}", "berth.streams.open": "{stream}",
		"berth.records.exported": "{record}", "berth.records.rejected": "{record}",
		"berth.export.failures": "{failure}", "berth.lag": "s", "berth.inflight.bytes": "By",
		"process.unix.file_descriptor.count": "{file_descriptor}", "process.memory.usage": "By",
	}
	for name, unit := range units {
		mm, ok := got[name]
		if !ok {
			t.Errorf("instrument %s missing", name)
			continue
		}
		if mm.Unit != unit {
			t.Errorf("%s unit %q, want %q", name, mm.Unit, unit)
		}
	}
	sumBy := func(name, key string) map[string]int64 {
		out := map[string]int64{}
		switch d := got[name].Data.(type) {
		case metricdata.Sum[int64]:
			for _, p := range d.DataPoints {
				v, _ := p.Attributes.Value(attribute.Key(key))
				out[v.Emit()] += p.Value
			}
		case metricdata.Gauge[int64]:
			for _, p := range d.DataPoints {
				v, _ := p.Attributes.Value(attribute.Key(key))
				out[v.Emit()] += p.Value
			}
		}
		return out
	}
	if c := sumBy("berth.containers", "state"); c["streaming"] != 2 || c["stopped"] != 1 {
		t.Errorf("containers by state %v", c)
	}
	if e := sumBy("berth.records.exported", ""); e[""] != 2 {
		t.Errorf("records exported %v", e)
	}
	if n := sumBy("process.unix.file_descriptor.count", ""); n[""] <= 0 {
		t.Errorf("open fds %v", n)
	}
}

func TestSelfServesPrometheus(t *testing.T) {
	s, err := NewSelf(context.Background(), SelfConfig{Version: "test", HostName: "h", TraceSampling: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	s.Metrics.EventsConnected()
	srv := httptest.NewServer(s.MetricsHandler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"berth_events_reconnects_total", "go_goroutine_count"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// acceptAll is an OTLP log exporter that acknowledges every record.
type acceptAll struct{}

func (acceptAll) Export(context.Context, []sdklog.Record) error { return nil }
func (acceptAll) Shutdown(context.Context) error                { return nil }
func (acceptAll) ForceFlush(context.Context) error              { return nil }
