package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
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
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/export"
	"github.com/berthlog/berth/internal/otlpconf"
)

// SelfConfig configures berth's own telemetry.
type SelfConfig struct {
	// OTLP, when Enabled, sends berth's traces and metrics to the same
	// endpoint as the records.
	OTLP    config.OTLP
	Enabled bool
	// TraceSampling is the fraction of root spans kept (0 to 1).
	TraceSampling float64
	// MetricInterval is how often metrics are pushed over OTLP.
	MetricInterval time.Duration
	Version        string
	HostName       string
}

// Self is berth's own telemetry: a meter provider read by Prometheus (and
// pushed over OTLP when an endpoint is set), a tracer provider, and the
// instruments the collector's parts report to.
type Self struct {
	meterProvider  *sdkmetric.MeterProvider
	tracerProvider *sdktrace.TracerProvider // nil: tracing off
	tracer         trace.Tracer
	registry       *prometheus.Registry
	Metrics        *Metrics
}

// NewSelf sets up the providers. It registers nothing globally.
func NewSelf(ctx context.Context, cfg SelfConfig) (*Self, error) {
	res := resource.NewSchemaless(
		attribute.String("service.name", "berth"),
		attribute.String("service.version", cfg.Version),
		attribute.String("host.name", cfg.HostName),
	)
	reg := prometheus.NewRegistry()
	prom, err := promexporter.New(promexporter.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(prom)}
	s := &Self{registry: reg, tracer: tracenoop.NewTracerProvider().Tracer("berth")}
	if cfg.Enabled {
		protocol, err := otlpconf.ResolveProtocol(cfg.OTLP, os.Getenv)
		if err != nil {
			return nil, err
		}
		mexp, texp, err := newSelfExporters(ctx, protocol, cfg.OTLP)
		if err != nil {
			return nil, err
		}
		interval := cfg.MetricInterval
		if interval <= 0 {
			interval = 30 * time.Second
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp, sdkmetric.WithInterval(interval))))
		s.tracerProvider = sdktrace.NewTracerProvider(
			sdktrace.WithResource(res),
			sdktrace.WithBatcher(texp),
			sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.TraceSampling))),
		)
		s.tracer = s.tracerProvider.Tracer("github.com/berthlog/berth", trace.WithInstrumentationVersion(cfg.Version))
	}
	s.meterProvider = sdkmetric.NewMeterProvider(mopts...)
	// The instrumentation reads runtime/metrics (no stop-the-world) at most
	// once per interval, 15 s by default: go.goroutine.count on /metrics
	// would lag that much behind /status.
	if err := runtime.Start(runtime.WithMeterProvider(s.meterProvider), runtime.WithMinimumReadMemStatsInterval(time.Second)); err != nil {
		return nil, fmt.Errorf("runtime metrics: %w", err)
	}
	m, err := newMetrics(s.meterProvider.Meter("github.com/berthlog/berth"))
	if err != nil {
		return nil, err
	}
	s.Metrics = m
	return s, nil
}

