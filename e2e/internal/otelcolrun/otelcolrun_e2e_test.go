//go:build e2e

package otelcolrun

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
)

// The first run builds the collector, which takes minutes on a cold cache.
func TestCollectorRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	begin := time.Now()
	bin, err := Build(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("collector %s: %.1f MB, Build took %v", bin, float64(fi.Size())/1e6, time.Since(begin).Round(time.Millisecond))

	begin = time.Now()
	col, err := Start(ctx, Options{Dir: t.TempDir(), Binary: bin})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("collector pid %d ready in %v: grpc %s, http %s", col.PID(), time.Since(begin).Round(time.Millisecond), col.GRPCAddr, col.HTTPAddr)
	stopped := false
	defer func() {
		if !stopped {
			_ = col.Stop(0)
		}
		if t.Failed() {
			t.Logf("collector log:\n%s", col.Log())
		}
	}()

	grpcExp, err := otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(col.GRPCAddr), otlploggrpc.WithInsecure(),
		otlploggrpc.WithCompressor("gzip"))
	if err != nil {
		t.Fatal(err)
	}
	httpExp, err := otlploghttp.New(ctx, otlploghttp.WithEndpoint(col.HTTPAddr), otlploghttp.WithInsecure(),
		otlploghttp.WithCompression(otlploghttp.GzipCompression))
	if err != nil {
		t.Fatal(err)
	}

	ts := time.Unix(1_700_000_000, 42)
	send(t, grpcExp, "grpc", ts, 3)
	send(t, httpExp, "http", ts, 3)

	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	recs, err := col.WaitRecords(wctx, 6)
	if err != nil {
		t.Fatal(err)
	}

	if err := col.Stop(0); err != nil {
		t.Errorf("Stop: %v", err)
	}
	stopped = true
	// After a clean shutdown the file is complete: the same records, no more.
	after, err := col.Records()
	if err != nil || len(after) != 6 {
		t.Errorf("after Stop: %d records, %v", len(after), err)
	}

	byBody := map[string]Record{}
	for _, r := range recs {
		if _, dup := byBody[r.Body]; dup {
			t.Errorf("duplicate record %q", r.Body)
		}
		byBody[r.Body] = r
	}
	for _, tr := range []string{"grpc", "http"} {
		for i := range 3 {
			body := fmt.Sprintf("%s line %d", tr, i)
			r, ok := byBody[body]
			if !ok {
				t.Errorf("missing %q in %d records", body, len(recs))
				continue
			}
			if r.BodyKind != "string" {
				t.Errorf("%q: body kind %q", body, r.BodyKind)
			}
			want := map[string]any{
				"service.name":         "web",
				"container.id":         "c0ffee" + tr,
				"container.name":       "web-1",
				"container.image.tags": []any{"1.2", "latest"},
				"host.pid":             int64(4242),
			}
			if !sameAttrs(r.Resource, want) {
				t.Errorf("%q: resource %#v, want %#v", body, r.Resource, want)
			}
			wantAttrs := map[string]any{"log.iostream": "stdout", "log.truncated": i == 0, "n": int64(i), "ratio": 0.5}
			if !sameAttrs(r.Attributes, wantAttrs) {
				t.Errorf("%q: attributes %#v, want %#v", body, r.Attributes, wantAttrs)
			}
			if r.TimeUnixNano != uint64(ts.Add(time.Duration(i)).UnixNano()) {
				t.Errorf("%q: time %d", body, r.TimeUnixNano)
			}
			if r.ObservedTimeUnixNano != uint64(ts.Add(time.Second).UnixNano()) {
				t.Errorf("%q: observed time %d", body, r.ObservedTimeUnixNano)
			}
			if r.Scope != "berth" {
				t.Errorf("%q: scope %q", body, r.Scope)
			}
		}
	}
}

func send(t *testing.T, exp sdklog.Exporter, tr string, ts time.Time, n int) {
	t.Helper()
	res := resource.NewSchemaless(
		attribute.String("service.name", "web"),
		attribute.String("container.id", "c0ffee"+tr),
		attribute.String("container.name", "web-1"),
		attribute.StringSlice("container.image.tags", []string{"1.2", "latest"}),
		attribute.Int("host.pid", 4242),
	)
	// A SimpleProcessor exports on Emit; Shutdown of the provider shuts the
	// exporter down. Export errors go to the global error handler, so the
	// records are checked in the file.
	lp := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(sdklog.NewSimpleProcessor(&errExporter{Exporter: exp, t: t})))
	lg := lp.Logger("berth")
	for i := range n {
		var r otellog.Record
		r.SetTimestamp(ts.Add(time.Duration(i)))
		r.SetObservedTimestamp(ts.Add(time.Second))
		r.SetBody(attribute.StringValue(fmt.Sprintf("%s line %d", tr, i)))
		r.AddAttributes(attribute.String("log.iostream", "stdout"), attribute.Bool("log.truncated", i == 0),
			attribute.Int("n", i), attribute.Float64("ratio", 0.5))
		lg.Emit(context.Background(), r)
	}
	if err := lp.Shutdown(context.Background()); err != nil {
		t.Errorf("%s: LoggerProvider.Shutdown: %v", tr, err)
	}
}

// errExporter reports export errors to the test.
type errExporter struct {
	sdklog.Exporter
	t  *testing.T
	mu sync.Mutex
}

func (e *errExporter) Export(ctx context.Context, recs []sdklog.Record) error {
	err := e.Exporter.Export(ctx, recs)
	if err != nil {
		e.mu.Lock()
		e.t.Errorf("Export: %v", err)
		e.mu.Unlock()
	}
	return err
}

func sameAttrs(got, want map[string]any) bool {
	return len(got) == len(want) && fmt.Sprintf("%#v", got) == fmt.Sprintf("%#v", want)
}
