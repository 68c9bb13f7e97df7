package export

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/grpc"
)

// benchGRPCReceiver is an in-process OTLP/gRPC logs receiver that accepts
// every request and counts the records.
type benchGRPCReceiver struct {
	collogspb.UnimplementedLogsServiceServer
	records atomic.Int64
}

func (r *benchGRPCReceiver) Export(_ context.Context, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	var n int64
	for _, rl := range req.GetResourceLogs() {
		for _, sl := range rl.GetScopeLogs() {
			n += int64(len(sl.GetLogRecords()))
		}
	}
	r.records.Add(n)
	return &collogspb.ExportLogsServiceResponse{}, nil
}

// startBenchGRPC serves a benchGRPCReceiver on loopback until the test ends.
func startBenchGRPC(b *testing.B) (*benchGRPCReceiver, string) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	recv := &benchGRPCReceiver{}
	collogspb.RegisterLogsServiceServer(srv, recv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	b.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return recv, ln.Addr().String()
}

// benchSink pushes batches of 1024 87-byte records through an OTLP sink
// built as berth builds it (gzip by default) and reports the cost per line.
func benchSink(b *testing.B, c config.OTLP) {
	ctx := context.Background()
	exp, err := NewOTLPExporter(ctx, c, func(string) string { return "" })
	if err != nil {
		b.Fatal(err)
	}
	def := config.Default()
	s, err := NewOTLPSink(exp, nil, def.Export, def.Backoff, withVersion(telemetry.NopSettings()))
	if err != nil {
		b.Fatal(err)
	}
	meta := &logs.Meta{ID: strings.Repeat("a", 64), Name: "bench", ImageName: "app", ImageTags: []string{"1.0"}, ServiceName: "bench", HostName: "h"}
	recs := make([]logs.Record, 1024)
	now := time.Now()
	for i := range recs {
		recs[i] = logs.Record{Timestamp: now.Add(time.Duration(i)), Observed: now, Body: []byte("seq=" + strings.Repeat("0", 8) + " " + strings.Repeat("x", 74)), Stream: logs.Stdout}
	}
	batch := &logs.Batch{Meta: meta, Records: recs}
	b.ReportAllocs()
	b.SetBytes(int64(len(recs) * 87))
	b.ResetTimer()
	for range b.N {
		if err := s.Consume(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if got := s.Stats().Exported; got != int64(b.N*len(recs)) {
		b.Fatalf("exported %d records, want %d", got, b.N*len(recs))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/line")
}

// BenchmarkOTLPSinkGRPC measures the sink and its exporter against an
// in-process OTLP/gRPC receiver (whose decoding counts too).
func BenchmarkOTLPSinkGRPC(b *testing.B) {
	for _, comp := range []string{"gzip", "none"} {
		b.Run(comp, func(b *testing.B) {
			_, addr := startBenchGRPC(b)
			benchSink(b, config.OTLP{Endpoint: "http://" + addr, Protocol: "grpc", Insecure: true, Compression: comp})
		})
	}
}

// BenchmarkOTLPSinkHTTP measures the sink and its exporter against an
// in-process OTLP/HTTP receiver that reads each body and answers 200.
func BenchmarkOTLPSinkHTTP(b *testing.B) {
	for _, comp := range []string{"gzip", "none"} {
		b.Run(comp, func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/x-protobuf")
			}))
			b.Cleanup(srv.Close)
			benchSink(b, config.OTLP{Endpoint: srv.URL, Protocol: "http/protobuf", Compression: comp})
		})
	}
}
