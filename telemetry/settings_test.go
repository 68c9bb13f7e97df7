package telemetry

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestSettingsScope(t *testing.T) {
	for _, version := range []string{"", "v1.2.3"} {
		spans := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
		reader := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		s := NopSettings()
		s.TracerProvider, s.MeterProvider, s.Version = tp, mp, version

		_, span := s.Tracer().Start(context.Background(), "x")
		span.End()
		c, err := s.Meter().Int64Counter("c")
		if err != nil {
			t.Fatal(err)
		}
		c.Add(context.Background(), 1)
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}

		if got := spans.Ended()[0].InstrumentationScope(); got.Name != ScopeName || got.Version != version {
			t.Errorf("tracer scope %s %q, want %s %q", got.Name, got.Version, ScopeName, version)
		}
		if got := rm.ScopeMetrics[0].Scope; got.Name != ScopeName || got.Version != version {
			t.Errorf("meter scope %s %q, want %s %q", got.Name, got.Version, ScopeName, version)
		}
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	}
}
