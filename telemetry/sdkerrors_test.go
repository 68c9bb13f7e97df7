package telemetry

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/berthlog/berth/config"
)

// records is a slog handler that keeps every record, at every level.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *records) WithGroup(string) slog.Handler            { return r }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}

// find returns the text of the records at level whose message or attributes
// contain s.
func (r *records) find(level slog.Level, s string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		text := rec.Message
		rec.Attrs(func(a slog.Attr) bool { text += " " + a.String(); return true })
		if rec.Level == level && strings.Contains(text, s) {
			out = append(out, text)
		}
	}
	return out
}

// lockedBuffer is Go's default log output during a test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// routeSDKErrors routes the SDK's errors to a recording handler and captures
// Go's default log output for the test. Both are process-global: the test
// must not run in parallel, and afterwards the SDK's errors go to stderr
// through slog.
func routeSDKErrors(t *testing.T) (*records, *lockedBuffer) {
	t.Helper()
	std := &lockedBuffer{}
	out, flags := log.Writer(), log.Flags()
	log.SetOutput(std)
	rec := &records{}
	RouteSDKErrors(slog.New(rec))
	t.Cleanup(func() {
		log.SetOutput(out)
		log.SetFlags(flags)
		RouteSDKErrors(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	})
	return rec, std
}

func TestSDKExportErrorsReachSlog(t *testing.T) {
	rec, std := routeSDKErrors(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	otlp := config.OTLP{Endpoint: "http://" + addr, Protocol: "http/protobuf", Timeout: 200 * time.Millisecond}
	s, err := New(context.Background(), config.Default().Telemetry, otlp, noEnv, "test", "h", slog.New(rec))
	if err != nil {
		t.Fatal(err)
	}
	_, span := s.Settings().Tracer().Start(context.Background(), "berth.test")
	span.End()
	// The batch span processor's last export fails and goes to otel.Handle;
	// the metric reader's fails and is returned.
	if err := s.Shutdown(context.Background()); err == nil {
		t.Error("Shutdown with an unreachable endpoint returned no error")
	}
	if got := rec.find(slog.LevelWarn, "traces export"); len(got) == 0 {
		t.Errorf("no warn record of the failed trace export; records: %v", rec.find(slog.LevelWarn, ""))
	} else if !strings.Contains(got[0], "OpenTelemetry SDK") {
		t.Errorf("record %q does not name the SDK", got[0])
	}
	if s := std.String(); s != "" {
		t.Errorf("Go's default logger printed %q", s)
	}
}

func TestSDKLogReachesSlog(t *testing.T) {
	rec, std := routeSDKErrors(t)
	// A reader registered with a second provider is an error the SDK logs
	// through its internal logger.
	reader := sdkmetric.NewManualReader()
	mp1 := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	mp2 := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp1.Shutdown(context.Background())
	defer mp2.Shutdown(context.Background())
	if got := rec.find(slog.LevelError, "duplicate"); len(got) == 0 {
		t.Errorf("no error record of the duplicate reader registration; records: %v", rec.find(slog.LevelError, ""))
	}
	if s := std.String(); s != "" {
		t.Errorf("Go's default logger printed %q", s)
	}
}
