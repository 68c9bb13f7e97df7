package telemetry

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/berthlog/berth/config"
)

// otlpStandIn is an OTLP/HTTP backend that accepts everything and records
// each request's path and headers.
type otlpStandIn struct {
	*httptest.Server
	mu      sync.Mutex
	paths   []string
	headers []http.Header
}

func startStandIn(t *testing.T) *otlpStandIn {
	t.Helper()
	s := &otlpStandIn{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.paths = append(s.paths, r.URL.Path)
		s.headers = append(s.headers, r.Header.Clone())
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(s.Close)
	return s
}

// got returns the distinct paths requested so far, sorted.
func (s *otlpStandIn) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := slices.Clone(s.paths)
	slices.Sort(p)
	return slices.Compact(p)
}

func envOf(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

// runSelf sets up berth's telemetry, records a span and a metric, and shuts
// it down, which flushes both over OTLP if they are on.
func runSelf(t *testing.T, cfg config.Telemetry, otlp config.OTLP, getenv func(string) string) {
	t.Helper()
	s, err := New(context.Background(), cfg, otlp, getenv, "test", "h", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	_, span := s.Settings().Tracer().Start(context.Background(), "berth.test")
	span.End()
	c, err := s.Settings().Meter().Int64Counter("berth.test.things")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 1)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown (the last export): %v", err)
	}
}

func TestTelemetryOTLPSwitch(t *testing.T) {
	for _, tc := range []struct {
		mode string
		want []string
	}{
		{"auto", []string{"/v1/metrics", "/v1/traces"}},
		{"true", []string{"/v1/metrics", "/v1/traces"}},
		{"false", nil},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			backend := startStandIn(t)
			cfg := config.Default().Telemetry
			cfg.TelemetryOTLP = tc.mode
			runSelf(t, cfg, config.OTLP{Endpoint: backend.URL, Headers: map[string]string{"X-Scope-OrgID": "tenant-1"}}, noEnv)
			if got := backend.got(); !slices.Equal(got, tc.want) {
				t.Errorf("telemetry_otlp %s: the backend got %v, want %v", tc.mode, got, tc.want)
			}
			for _, h := range backend.headers {
				if h.Get("X-Scope-OrgID") != "tenant-1" {
					t.Errorf("a request to the records' backend lacks otlp.headers: %v", h)
				}
			}
		})
	}
}

// TestTelemetryOTLPSignalEndpoints: OTEL_EXPORTER_OTLP_METRICS_ENDPOINT and
// _TRACES_ENDPOINT send berth's own telemetry elsewhere, as is (no
// /v1/<signal> appended), without the records' headers.
func TestTelemetryOTLPSignalEndpoints(t *testing.T) {
	logs, own := startStandIn(t), startStandIn(t)
	getenv := envOf(map[string]string{
		"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": own.URL + "/m",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":  own.URL + "/t",
	})
	runSelf(t, config.Default().Telemetry, config.OTLP{Endpoint: logs.URL, Headers: map[string]string{"Authorization": "Bearer logs-only"}}, getenv)
	if got := logs.got(); len(got) != 0 {
		t.Errorf("the records' backend got berth's own telemetry: %v", got)
	}
	if got, want := own.got(), []string{"/m", "/t"}; !slices.Equal(got, want) {
		t.Errorf("the per-signal endpoints got %v, want %v", got, want)
	}
	for _, h := range own.headers {
		if h.Get("Authorization") != "" {
			t.Errorf("otlp.headers were sent to a per-signal endpoint: %v", h)
		}
	}
}

// TestTelemetryOTLPLogsEndpointOnly: OTEL_EXPORTER_OTLP_LOGS_ENDPOINT names a
// backend for logs only; berth's own telemetry has nowhere to go: off with
// auto, an error naming the fix with true.
func TestTelemetryOTLPLogsEndpointOnly(t *testing.T) {
	logs := startStandIn(t)
	getenv := envOf(map[string]string{"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": logs.URL + "/v1/logs"})
	runSelf(t, config.Default().Telemetry, config.OTLP{}, getenv)
	if got := logs.got(); len(got) != 0 {
		t.Errorf("the logs-only backend got berth's own telemetry: %v", got)
	}
	cfg := config.Default().Telemetry
	cfg.TelemetryOTLP = "true"
	_, err := New(context.Background(), cfg, config.OTLP{}, getenv, "test", "h", slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") {
		t.Errorf("telemetry_otlp: true with no endpoint: err = %v, want one naming OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", err)
	}
}
