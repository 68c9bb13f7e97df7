package otlpconf

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/berthlog/berth/config"
)

func TestEndpointOptions(t *testing.T) {
	// Fake option constructors that name the option they stand for.
	withURL := func(u string) string { return "url " + u }
	withHostPort := func(hp string) string { return "endpoint " + hp }
	withInsecure := func() string { return "insecure" }
	withHeaders := func(h map[string]string) string { return fmt.Sprint("headers ", h) }
	for _, tc := range []struct {
		name       string
		c          config.OTLP
		signalPath string
		want       []string
	}{
		{"nothing set", config.OTLP{}, "/v1/logs", nil},
		{"grpc URL as is", config.OTLP{Endpoint: "http://collector:4317/"}, "", []string{"url http://collector:4317/"}},
		{"http URL with the signal path", config.OTLP{Endpoint: "https://collector/otlp"}, "/v1/traces", []string{"url https://collector/otlp/v1/traces"}},
		{"host:port", config.OTLP{Endpoint: "collector:4318"}, "/v1/metrics", []string{"endpoint collector:4318"}},
		{"insecure and headers, in that order after the endpoint",
			config.OTLP{Endpoint: "collector:4317", Insecure: true, Headers: map[string]string{"k": "v"}}, "",
			[]string{"endpoint collector:4317", "insecure", "headers map[k:v]"}},
		{"empty headers add nothing", config.OTLP{Headers: map[string]string{}}, "", nil},
	} {
		got := EndpointOptions(tc.c, tc.signalPath, withURL, withHostPort, withInsecure, withHeaders)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestTransportOptions(t *testing.T) {
	gzip := func() string { return "gzip" }
	none := func() string { return "none" }
	withTimeout := func(d time.Duration) string { return "timeout " + d.String() }
	for _, tc := range []struct {
		name   string
		c      config.OTLP
		env    map[string]string
		noneFn func() string
		want   []string
	}{
		{"default: gzip", config.OTLP{}, nil, none, []string{"gzip"}},
		{"none, where the package has an option for it", config.OTLP{Compression: "none"}, nil, none, []string{"none"}},
		{"none, where no compression is the package's default", config.OTLP{Compression: "none"}, nil, nil, nil},
		{"the environment chooses for every signal", config.OTLP{}, map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "none"}, none, nil},
		{"the environment chooses for this signal", config.OTLP{}, map[string]string{"OTEL_EXPORTER_OTLP_METRICS_COMPRESSION": "none"}, none, nil},
		{"another signal's variable does not count", config.OTLP{}, map[string]string{"OTEL_EXPORTER_OTLP_LOGS_COMPRESSION": "none"}, none, []string{"gzip"}},
		{"the config wins over the environment", config.OTLP{Compression: "gzip", Timeout: 3 * time.Second},
			map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "none"}, none, []string{"gzip", "timeout 3s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := TransportOptions(tc.c, func(k string) string { return tc.env[k] }, "METRICS", gzip, tc.noneFn, withTimeout)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestResolveProtocol(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tests := []struct {
		cfg  string
		env  map[string]string
		want string
		bad  bool
	}{
		{"", nil, ProtocolHTTP, false},
		{"grpc", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, ProtocolGRPC, false},
		{"", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, ProtocolGRPC, false},
		{"", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "http/protobuf"}, ProtocolHTTP, false},
		{"", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "", true},
	}
	for _, tt := range tests {
		got, err := ResolveProtocol(config.OTLP{Protocol: tt.cfg}, env(tt.env))
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("ResolveProtocol(%q, %v) = %q, %v", tt.cfg, tt.env, got, err)
		}
	}
	if Enabled(config.OTLP{}, env(nil)) || !Enabled(config.OTLP{}, env(map[string]string{"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://x"})) {
		t.Error("Enabled does not follow the endpoint settings")
	}
}

func TestSignalURL(t *testing.T) {
	for base, want := range map[string]string{
		"http://127.0.0.1:4318":    "http://127.0.0.1:4318/v1/logs",
		"http://127.0.0.1:4318/":   "http://127.0.0.1:4318/v1/logs",
		"https://gw.example/otlp":  "https://gw.example/otlp/v1/logs",
		"https://gw.example/otlp/": "https://gw.example/otlp/v1/logs",
	} {
		if got := signalURL(base, "/v1/logs"); got != want {
			t.Errorf("signalURL(%q) = %q, want %q", base, got, want)
		}
	}
}

// TestRedacted: credentials in an endpoint never survive; everything else
// does.
func TestRedacted(t *testing.T) {
	for in, want := range map[string]string{
		"":                                     "",
		"http://127.0.0.1:4318":                "http://127.0.0.1:4318",
		"collector:4317":                       "collector:4317",
		"https://alice:s3cret@gw.example/otlp": "https://REDACTED@gw.example/otlp",
		"http://token@gw.example":              "http://REDACTED@gw.example",
		"alice:s3cret@collector:4317":          "REDACTED@collector:4317",
		"https://a:b@c@gw.example:4318/":       "https://REDACTED@gw.example:4318/",
		"https://gw.example/tenants/@team":     "https://gw.example/tenants/@team",
		"https://gw.example?x=a@b":             "https://gw.example?x=a@b",
	} {
		if got := Redacted(in); got != want {
			t.Errorf("Redacted(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestImplicitTLS(t *testing.T) {
	for _, tc := range []struct {
		c    config.OTLP
		want bool
	}{
		{config.OTLP{}, false},
		{config.OTLP{Endpoint: "collector:4317"}, true},
		{config.OTLP{Endpoint: "collector:4317", Insecure: true}, false},
		{config.OTLP{Endpoint: "http://collector:4318"}, false},
		{config.OTLP{Endpoint: "https://collector:4317"}, false},
	} {
		if got := ImplicitTLS(tc.c); got != tc.want {
			t.Errorf("ImplicitTLS(%+v) = %v, want %v", tc.c, got, tc.want)
		}
	}
}
