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
	if strings.Contains(c.Endpoint, "://") {
		if _, err := url.Parse(c.Endpoint); err != nil {
			return nil, fmt.Errorf("otlp.endpoint %q: %w", c.Endpoint, err)
		}
	}
	switch protocol {
	case ProtocolGRPC:
		opts := []otlploggrpc.Option{otlploggrpc.WithRetry(otlploggrpc.RetryConfig{
			Enabled: true, InitialInterval: exporterRetry.initial, MaxInterval: exporterRetry.max, MaxElapsedTime: exporterRetry.elapsed,
		})}
		opts = append(opts, endpointOptions(c, "", otlploggrpc.WithEndpointURL, otlploggrpc.WithEndpoint, otlploggrpc.WithInsecure, otlploggrpc.WithHeaders)...)
		opts = append(opts, transportOptions(c, "LOGS",
			func() otlploggrpc.Option { return otlploggrpc.WithCompressor("gzip") },
			func() otlploggrpc.Option { return otlploggrpc.WithCompressor("none") },
			otlploggrpc.WithTimeout)...)
		return otlploggrpc.New(ctx, opts...)
	default:
		opts := []otlploghttp.Option{otlploghttp.WithRetry(otlploghttp.RetryConfig{
			Enabled: true, InitialInterval: exporterRetry.initial, MaxInterval: exporterRetry.max, MaxElapsedTime: exporterRetry.elapsed,
		})}
		opts = append(opts, endpointOptions(c, "/v1/logs", otlploghttp.WithEndpointURL, otlploghttp.WithEndpoint, otlploghttp.WithInsecure, otlploghttp.WithHeaders)...)
		opts = append(opts, transportOptions(c, "LOGS",
			func() otlploghttp.Option { return otlploghttp.WithCompression(otlploghttp.GzipCompression) },
			func() otlploghttp.Option { return otlploghttp.WithCompression(otlploghttp.NoCompression) },
			otlploghttp.WithTimeout)...)
		return otlploghttp.New(ctx, opts...)
	}
}

// transportOptions returns the compression and timeout options of an
// exporter of one signal (LOGS, METRICS, TRACES) from c. Compression is
// c.Compression; when that is empty, gzip unless
// OTEL_EXPORTER_OTLP_COMPRESSION or OTEL_EXPORTER_OTLP_<signal>_COMPRESSION
// chooses. gzip and none are the exporter package's options for them (none
// may be nil when no compression is the package's default); a zero
// c.Timeout leaves the package's default (or OTEL_EXPORTER_OTLP_TIMEOUT).
func transportOptions[O any](c OTLPConfig, signal string, gzip, none func() O, withTimeout func(time.Duration) O) []O {
	compression := c.Compression
	if compression == "" && os.Getenv("OTEL_EXPORTER_OTLP_COMPRESSION") == "" && os.Getenv("OTEL_EXPORTER_OTLP_"+signal+"_COMPRESSION") == "" {
		compression = "gzip"
	}
	var opts []O
	switch {
	case compression == "gzip":
		opts = append(opts, gzip())
	case compression == "none" && none != nil:
		opts = append(opts, none())
	}
	if c.Timeout > 0 {
		opts = append(opts, withTimeout(c.Timeout))
	}
	return opts
}

// endpointOptions returns the options that every exporter berth builds (logs,
// and its own metrics and traces, over gRPC or HTTP) takes from c: the
// endpoint, plain-text transport and headers. Each exporter package has its
// own Option type, so the caller passes that package's WithEndpointURL,
// WithEndpoint, WithInsecure and WithHeaders. An endpoint with a scheme is a
// URL: for OTLP/HTTP, signalPath ("/v1/logs") is appended to its path (see
// SignalURL); for gRPC, signalPath is "" and the URL is passed as is. Empty
// fields add no option, leaving them to the OTEL_EXPORTER_OTLP_* variables.
func endpointOptions[O any](c OTLPConfig, signalPath string,
	withURL, withHostPort func(string) O, withInsecure func() O, withHeaders func(map[string]string) O) []O {
	var opts []O
	switch {
	case strings.Contains(c.Endpoint, "://"):
		u := c.Endpoint
		if signalPath != "" {
			u = SignalURL(u, signalPath)
		}
		opts = append(opts, withURL(u))
	case c.Endpoint != "":
		opts = append(opts, withHostPort(c.Endpoint))
	}
	if c.Insecure {
		opts = append(opts, withInsecure())
	}
	if len(c.Headers) > 0 {
		opts = append(opts, withHeaders(c.Headers))
	}
	return opts
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
