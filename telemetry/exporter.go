package telemetry

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	sdklog "go.opentelemetry.io/otel/sdk/log"
)

// OTLPConfig says where and how to export. Empty fields defer to the standard
// OTEL_EXPORTER_OTLP_* environment variables (and their LOGS_ variants),
// which the OpenTelemetry exporters read themselves.
type OTLPConfig struct {
	Endpoint    string // URL (http://host:4318, https://host:4317) or host:port
	Protocol    string // grpc or http/protobuf
	Insecure    bool
	Headers     map[string]string
	Compression string // gzip or none
	Timeout     time.Duration
}

// Protocols berth exports with.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// OTLPEnabled reports whether an OTLP endpoint is configured, in the config
// or the environment.
func OTLPEnabled(c OTLPConfig, getenv func(string) string) bool {
	return c.Endpoint != "" || getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") != ""
}

// ResolveProtocol picks the protocol: the config, else
// OTEL_EXPORTER_OTLP_LOGS_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL, else
// http/protobuf (the specification's default).
func ResolveProtocol(c OTLPConfig, getenv func(string) string) (string, error) {
	p := c.Protocol
	for _, k := range []string{"OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p == "" {
			p = getenv(k)
		}
	}
	switch p {
	case "":
		return ProtocolHTTP, nil
	case ProtocolGRPC, ProtocolHTTP:
		return p, nil
	case "http/json":
		return "", fmt.Errorf("OTLP protocol http/json is not supported; use grpc or http/protobuf")
	}
	return "", fmt.Errorf("OTLP protocol %q is not supported; use grpc or http/protobuf", p)
}

// exporterRetry is the exporters' own retry: short, so that throttling hints
// (Retry-After, RetryInfo) are honoured within a request; berth's sink retries
// beyond it for as long as it runs.
var exporterRetry = struct {
	initial, max, elapsed time.Duration
}{time.Second, 5 * time.Second, 15 * time.Second}

// NewOTLPExporter builds the log exporter. Compression defaults to gzip
// unless the config or OTEL_EXPORTER_OTLP_(LOGS_)COMPRESSION says otherwise.
func NewOTLPExporter(ctx context.Context, c OTLPConfig) (sdklog.Exporter, error) {
	protocol, err := ResolveProtocol(c, os.Getenv)
	if err != nil {
		return nil, err
	}
	compression := c.Compression
	if compression == "" && os.Getenv("OTEL_EXPORTER_OTLP_COMPRESSION") == "" && os.Getenv("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION") == "" {
		compression = "gzip"
	}
	hasScheme := strings.Contains(c.Endpoint, "://")
	if hasScheme {
		if _, err := url.Parse(c.Endpoint); err != nil {
			return nil, fmt.Errorf("otlp.endpoint %q: %w", c.Endpoint, err)
		}
	}
	switch protocol {
	case ProtocolGRPC:
		opts := []otlploggrpc.Option{otlploggrpc.WithRetry(otlploggrpc.RetryConfig{
			Enabled: true, InitialInterval: exporterRetry.initial, MaxInterval: exporterRetry.max, MaxElapsedTime: exporterRetry.elapsed,
		})}
		switch {
		case hasScheme:
			opts = append(opts, otlploggrpc.WithEndpointURL(c.Endpoint))
		case c.Endpoint != "":
			opts = append(opts, otlploggrpc.WithEndpoint(c.Endpoint))
		}
		if c.Insecure {
			opts = append(opts, otlploggrpc.WithInsecure())
		}
		if len(c.Headers) > 0 {
			opts = append(opts, otlploggrpc.WithHeaders(c.Headers))
		}
		if compression == "gzip" {
			opts = append(opts, otlploggrpc.WithCompressor("gzip"))
		}
		if c.Timeout > 0 {
			opts = append(opts, otlploggrpc.WithTimeout(c.Timeout))
		}
		return otlploggrpc.New(ctx, opts...)
	default:
		opts := []otlploghttp.Option{otlploghttp.WithRetry(otlploghttp.RetryConfig{
			Enabled: true, InitialInterval: exporterRetry.initial, MaxInterval: exporterRetry.max, MaxElapsedTime: exporterRetry.elapsed,
		})}
		switch {
		case hasScheme:
			opts = append(opts, otlploghttp.WithEndpointURL(SignalURL(c.Endpoint, "/v1/logs")))
		case c.Endpoint != "":
			opts = append(opts, otlploghttp.WithEndpoint(c.Endpoint))
		}
		if c.Insecure {
			opts = append(opts, otlploghttp.WithInsecure())
		}
		if len(c.Headers) > 0 {
			opts = append(opts, otlploghttp.WithHeaders(c.Headers))
		}
		switch compression {
		case "gzip":
			opts = append(opts, otlploghttp.WithCompression(otlploghttp.GzipCompression))
		case "none":
			opts = append(opts, otlploghttp.WithCompression(otlploghttp.NoCompression))
		}
		if c.Timeout > 0 {
			opts = append(opts, otlploghttp.WithTimeout(c.Timeout))
		}
		return otlploghttp.New(ctx, opts...)
	}
}

// SignalURL joins a base endpoint URL, as otlp.endpoint and
// OTEL_EXPORTER_OTLP_ENDPOINT give it, with a signal's path: for OTLP/HTTP
// http://host:4318 sends logs to http://host:4318/v1/logs, and
// http://host/otlp to http://host/otlp/v1/logs.
func SignalURL(base, signalPath string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + signalPath
	return u.String()
}
