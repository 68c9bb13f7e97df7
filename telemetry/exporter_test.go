package telemetry

import (
	"fmt"
	"os"
	"reflect"
	"testing"
	"time"
)

func TestEndpointOptions(t *testing.T) {
	// Fake option constructors that name the option they stand for.
	withURL := func(u string) string { return "url " + u }
	withHostPort := func(hp string) string { return "endpoint " + hp }
	withInsecure := func() string { return "insecure" }
	withHeaders := func(h map[string]string) string { return fmt.Sprint("headers ", h) }
	for _, tc := range []struct {
		name       string
		c          OTLPConfig
		signalPath string
		want       []string
	}{
		{"nothing set", OTLPConfig{}, "/v1/logs", nil},
		{"grpc URL as is", OTLPConfig{Endpoint: "http://collector:4317/"}, "", []string{"url http://collector:4317/"}},
		{"http URL with the signal path", OTLPConfig{Endpoint: "https://collector/otlp"}, "/v1/traces", []string{"url https://collector/otlp/v1/traces"}},
		{"host:port", OTLPConfig{Endpoint: "collector:4318"}, "/v1/metrics", []string{"endpoint collector:4318"}},
		{"insecure and headers, in that order after the endpoint",
			OTLPConfig{Endpoint: "collector:4317", Insecure: true, Headers: map[string]string{"k": "v"}}, "",
			[]string{"endpoint collector:4317", "insecure", "headers map[k:v]"}},
		{"empty headers add nothing", OTLPConfig{Headers: map[string]string{}}, "", nil},
	} {
		got := endpointOptions(tc.c, tc.signalPath, withURL, withHostPort, withInsecure, withHeaders)
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
		c      OTLPConfig
		env    map[string]string
		noneFn func() string
		want   []string
	}{
		{"default: gzip", OTLPConfig{}, nil, none, []string{"gzip"}},
		{"none, where the package has an option for it", OTLPConfig{Compression: "none"}, nil, none, []string{"none"}},
		{"none, where no compression is the package's default", OTLPConfig{Compression: "none"}, nil, nil, nil},
		{"the environment chooses for every signal", OTLPConfig{}, map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "none"}, none, nil},
		{"the environment chooses for this signal", OTLPConfig{}, map[string]string{"OTEL_EXPORTER_OTLP_METRICS_COMPRESSION": "none"}, none, nil},
		{"another signal's variable does not count", OTLPConfig{}, map[string]string{"OTEL_EXPORTER_OTLP_LOGS_COMPRESSION": "none"}, none, []string{"gzip"}},
		{"the config wins over the environment", OTLPConfig{Compression: "gzip", Timeout: 3 * time.Second},
			map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "none"}, none, []string{"gzip", "timeout 3s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION"} {
				t.Setenv(k, tc.env[k])
				if tc.env[k] == "" {
					os.Unsetenv(k)
				}
			}
			got := transportOptions(tc.c, "METRICS", gzip, tc.noneFn, withTimeout)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
