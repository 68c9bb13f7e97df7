package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/runtime"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	promexporter "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/internal/otlpconf"
)

// Self is berth's own telemetry: a meter provider read by Prometheus (and
// pushed over OTLP when an endpoint is set), a tracer provider, and the
// Settings handed to every component.
type Self struct {
	settings       Settings
	meterProvider  *sdkmetric.MeterProvider
	tracerProvider *sdktrace.TracerProvider // nil: tracing off
	registry       *prometheus.Registry
}

// New sets up berth's own telemetry from its configuration section and the
// OTLP endpoint of the records: berth's traces and metrics go over OTLP to
// that endpoint when one is set (in otlp or, through getenv, in
// OTEL_EXPORTER_OTLP_*); its metrics are always served by MetricsHandler.
// version and hostName describe berth in the resource and the
// instrumentation scope; logger becomes Settings().Logger. New registers
// nothing globally (see RouteSDKErrors); Shutdown releases what it starts.
func New(ctx context.Context, cfg config.Telemetry, otlp config.OTLP, getenv func(string) string, version, hostName string, logger *slog.Logger) (*Self, error) {
	res := resource.NewSchemaless(
		attribute.String("service.name", "berth"),
		attribute.String("service.version", version),
		attribute.String("host.name", hostName),
	)
	reg := prometheus.NewRegistry()
	prom, err := promexporter.New(promexporter.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(prom)}
	s := &Self{registry: reg}
	var tp trace.TracerProvider = tracenoop.NewTracerProvider()
	if otlpconf.Enabled(otlp, getenv) {
		protocol, err := otlpconf.ResolveProtocol(otlp, getenv)
		if err != nil {
			return nil, err
		}
		mexp, texp, err := newExporters(ctx, protocol, otlp, getenv)
		if err != nil {
			return nil, err
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp, sdkmetric.WithInterval(cfg.MetricsInterval))))
		s.tracerProvider = sdktrace.NewTracerProvider(
			sdktrace.WithResource(res),
			sdktrace.WithBatcher(texp),
			sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.TraceSampling))),
		)
		tp = s.tracerProvider
	}
	s.meterProvider = sdkmetric.NewMeterProvider(mopts...)
	s.settings = Settings{Logger: logger, TracerProvider: tp, MeterProvider: s.meterProvider, Version: version}
	// The instrumentation reads runtime/metrics (no stop-the-world) at most
	// once per interval, 15 s by default: go.goroutine.count on /metrics
	// would lag that much behind /status.
	if err := runtime.Start(runtime.WithMeterProvider(s.meterProvider), runtime.WithMinimumReadMemStatsInterval(time.Second)); err != nil {
		return nil, errors.Join(fmt.Errorf("runtime metrics: %w", err), s.Shutdown(ctx))
	}
	if err := registerProcessInstruments(s.settings.Meter()); err != nil {
		return nil, errors.Join(err, s.Shutdown(ctx))
	}
	return s, nil
}

// newExporters builds the exporters of berth's own metrics and traces, with
// the same endpoint, TLS, headers, compression and timeout as the log
// exporter (otlpconf.EndpointOptions, otlpconf.TransportOptions), but for one
// case: their gRPC packages have no option for "no compression"
// (WithCompressor takes only gzip), so there otlp.compression: none leaves
// the choice to OTEL_EXPORTER_OTLP_*COMPRESSION, if set. They keep the SDK's
// own retry: a lost metrics or trace export is not worth holding memory for.
func newExporters(ctx context.Context, protocol string, c config.OTLP, getenv func(string) string) (sdkmetric.Exporter, sdktrace.SpanExporter, error) {
	if protocol == otlpconf.ProtocolGRPC {
		me, err := otlpmetricgrpc.New(ctx, append(
			otlpconf.EndpointOptions(c, "", otlpmetricgrpc.WithEndpointURL, otlpmetricgrpc.WithEndpoint, otlpmetricgrpc.WithInsecure, otlpmetricgrpc.WithHeaders),
			otlpconf.TransportOptions(c, getenv, "METRICS", func() otlpmetricgrpc.Option { return otlpmetricgrpc.WithCompressor("gzip") }, nil, otlpmetricgrpc.WithTimeout)...)...)
		if err != nil {
			return nil, nil, fmt.Errorf("OTLP metric exporter: %w", err)
		}
		te, err := otlptracegrpc.New(ctx, append(
			otlpconf.EndpointOptions(c, "", otlptracegrpc.WithEndpointURL, otlptracegrpc.WithEndpoint, otlptracegrpc.WithInsecure, otlptracegrpc.WithHeaders),
			otlpconf.TransportOptions(c, getenv, "TRACES", func() otlptracegrpc.Option { return otlptracegrpc.WithCompressor("gzip") }, nil, otlptracegrpc.WithTimeout)...)...)
		if err != nil {
			return nil, nil, errors.Join(fmt.Errorf("OTLP trace exporter: %w", err), me.Shutdown(ctx))
		}
		return me, te, nil
	}
	me, err := otlpmetrichttp.New(ctx, append(
		otlpconf.EndpointOptions(c, "/v1/metrics", otlpmetrichttp.WithEndpointURL, otlpmetrichttp.WithEndpoint, otlpmetrichttp.WithInsecure, otlpmetrichttp.WithHeaders),
		otlpconf.TransportOptions(c, getenv, "METRICS",
			func() otlpmetrichttp.Option { return otlpmetrichttp.WithCompression(otlpmetrichttp.GzipCompression) },
			func() otlpmetrichttp.Option { return otlpmetrichttp.WithCompression(otlpmetrichttp.NoCompression) },
			otlpmetrichttp.WithTimeout)...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("OTLP metric exporter: %w", err)
	}
	te, err := otlptracehttp.New(ctx, append(
		otlpconf.EndpointOptions(c, "/v1/traces", otlptracehttp.WithEndpointURL, otlptracehttp.WithEndpoint, otlptracehttp.WithInsecure, otlptracehttp.WithHeaders),
		otlpconf.TransportOptions(c, getenv, "TRACES",
			func() otlptracehttp.Option { return otlptracehttp.WithCompression(otlptracehttp.GzipCompression) },
			func() otlptracehttp.Option { return otlptracehttp.WithCompression(otlptracehttp.NoCompression) },
			otlptracehttp.WithTimeout)...)...)
	if err != nil {
		return nil, nil, errors.Join(fmt.Errorf("OTLP trace exporter: %w", err), me.Shutdown(ctx))
	}
	return me, te, nil
}

// Settings returns what every component receives: berth's logger, tracer
// provider (a no-op one when no OTLP endpoint is set), meter provider and
// version.
func (s *Self) Settings() Settings { return s.settings }

// MetricsHandler serves /metrics in the Prometheus text format.
func (s *Self) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{})
}

// Shutdown flushes and stops the providers: the last spans and metrics are
// exported if an OTLP endpoint is set.
func (s *Self) Shutdown(ctx context.Context) error {
	var errs []error
	if s.tracerProvider != nil {
		if err := s.tracerProvider.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("tracer provider: %w", err))
		}
	}
	if err := s.meterProvider.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("meter provider: %w", err))
	}
	return errors.Join(errs...)
}
