// Package otlpconf turns berth's otlp settings and the standard
// OTEL_EXPORTER_OTLP_* environment variables into the options of the
// OpenTelemetry OTLP exporter packages. Both the record exporter (package
// export) and berth's own metrics and traces (package telemetry) use it, so
// that the endpoint, TLS, headers, compression and timeout mean the same for
// every signal.
package otlpconf

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/berthlog/berth/config"
)

// The protocols berth exports with.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// Enabled reports whether an OTLP endpoint is configured, in the config or
// the environment.
func Enabled(c config.OTLP, getenv func(string) string) bool {
	return c.Endpoint != "" || getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") != ""
}

// Endpoint returns the logs endpoint as configured: otlp.endpoint, else
// OTEL_EXPORTER_OTLP_LOGS_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT.
func Endpoint(c config.OTLP, getenv func(string) string) string {
	for _, v := range []string{c.Endpoint, getenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"), getenv("OTEL_EXPORTER_OTLP_ENDPOINT")} {
		if v != "" {
			return v
		}
	}
	return ""
}

// ImplicitTLS reports whether c's endpoint is a host:port without a scheme
// and without otlp.insecure: the exporters then connect with TLS, which an
// operator who wrote "collector:4317" for a plaintext Collector does not
// expect; berth says so at start.
func ImplicitTLS(c config.OTLP) bool {
	return c.Endpoint != "" && !strings.Contains(c.Endpoint, "://") && !c.Insecure
}

// Redacted is endpoint as it may be shown (logged): any credentials in it
// (user:password@, as an OTEL_EXPORTER_OTLP_ENDPOINT may hold; otlp.endpoint
// refuses them) are replaced by "REDACTED". The exporters never send them:
// they dial the URL's host and port.
func Redacted(endpoint string) string {
	prefix, rest := "", endpoint
	if i := strings.Index(endpoint, "://"); i >= 0 {
		prefix, rest = endpoint[:i+3], endpoint[i+3:]
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	at := strings.LastIndexByte(authority, '@')
	if at < 0 {
		return endpoint
	}
	return prefix + "REDACTED" + rest[at:]
}

// ResolveProtocol picks the protocol: the config, else
// OTEL_EXPORTER_OTLP_LOGS_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL, else
// http/protobuf (the specification's default).
func ResolveProtocol(c config.OTLP, getenv func(string) string) (string, error) {
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
	}
	return "", fmt.Errorf("OTLP protocol %q is not supported; use grpc or http/protobuf", p)
}

// TransportOptions returns the compression and timeout options of an
// exporter of one signal (LOGS, METRICS, TRACES) from c. Compression is
// c.Compression; when that is empty, gzip unless
// OTEL_EXPORTER_OTLP_COMPRESSION or OTEL_EXPORTER_OTLP_<signal>_COMPRESSION
// chooses. gzip and none are the exporter package's options for them (none
// may be nil when no compression is the package's default); a zero
// c.Timeout leaves the package's default (or OTEL_EXPORTER_OTLP_TIMEOUT).
func TransportOptions[O any](c config.OTLP, getenv func(string) string, signal string, gzip, none func() O, withTimeout func(time.Duration) O) []O {
	compression := c.Compression
	if compression == "" && getenv("OTEL_EXPORTER_OTLP_COMPRESSION") == "" && getenv("OTEL_EXPORTER_OTLP_"+signal+"_COMPRESSION") == "" {
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

// EndpointOptions returns the options that every exporter berth builds
// (logs, and its own metrics and traces, over gRPC or HTTP) takes from c: the
// endpoint, plain-text transport and headers. Each exporter package has its
// own Option type, so the caller passes that package's WithEndpointURL,
// WithEndpoint, WithInsecure and WithHeaders. An endpoint with a scheme is a
// URL: for OTLP/HTTP, signalPath ("/v1/logs") is appended to its path (see
// signalURL); for gRPC, signalPath is "" and the URL is passed as is. Empty
// fields add no option, leaving them to the OTEL_EXPORTER_OTLP_* variables.
func EndpointOptions[O any](c config.OTLP, signalPath string,
	withURL, withHostPort func(string) O, withInsecure func() O, withHeaders func(map[string]string) O) []O {
	var opts []O
	switch {
	case strings.Contains(c.Endpoint, "://"):
		u := c.Endpoint
		if signalPath != "" {
			u = signalURL(u, signalPath)
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
// OTEL_EXPORTER_OTLP_ENDPOINT give it, with a signal's path (see signalURL).
func SignalURL(base, signalPath string) string { return signalURL(base, signalPath) }

// signalURL joins a base endpoint URL, as otlp.endpoint and
// OTEL_EXPORTER_OTLP_ENDPOINT give it, with a signal's path: for OTLP/HTTP
// http://host:4318 sends logs to http://host:4318/v1/logs, and
// http://host/otlp to http://host/otlp/v1/logs.
func signalURL(base, signalPath string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + signalPath
	return u.String()
}

// SignalEndpoint returns where berth sends its own signal (METRICS or
// TRACES) over OTLP: OTEL_EXPORTER_OTLP_<signal>_ENDPOINT, a URL used as is
// (own is true: that exporter takes none of the otlp section's endpoint,
// insecure and headers, only the OTEL_EXPORTER_OTLP_* variables), else
// otlp.endpoint, else OTEL_EXPORTER_OTLP_ENDPOINT (own is false: the same
// backend as the records). OTEL_EXPORTER_OTLP_LOGS_ENDPOINT never counts: it
// names a backend for logs only. "" means the signal has nowhere to go.
func SignalEndpoint(c config.OTLP, getenv func(string) string, signal string) (endpoint string, own bool) {
	if v := getenv("OTEL_EXPORTER_OTLP_" + signal + "_ENDPOINT"); v != "" {
		return v, true
	}
	if c.Endpoint != "" {
		return c.Endpoint, false
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT"), false
}

// SignalProtocol picks the protocol of berth's own signal (METRICS or
// TRACES): OTEL_EXPORTER_OTLP_<signal>_PROTOCOL, else otlp.protocol, else
// OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf.
func SignalProtocol(c config.OTLP, getenv func(string) string, signal string) (string, error) {
	p := getenv("OTEL_EXPORTER_OTLP_" + signal + "_PROTOCOL")
	if p == "" {
		p = c.Protocol
	}
	if p == "" {
		p = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch p {
	case "":
		return ProtocolHTTP, nil
	case ProtocolGRPC, ProtocolHTTP:
		return p, nil
	}
	return "", fmt.Errorf("OTLP protocol %q of berth's own %s is not supported; use grpc or http/protobuf", p, strings.ToLower(signal))
}
