package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
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
// OTLP settings of the records. Its metrics are always served by
// MetricsHandler. Over OTLP, cfg.TelemetryOTLP decides: "false" sends
// nothing; "auto" sends each signal (metrics, traces) that has somewhere to
// go (otlpconf.SignalEndpoint: its own OTEL_EXPORTER_OTLP_METRICS_/
// TRACES_ENDPOINT through getenv, else otlp.endpoint or
// OTEL_EXPORTER_OTLP_ENDPOINT); "true" is auto, but a signal with nowhere to
// go is an error. version and hostName describe berth in the resource and
// the instrumentation scope; logger becomes Settings().Logger. New registers
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
	if cfg.TelemetryOTLP != "false" {
		mexp, texp, err := newExporters(ctx, cfg.TelemetryOTLP == "true", otlp, getenv)
		if err != nil {
			return nil, err
		}
		if mexp != nil {
			mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp, sdkmetric.WithInterval(cfg.MetricsInterval))))
		}
		if texp != nil {
			s.tracerProvider = sdktrace.NewTracerProvider(
				sdktrace.WithResource(res),
				sdktrace.WithBatcher(texp),
				sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.TraceSampling))),
			)
			tp = s.tracerProvider
		}
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

// newExporters builds the OTLP exporters of berth's own metrics and traces,
// each nil when its signal has nowhere to go (an error instead when
// required). Each goes to otlpconf.SignalEndpoint with
// otlpconf.SignalProtocol. Sent to the records' backend, they take the same
// endpoint, TLS, headers, compression and timeout as the log exporter
// (otlpconf.EndpointOptions, otlpconf.TransportOptions); sent to their own
// OTEL_EXPORTER_OTLP_<signal>_ENDPOINT, they take that URL as is and leave
// headers and TLS to the OTEL_EXPORTER_OTLP_* variables. One exception:
// their gRPC packages have no option for "no compression" (WithCompressor
// takes only gzip), so there otlp.compression: none leaves the choice to
// OTEL_EXPORTER_OTLP_*COMPRESSION, if set. They keep the SDK's own retry: a
// lost metrics or trace export is not worth holding memory for.
func newExporters(ctx context.Context, required bool, c config.OTLP, getenv func(string) string) (sdkmetric.Exporter, sdktrace.SpanExporter, error) {
	// target returns the otlp settings a signal's exporter takes, and its
	// signal path for OTLP/HTTP ("" when its endpoint is its own URL).
	target := func(signal, path string) (config.OTLP, string, string, error) {
		endpoint, own := otlpconf.SignalEndpoint(c, getenv, signal)
		if endpoint == "" {
			if required {
				return c, "", "", fmt.Errorf("telemetry_otlp is true, but berth's own %s have no OTLP endpoint; set otlp.endpoint, OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_%s_ENDPOINT, or set telemetry_otlp to auto or false", strings.ToLower(signal), signal)
			}
			return c, "", "", nil
		}
		protocol, err := otlpconf.SignalProtocol(c, getenv, signal)
		if err != nil {
			return c, "", "", err
		}
		if own {
			return config.OTLP{Endpoint: endpoint, Compression: c.Compression, Timeout: c.Timeout}, protocol, "", nil
		}
		return c, protocol, path, nil
	}
	var me sdkmetric.Exporter
	mc, mprotocol, mpath, err := target("METRICS", "/v1/metrics")
	if err != nil {
		return nil, nil, err
	}
	switch mprotocol {
	case otlpconf.ProtocolGRPC:
		me, err = otlpmetricgrpc.New(ctx, append(
			otlpconf.EndpointOptions(mc, "", otlpmetricgrpc.WithEndpointURL, otlpmetricgrpc.WithEndpoint, otlpmetricgrpc.WithInsecure, otlpmetricgrpc.WithHeaders),
			otlpconf.TransportOptions(mc, getenv, "METRICS", func() otlpmetricgrpc.Option { return otlpmetricgrpc.WithCompressor("gzip") }, nil, otlpmetricgrpc.WithTimeout)...)...)
	case otlpconf.ProtocolHTTP:
		me, err = otlpmetrichttp.New(ctx, append(
			otlpconf.EndpointOptions(mc, mpath, otlpmetrichttp.WithEndpointURL, otlpmetrichttp.WithEndpoint, otlpmetrichttp.WithInsecure, otlpmetrichttp.WithHeaders),
			otlpconf.TransportOptions(mc, getenv, "METRICS",
				func() otlpmetrichttp.Option { return otlpmetrichttp.WithCompression(otlpmetrichttp.GzipCompression) },
				func() otlpmetrichttp.Option { return otlpmetrichttp.WithCompression(otlpmetrichttp.NoCompression) },
				otlpmetrichttp.WithTimeout)...)...)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("OTLP metric exporter: %w", err)
	}
	var te sdktrace.SpanExporter
	tc, tprotocol, tpath, err := target("TRACES", "/v1/traces")
	if err == nil {
		switch tprotocol {
		case otlpconf.ProtocolGRPC:
			te, err = otlptracegrpc.New(ctx, append(
				otlpconf.EndpointOptions(tc, "", otlptracegrpc.WithEndpointURL, otlptracegrpc.WithEndpoint, otlptracegrpc.WithInsecure, otlptracegrpc.WithHeaders),
				otlpconf.TransportOptions(tc, getenv, "TRACES", func() otlptracegrpc.Option { return otlptracegrpc.WithCompressor("gzip") }, nil, otlptracegrpc.WithTimeout)...)...)
		case otlpconf.ProtocolHTTP:
			te, err = otlptracehttp.New(ctx, append(
				otlpconf.EndpointOptions(tc, tpath, otlptracehttp.WithEndpointURL, otlptracehttp.WithEndpoint, otlptracehttp.WithInsecure, otlptracehttp.WithHeaders),
				otlpconf.TransportOptions(tc, getenv, "TRACES",
					func() otlptracehttp.Option { return otlptracehttp.WithCompression(otlptracehttp.GzipCompression) },
					func() otlptracehttp.Option { return otlptracehttp.WithCompression(otlptracehttp.NoCompression) },
					otlptracehttp.WithTimeout)...)...)
		}
		if err != nil {
			err = fmt.Errorf("OTLP trace exporter: %w", err)
		}
	}
	if err != nil {
		if me != nil {
			err = errors.Join(err, me.Shutdown(ctx))
		}
		return nil, nil, err
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
