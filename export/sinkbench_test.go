package export

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
)

// benchMsg is a gRPC message's bytes, as benchCodec passes them.
type benchMsg struct{ b []byte }

// benchCodec is the bench receiver's codec: it keeps each request's bytes
// without decoding them, so that the benchmark measures the sender.
type benchCodec struct{}

func (benchCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(*benchMsg).b)}, nil
}

func (benchCodec) Unmarshal(data mem.BufferSlice, v any) error {
	v.(*benchMsg).b = data.Materialize()
	return nil
}

func (benchCodec) Name() string { return "proto" }

// startBenchGRPC serves an OTLP/gRPC receiver on loopback, until the
// benchmark ends, that acknowledges every request at once (an empty
// ExportLogsServiceResponse) without decoding it.
func startBenchGRPC(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(benchCodec{}), grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		var in benchMsg
		if err := stream.RecvMsg(&in); err != nil {
			return err
		}
		return stream.SendMsg(&benchMsg{})
	}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	b.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return ln.Addr().String()
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
// in-process OTLP/gRPC receiver.
func BenchmarkOTLPSinkGRPC(b *testing.B) {
	for _, comp := range []string{"gzip", "none"} {
		b.Run(comp, func(b *testing.B) {
			addr := startBenchGRPC(b)
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
