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
	// Logger is berth's structured log.
	Logger *slog.Logger
	// TracerProvider gives berth's tracers; a no-op one when tracing is off.
	TracerProvider trace.TracerProvider
	// MeterProvider gives berth's meters.
	MeterProvider metric.MeterProvider
	// Version is berth's version, the instrumentation version of the
	// tracers and meters Tracer and Meter return; empty: none.
	Version string
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

// Tracer returns the tracer of berth's instrumentation scope, with Version
// as its instrumentation version when set.
func (s Settings) Tracer() trace.Tracer {
	if s.Version == "" {
		return s.TracerProvider.Tracer(ScopeName)
	}
	return s.TracerProvider.Tracer(ScopeName, trace.WithInstrumentationVersion(s.Version))
}

// Meter returns the meter of berth's instrumentation scope, with Version as
// its instrumentation version when set.
func (s Settings) Meter() metric.Meter {
	if s.Version == "" {
		return s.MeterProvider.Meter(ScopeName)
	}
	return s.MeterProvider.Meter(ScopeName, metric.WithInstrumentationVersion(s.Version))
}