// newSelfExporters builds the exporters of berth's own metrics and traces,
// with the same endpoint, TLS, headers, compression and timeout as the log
// exporter (endpointOptions, transportOptions), but for one case: their
// gRPC packages have no option for "no compression" (WithCompressor takes
// only gzip), so there otlp.compression: none leaves the choice to
// OTEL_EXPORTER_OTLP_*COMPRESSION, if set. They keep the SDK's own
// retry: a lost metrics or trace export is not worth holding memory for.
func newSelfExporters(ctx context.Context, protocol string, c config.OTLP) (sdkmetric.Exporter, sdktrace.SpanExporter, error) {
	if protocol == otlpconf.ProtocolGRPC {
		me, err := otlpmetricgrpc.New(ctx, append(
			otlpconf.EndpointOptions(c, "", otlpmetricgrpc.WithEndpointURL, otlpmetricgrpc.WithEndpoint, otlpmetricgrpc.WithInsecure, otlpmetricgrpc.WithHeaders),
			otlpconf.TransportOptions(c, os.Getenv, "METRICS", func() otlpmetricgrpc.Option { return otlpmetricgrpc.WithCompressor("gzip") }, nil, otlpmetricgrpc.WithTimeout)...)...)
		if err != nil {
			return nil, nil, err
		}
		te, err := otlptracegrpc.New(ctx, append(
			otlpconf.EndpointOptions(c, "", otlptracegrpc.WithEndpointURL, otlptracegrpc.WithEndpoint, otlptracegrpc.WithInsecure, otlptracegrpc.WithHeaders),
			otlpconf.TransportOptions(c, os.Getenv, "TRACES", func() otlptracegrpc.Option { return otlptracegrpc.WithCompressor("gzip") }, nil, otlptracegrpc.WithTimeout)...)...)
		return me, te, err
	}
	me, err := otlpmetrichttp.New(ctx, append(
		otlpconf.EndpointOptions(c, "/v1/metrics", otlpmetrichttp.WithEndpointURL, otlpmetrichttp.WithEndpoint, otlpmetrichttp.WithInsecure, otlpmetrichttp.WithHeaders),
		otlpconf.TransportOptions(c, os.Getenv, "METRICS",
			func() otlpmetrichttp.Option { return otlpmetrichttp.WithCompression(otlpmetrichttp.GzipCompression) },
			func() otlpmetrichttp.Option { return otlpmetrichttp.WithCompression(otlpmetrichttp.NoCompression) },
			otlpmetrichttp.WithTimeout)...)...)
	if err != nil {
		return nil, nil, err
	}
	te, err := otlptracehttp.New(ctx, append(
		otlpconf.EndpointOptions(c, "/v1/traces", otlptracehttp.WithEndpointURL, otlptracehttp.WithEndpoint, otlptracehttp.WithInsecure, otlptracehttp.WithHeaders),
		otlpconf.TransportOptions(c, os.Getenv, "TRACES",
			func() otlptracehttp.Option { return otlptracehttp.WithCompression(otlptracehttp.GzipCompression) },
			func() otlptracehttp.Option { return otlptracehttp.WithCompression(otlptracehttp.NoCompression) },
			otlptracehttp.WithTimeout)...)...)
	return me, te, err
}

// Tracer returns berth's tracer (a no-op one when tracing is off).
func (s *Self) Tracer() trace.Tracer { return s.tracer }

// Settings returns the settings a component builds its telemetry from: log,
// and berth's tracer and meter providers (a no-op tracer provider when
// tracing is off).
func (s *Self) Settings(log *slog.Logger) Settings {
	set := Settings{Logger: log, TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: s.meterProvider}
	if s.tracerProvider != nil {
		set.TracerProvider = s.tracerProvider
	}
	return set
}

// MetricsHandler serves /metrics in the Prometheus text format.
func (s *Self) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{})
}

// Shutdown flushes and stops the providers.
func (s *Self) Shutdown(ctx context.Context) error {
	var errs []error
	if s.tracerProvider != nil {
		errs = append(errs, s.tracerProvider.Shutdown(ctx))
	}
	errs = append(errs, s.meterProvider.Shutdown(ctx))
	return errors.Join(errs...)
}

// Metrics holds berth's instruments. Its methods are safe for concurrent use
// and cheap on the per-batch path: attribute sets are built once.
type Metrics struct {
	eventsReconnects metric.Int64Counter
	meter            metric.Meter
}

func newMetrics(meter metric.Meter) (*Metrics, error) {
	m := &Metrics{meter: meter}
	var err error
	m.eventsReconnects, err = meter.Int64Counter("berth.events.reconnects", metric.WithUnit("{reconnect}"),
		metric.WithDescription("Times the Docker events stream was (re)opened."))
	if err != nil {
		return nil, fmt.Errorf("instruments: %w", err)
	}
	return m, nil
}

