package export

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
)

// discardExporter accepts every export and keeps nothing.
type discardExporter struct{}

func (discardExporter) Export(context.Context, []byte) error { return nil }
func (discardExporter) Shutdown(context.Context) error       { return nil }

// BenchmarkOTLPSink measures a batch's way through the OTLP sink: converted
// to OTLP protobuf in Consume, exported and acknowledged by the exporter
// goroutine (its allocations count too).
func BenchmarkOTLPSink(b *testing.B) {
	s := newTestSink(b, discardExporter{}, nil, telemetry.NopSettings())
	meta := &logs.Meta{ID: strings.Repeat("a", 64), Name: "bench", ImageName: "app", ServiceName: "bench", HostName: "h"}
	recs := make([]logs.Record, 1024)
	for i := range recs {
		recs[i] = logs.Record{Timestamp: time.Now(), Observed: time.Now(), Body: []byte("seq=00000001 " + strings.Repeat("x", 80)), Stream: logs.Stdout}
	}
	batch := &logs.Batch{Meta: meta, Records: recs}
	ctx := context.Background()
	b.ReportAllocs()
	for range b.N {
		if err := s.Consume(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/line")
}
