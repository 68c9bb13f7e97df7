package events

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/berthlog/berth/config"
)

// TestMetrics: the manager reports its reconnects, its containers by state
// and its open streams, under the names, units and attributes README
// documents.
func TestMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	h := newHarness(t)
	h.set.MeterProvider = mp
	h.src.setList(running("c1"), running("c2"), exited("c3"))
	cfg := testConfig()
	cfg.InitialPosition = config.InitialPositionEnd
	h.start(cfg)
	h.col.waitBurst(t, "c1", 1)
	h.col.waitBurst(t, "c2", 1)
	h.waitState("c3", StateStopped)

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			got[m.Name] = m
		}
	}
	for name, unit := range map[string]string{
		"berth.events.reconnects": "{reconnect}", "berth.containers": "{container}", "berth.streams.open": "{stream}",
	} {
		if m, ok := got[name]; !ok || m.Unit != unit {
			t.Errorf("%s: present %v, unit %q; want unit %q", name, ok, m.Unit, unit)
		}
	}
	if d, ok := got["berth.events.reconnects"].Data.(metricdata.Sum[int64]); !ok || len(d.DataPoints) != 1 || d.DataPoints[0].Value != 1 {
		t.Errorf("berth.events.reconnects = %+v, want one connection", got["berth.events.reconnects"].Data)
	}
	byState := map[string]int64{}
	if d, ok := got["berth.containers"].Data.(metricdata.Gauge[int64]); ok {
		for _, p := range d.DataPoints {
			v, _ := p.Attributes.Value(attribute.Key("state"))
			byState[v.AsString()] += p.Value
		}
	}
	if byState[string(StateStreaming)] != 2 || byState[string(StateStopped)] != 1 || len(byState) != 2 {
		t.Errorf("berth.containers by state = %v, want 2 streaming and 1 stopped", byState)
	}
	if d, ok := got["berth.streams.open"].Data.(metricdata.Gauge[int64]); !ok || len(d.DataPoints) != 1 || d.DataPoints[0].Value != 2 {
		t.Errorf("berth.streams.open = %+v, want 2", got["berth.streams.open"].Data)
	}
}