// EventsConnected counts a (re)opened events stream. Implements
// events.Observer.
func (m *Metrics) EventsConnected() {
	m.eventsReconnects.Add(context.Background(), 1)
}

// Gauges is what the observable instruments read when metrics are
// collected.
type Gauges struct {
	// Containers returns the number of containers by state and the open
	// log streams.
	Containers func(ctx context.Context) (byState map[string]int64, streams int64, err error)
	// Sink is the OTLP sink whose counters and lag are reported; nil when
	// records go to stdout only.
	Sink *export.OTLPSink
}

// Observe registers the observable instruments: containers by state, open
// streams, exported and rejected records, export failures, lag, open file
// descriptors and resident memory.
func (m *Metrics) Observe(g Gauges) error {
	meter := m.meter
	containers, err1 := meter.Int64ObservableGauge("berth.containers", metric.WithUnit("{container}"),
		metric.WithDescription("Containers berth knows, by state."))
	streams, err2 := meter.Int64ObservableGauge("berth.streams.open", metric.WithUnit("{stream}"),
		metric.WithDescription("Log bursts reading right now."))
	exported, err3 := meter.Int64ObservableCounter("berth.records.exported", metric.WithUnit("{record}"),
		metric.WithDescription("Log records the backend acknowledged."))
	rejected, err4 := meter.Int64ObservableCounter("berth.records.rejected", metric.WithUnit("{record}"),
		metric.WithDescription("Log records the backend rejected as invalid (not retried)."))
	failures, err5 := meter.Int64ObservableCounter("berth.export.failures", metric.WithUnit("{failure}"),
		metric.WithDescription("Failed export attempts (retried)."))
	lag, err6 := meter.Float64ObservableGauge("berth.lag", metric.WithUnit("s"),
		metric.WithDescription("Now minus the timestamp of the newest record the backend acknowledged."))
	inflight, err7 := meter.Int64ObservableGauge("berth.inflight.bytes", metric.WithUnit("By"),
		metric.WithDescription("Bytes of records read but not yet acknowledged."))
	fds, err8 := meter.Int64ObservableGauge("process.unix.file_descriptor.count", metric.WithUnit("{file_descriptor}"),
		metric.WithDescription("Open file descriptors of the berth process."))
	rss, err9 := meter.Int64ObservableGauge("process.memory.usage", metric.WithUnit("By"),
		metric.WithDescription("Resident memory of the berth process."))
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7, err8, err9); err != nil {
		return fmt.Errorf("instruments: %w", err)
	}
	_, err := meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		if g.Containers != nil {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			byState, open, err := g.Containers(ctx)
			cancel()
			if err == nil {
				for state, n := range byState {
					o.ObserveInt64(containers, n, metric.WithAttributes(attribute.String("state", state)))
				}
				o.ObserveInt64(streams, open)
			}
		}
		if s := g.Sink; s != nil {
			st := s.Stats()
			o.ObserveInt64(exported, st.Exported.Load())
			o.ObserveInt64(rejected, st.Rejected.Load())
			o.ObserveInt64(failures, st.Failures.Load())
			o.ObserveInt64(inflight, st.InFlightBytes.Load())
			if l, ok := s.Lag(); ok {
				o.ObserveFloat64(lag, l.Seconds())
			}
		}
		if n, err := OpenFDs(); err == nil {
			o.ObserveInt64(fds, int64(n))
		}
		if n, err := RSS(); err == nil {
			o.ObserveInt64(rss, n)
		}
		return nil
	}, containers, streams, exported, rejected, failures, lag, inflight, fds, rss)
	return err
}

// OpenFDs counts the process's open file descriptors (Linux).
func OpenFDs() (int, error) {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	return len(entries) - 1, nil // minus the directory being read
}

// RSS returns the process's resident memory in bytes (Linux).
func RSS() (int64, error) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, fmt.Errorf("statm: %q", b)
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, err
	}
	return pages * int64(os.Getpagesize()), nil
}
