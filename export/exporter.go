package export

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/internal/otlpconf"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	sdklog "go.opentelemetry.io/otel/sdk/log"
)

// The exporters' own retry: short, so that throttling hints (Retry-After,
// RetryInfo) are honoured within a request; berth's sink retries beyond it
// for as long as it runs.
const (
	exporterRetryInitial = time.Second
	exporterRetryMax     = 5 * time.Second
	exporterRetryElapsed = 15 * time.Second
)

// NewOTLPExporter builds the log exporter. Compression defaults to gzip
// unless the config or OTEL_EXPORTER_OTLP_(LOGS_)COMPRESSION says otherwise.
func NewOTLPExporter(ctx context.Context, c config.OTLP, getenv func(string) string) (sdklog.Exporter, error) {
	protocol, err := otlpconf.ResolveProtocol(c, getenv)
	if err != nil {
		return nil, fmt.Errorf("otlp log exporter: %w", err)
	}
	if strings.Contains(c.Endpoint, "://") {
		if _, err := url.Parse(c.Endpoint); err != nil {
			return nil, fmt.Errorf("otlp.endpoint %q: %w", c.Endpoint, err)
		}
	}
	switch protocol {
	case otlpconf.ProtocolGRPC:
		opts := []otlploggrpc.Option{otlploggrpc.WithRetry(otlploggrpc.RetryConfig{
			Enabled: true, InitialInterval: exporterRetryInitial, MaxInterval: exporterRetryMax, MaxElapsedTime: exporterRetryElapsed,
		})}
		opts = append(opts, otlpconf.EndpointOptions(c, "", otlploggrpc.WithEndpointURL, otlploggrpc.WithEndpoint, otlploggrpc.WithInsecure, otlploggrpc.WithHeaders)...)
		opts = append(opts, otlpconf.TransportOptions(c, getenv, "LOGS",
			func() otlploggrpc.Option { return otlploggrpc.WithCompressor("gzip") },
			func() otlploggrpc.Option { return otlploggrpc.WithCompressor("none") },
			otlploggrpc.WithTimeout)...)
		exp, err := otlploggrpc.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("otlp log exporter (grpc): %w", err)
		}
		return exp, nil
	default:
		opts := []otlploghttp.Option{otlploghttp.WithRetry(otlploghttp.RetryConfig{
			Enabled: true, InitialInterval: exporterRetryInitial, MaxInterval: exporterRetryMax, MaxElapsedTime: exporterRetryElapsed,
		})}
		opts = append(opts, otlpconf.EndpointOptions(c, "/v1/logs", otlploghttp.WithEndpointURL, otlploghttp.WithEndpoint, otlploghttp.WithInsecure, otlploghttp.WithHeaders)...)
		opts = append(opts, otlpconf.TransportOptions(c, getenv, "LOGS",
			func() otlploghttp.Option { return otlploghttp.WithCompression(otlploghttp.GzipCompression) },
			func() otlploghttp.Option { return otlploghttp.WithCompression(otlploghttp.NoCompression) },
			otlploghttp.WithTimeout)...)
		exp, err := otlploghttp.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("otlp log exporter (http/protobuf): %w", err)
		}
		return exp, nil
	}
}
