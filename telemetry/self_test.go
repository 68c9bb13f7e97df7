package telemetry

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/berthlog/berth/config"
)

// noEnv is a getenv that finds no OTEL_EXPORTER_OTLP_* variable, whatever
// the machine running the tests has.
func noEnv(string) string { return "" }

func TestProcessInstruments(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	if err := registerProcessInstruments(mp.Meter("test")); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, mm := range sm.Metrics {
			got[mm.Name] = mm
		}
	}
	want := map[string][2]string{
		"process.unix.file_descriptor.count": {"{file_descriptor}", "Open file descriptors of the berth process."},
		"process.memory.usage":               {"By", "Resident memory of the berth process."},
	}
	for name, w := range want {
		mm, ok := got[name]
		if !ok {
			t.Errorf("instrument %s missing", name)
			continue
		}
		if mm.Unit != w[0] || mm.Description != w[1] {
			t.Errorf("%s: unit %q, description %q; want %q, %q", name, mm.Unit, mm.Description, w[0], w[1])
		}
		g, ok := mm.Data.(metricdata.Gauge[int64])
		if !ok || len(g.DataPoints) != 1 || g.DataPoints[0].Value <= 0 {
			t.Errorf("%s: data %+v, want one positive gauge point", name, mm.Data)
		}
	}
}

func TestProcess(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	before, rss, err := Process()
	if err != nil {
		t.Fatal(err)
	}
	if before <= 0 || rss <= 0 {
		t.Fatalf("Process() = %d fds, %d bytes; want both positive", before, rss)
	}
	f.Close()
	after, _, err := Process()
	if err != nil {
		t.Fatal(err)
	}
	if after != before-1 {
		t.Errorf("open fds %d after closing one of %d, want %d", after, before, before-1)
	}
}

func TestServesPrometheus(t *testing.T) {
	s, err := New(context.Background(), config.Default().Telemetry, config.OTLP{}, noEnv, "test", "h", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	counter, err := s.Settings().Meter().Int64Counter("berth.test.things")
	if err != nil {
		t.Fatal(err)
	}
	counter.Add(context.Background(), 5)
	srv := httptest.NewServer(s.MetricsHandler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`berth_test_things_total{otel_scope_name="github.com/berthlog/berth",otel_scope_schema_url="",otel_scope_version="test"} 5`,
		"go_goroutine_count",
		"# HELP process_unix_file_descriptor_count Open file descriptors of the berth process.",
		"# HELP process_memory_usage_bytes Resident memory of the berth process.",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}

func TestTracingOffWithoutEndpoint(t *testing.T) {
	s, err := New(context.Background(), config.Default().Telemetry, config.OTLP{}, noEnv, "test", "h", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	_, span := s.Settings().Tracer().Start(context.Background(), "x")
	defer span.End()
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Error("a span is recorded with no OTLP endpoint set")
	}
}
