package telemetry

import (
	"log/slog"

	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Settings is what every component of berth receives to report on itself:
// its logger, and the tracer and meter providers of berth's own telemetry.
// A component builds its tracer and instruments from them when it is
// constructed (as OpenTelemetry Collector components do with their
// TelemetrySettings), so no component needs an observer interface of its own
// or a nil check on the per-line path.
type Settings struct {
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
}

// ScopeName is the instrumentation scope of every tracer and meter berth
// creates.
const ScopeName = "github.com/berthlog/berth"

// NopSettings returns Settings that discard everything: for tests, and for a
// component whose telemetry does not matter.
func NopSettings() Settings {
	return Settings{
		Logger:         slog.New(slog.DiscardHandler),
		TracerProvider: tracenoop.NewTracerProvider(),
		MeterProvider:  metricnoop.NewMeterProvider(),
	}
}

// Tracer returns the tracer of berth's instrumentation scope.
func (s Settings) Tracer() trace.Tracer { return s.TracerProvider.Tracer(ScopeName) }

// Meter returns the meter of berth's instrumentation scope.
func (s Settings) Meter() metric.Meter { return s.MeterProvider.Meter(ScopeName) }
