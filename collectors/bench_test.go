package collectors

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/pkg/stdcopy"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
)

// benchSource serves the same prebuilt response to every request.
type benchSource struct{ body []byte }

func (b *benchSource) Inspect(context.Context, string) (*logs.Meta, error) {
	return &logs.Meta{ID: "c", Name: "bench"}, nil
}

func (b *benchSource) Logs(context.Context, string, LogRequest) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(b.body)), nil
}

type countSink struct{ lines, bytes int }

func (s *countSink) Consume(_ context.Context, b *logs.Batch) error {
	s.lines += len(b.Records)
	for i := range b.Records {
		s.bytes += len(b.Records[i].Body)
	}
	return nil
}

const benchLines = 100_000

// benchBody is a multiplexed response of benchLines lines of about 100
// bytes, every 7th on stderr, with distinct timestamps.
func benchBody() []byte {
	var buf bytes.Buffer
	pad := strings.Repeat("x", 70)
	for i := range benchLines {
		s := logs.Stdout
		if i%7 == 6 {
			s = logs.Stderr
		}
		writeMsg(&buf, fakeMsg{s, t0.Add(time.Duration(i) * time.Microsecond), fmt.Sprintf("seq=%08d %s\n", i, pad)}, false)
	}
	return buf.Bytes()
}

// BenchmarkBurst measures the per-line path: frames parsed in place,
// timestamps, cursor, batching, sink hand-off. Reported per line.
func BenchmarkBurst(b *testing.B) {
	src := &benchSource{body: benchBody()}
	sink := &countSink{}
	c := newCollector(b, src, sink, testBursts(1<<20, 100), telemetry.NopSettings())
	meta := new(atomic.Pointer[logs.Meta])
	meta.Store(&logs.Meta{ID: "c"})
	b.SetBytes(int64(len(src.body)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		res := c.Burst(context.Background(), BurstSpec{ID: "c", Cursor: logs.BeginningCursor(), Meta: meta})
		if res.Lines != benchLines {
			b.Fatalf("read %d lines: %v", res.Lines, res.Err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchLines), "ns/line")
}

// BenchmarkStdCopyBaseline is the plain demultiplexer copying the same
// response to io.Discard: the floor the per-line path is compared with.
func BenchmarkStdCopyBaseline(b *testing.B) {
	body := benchBody()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for range b.N {
		if _, err := stdcopy.StdCopy(io.Discard, io.Discard, bufio.NewReader(bytes.NewReader(body))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchLines), "ns/line")
}

// BenchmarkBurstMultiline is BenchmarkBurst with a start pattern that every
// line matches: each line is held until the next one closes it, so every
// line pays for the joiner (Go's regexp, the copy into its buffer).
func BenchmarkBurstMultiline(b *testing.B) {
	benchMultiline(b, config.Multiline{Start: `^seq=\d+ `})
}

// BenchmarkBurstMultilineJava is BenchmarkBurst with the java preset: no
// line is a stack frame, so each is held until the next one closes it.
func BenchmarkBurstMultilineJava(b *testing.B) {
	benchMultiline(b, config.Multiline{Preset: "java"})
}

func benchMultiline(b *testing.B, m config.Multiline) {
	src := &benchSource{body: benchBody()}
	sink := &countSink{}
	cfg := testBursts(1<<20, 100)
	m.Timeout, m.MaxLines = time.Second, 500
	cfg.Multiline = m
	c := newCollector(b, src, sink, cfg, telemetry.NopSettings())
	meta := new(atomic.Pointer[logs.Meta])
	meta.Store(&logs.Meta{ID: "c"})
	b.SetBytes(int64(len(src.body)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		res := c.Burst(context.Background(), BurstSpec{ID: "c", Cursor: logs.BeginningCursor(), Meta: meta})
		if res.Lines != benchLines {
			b.Fatalf("read %d lines: %v", res.Lines, res.Err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchLines), "ns/line")
}
