package export

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/parse"
	"github.com/berthlog/berth/telemetry"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestRequestSizeIsExact: the size a request is packed by is the size of
// the request sent, exactly: with otlp.max_request_bytes at a request's size
// it goes as one request, a byte less and it is split; every request decodes
// with the OTLP proto types to a message of its own length.
func TestRequestSizeIsExact(t *testing.T) {
	labelled := &logs.Meta{ID: strings.Repeat("a", 64), Name: "web-1", ImageName: "registry.example.com/team/app", ImageTags: []string{"1.0", "latest"},
		ServiceName: "web", HostName: "host-1", SelectedLabels: []logs.Label{{Key: "team", Value: "payments"}, {Key: "com.example.tier", Value: strings.Repeat("e", 300)}}}
	plain := &logs.Meta{ID: strings.Repeat("b", 64), Name: "db"}
	long := strings.Repeat("x", 2<<20)
	for _, tc := range []struct {
		name    string
		batches []*logs.Batch
	}{
		{"one tiny record", []*logs.Batch{batchOf(plain, 1, "a")}},
		{"empty bodies", []*logs.Batch{batchOf(plain, 1, "", "", "")}},
		{"a 1 MiB line", []*logs.Batch{batchOf(labelled, 1, long[:1<<20], "b")}},
		{"lengths at varint steps", []*logs.Batch{batchOf(labelled, 1, long[:127], long[:128], long[:16383], long[:16384], long[:2097151-200])}},
		{"invalid UTF-8, truncated, stderr", func() []*logs.Batch {
			b := batchOf(labelled, 1, "a\xff", long[:20000])
			b.Records[0].Stream = logs.Stderr
			b.Records[1].Truncated = true
			return []*logs.Batch{b}
		}()},
		{"two containers", []*logs.Batch{batchOf(labelled, 1, "a", "b"), batchOf(plain, 2, "c"), batchOf(labelled, 3, "d")}},
		{"many small records", []*logs.Batch{batchOf(plain, 1, strings.Split(strings.Repeat("seq=000001 hello,", 1000), ",")...)}},
		{"parsed lines: attributes, severity, map bodies, a full resource", func() []*logs.Batch {
			full := &logs.Meta{ID: strings.Repeat("c", 64), Name: "api", ImageName: "app", ImageTags: []string{"latest"}, ImageID: "sha256:" + strings.Repeat("d", 64),
				ImageRepoDigests: []string{"app@sha256:" + strings.Repeat("e", 64)}, ServiceName: "api", ServiceNamespace: "shop", HostName: "h",
				Static: []logs.Label{{Key: "deployment.environment", Value: "prod"}}}
			b := &logs.Batch{Meta: full}
			for i, line := range []string{structuredLine, `{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"level":"info"}`,
				`{"nested":[[[[1]]],{"k":{"k":{"k":"v"}}},"` + long[:5000] + `"],"msg":""}`, `k=v l= m="` + long[:300] + `" level=error`} {
				for _, body := range []parse.Body{parse.BodyMessage, parse.BodyMap} {
					f := parse.JSON
					if i == 3 {
						f = parse.Logfmt
					}
					b.Records = append(b.Records, parsedRecord(t, f, body, line))
				}
			}
			return []*logs.Batch{b}
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs := 0
			for _, b := range tc.batches {
				recs += len(b.Records)
			}
			// run exports the batches through a sink bounded by limit and
			// returns the requests' sizes, the sink's stats, and the size
			// of one request of all the batches.
			run := func(limit int64) (sizes []int, stats OTLPStats, full int) {
				exp := &fakeExporter{}
				s := sinkWithLimit(t, exp, nil, limit, telemetry.NopSettings())
				ctx := context.Background()
				for _, b := range tc.batches {
					if err := s.Consume(ctx, b); err != nil {
						t.Fatal(err)
					}
				}
				if err := s.Shutdown(ctx); err != nil {
					t.Fatal(err)
				}
				var req []segment
				for _, b := range tc.batches {
					it := s.encode(b, 0)
					req = append(req, segment{it, 0, it.records()})
				}
				full = len(s.encodeRequest(req)) // the exporter goroutine has ended
				exp.mu.Lock()
				defer exp.mu.Unlock()
				return exp.sizes, s.Stats(), full
			}
			_, _, full := run(64 << 20)
			got, stats, _ := run(int64(full))
			if len(got) != 1 || got[0] != full || stats.Exported != int64(recs) {
				t.Fatalf("with the bound at the request's size (%d): requests of %v bytes, %+v; want one, every record", full, got, stats)
			}
			got, stats, _ = run(int64(full - 1))
			if recs == 1 {
				if stats.Rejected != 1 || len(got) != 0 {
					t.Fatalf("with the bound a byte below a lone record's request (%d): requests of %v bytes, %+v; want it dropped", full, got, stats)
				}
				return
			}
			if len(got) < 2 || stats.Exported != int64(recs) {
				t.Fatalf("with the bound a byte below the request's size (%d): requests of %v bytes, %+v; want it split, every record sent", full, got, stats)
			}
			for _, n := range got {
				if n > full-1 {
					t.Fatalf("a request of %d bytes over the bound %d", n, full-1)
				}
			}
			t.Logf("%d records: %d bytes in one request; %v bytes split", recs, full, got)
		})
	}
}

// slogTo is a text logger writing to w.
func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// sinkWithLimit is a test sink whose requests are bounded by maxRequest
// bytes.
func sinkWithLimit(t testing.TB, exp Exporter, acker logs.Acker, maxRequest int64, set telemetry.Settings) *OTLPSink {
	t.Helper()
	def := config.Default()
	def.OTLP.MaxRequestBytes = maxRequest
	s, err := NewOTLPSink(exp, acker, def.Export, def.Backoff, withVersion(set))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// bodiesOf is n bodies of size bytes, each starting with its sequence
// number from first.
func bodiesOf(first, n, size int) []string {
	out := make([]string, n)
	for i := range out {
		seq := fmt.Sprintf("seq=%06d ", first+i)
		out[i] = seq + strings.Repeat("x", max(0, size-len(seq)))
	}
	return out
}

// seqs lists the sequence numbers of exported bodies.
func seqs(bodies []string) []int {
	var out []int
	for _, b := range bodies {
		var n int
		if _, err := fmt.Sscanf(b, "seq=%d ", &n); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func wantSeqs(t *testing.T, got []int, want ...int) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("exported sequence %v,\nwant %v", got, want)
	}
}

func span(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// TestOTLPSinkRequestsWithinBytes: batches of long lines, far more than the
// request bound together, go out in requests each within the bound, in
// order, each line once; batches that fit together still share a request.
func TestOTLPSinkRequestsWithinBytes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const limit = 1 << 20
		exp := &fakeExporter{gate: make(chan struct{})}
		acks := &ackLog{}
		s := sinkWithLimit(t, exp, acks, limit, telemetry.NopSettings())
		ctx := context.Background()
		// The first batch holds the exporter while the others queue up.
		if err := s.Consume(ctx, batchOf(testMeta, 1, bodiesOf(0, 1, 10)...)); err != nil {
			t.Fatal(err)
		}
		exp.gate <- struct{}{}
		synctest.Wait()
		for i := range 4 { // 4 × 40 × 20 KiB = 3.2 MiB
			if err := s.Consume(ctx, batchOf(testMeta, 2+i, bodiesOf(1+40*i, 40, 20<<10)...)); err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				// The free exporter takes the first alone, and waits at
				// the gate with it, before the others queue up.
				synctest.Wait()
			}
		}
		for i := range 3 { // 3 × 10 small lines: one request
			if err := s.Consume(ctx, batchOf(testMeta, 6+i, bodiesOf(161+10*i, 10, 100)...)); err != nil {
				t.Fatal(err)
			}
		}
		close(exp.gate)
		if err := s.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		wantSeqs(t, seqs(exp.bodies()), span(0, 191)...)
		for i, n := range exp.bodyBytes {
			if n > limit {
				t.Errorf("request %d carried %d bytes of bodies, over the %d-byte bound", i, n, limit)
			}
		}
		// The first; the next (alone: queued while the exporter was free);
		// then 2.4 MiB and the small lines packed into 3 requests of up to
		// 1 MiB, batches sharing requests.
		if n := exp.callCount(); n != 5 {
			t.Errorf("%d requests of %v bytes of bodies, want 5", n, exp.bodyBytes)
		}
		if got := acks.list(); len(got) != 8 {
			t.Fatalf("acks %v, want all 8 batches", got)
		}
	})
}

// tooLargeOver refuses, as a gRPC server with a smaller limit than berth's
// does, every request whose bodies exceed limit bytes.
func tooLargeOver(limit int, err error) func([]exportedRecord) error {
	return func(recs []exportedRecord) error {
		n := 0
		for _, r := range recs {
			n += bodyLen(r.Body())
		}
		if n > limit {
			return err
		}
		return nil
	}
}

// TestOTLPSinkSplitsRequestsTooLarge: a backend whose limit is below
// otlp.max_request_bytes refuses requests as too large (gRPC
// RESOURCE_EXHAUSTED, HTTP 413): berth splits them and sends the halves,
// every line once and in order; only the line that alone is over the
// backend's limit is dropped, logged and counted as rejected.
func TestOTLPSinkSplitsRequestsTooLarge(t *testing.T) {
	for name, refusal := range map[string]error{
		"grpc": status.Error(codes.ResourceExhausted, "grpc: received message larger than max (3300000 vs. 1048576)"),
		"http": &HTTPStatusError{URL: "http://127.0.0.1:4318/v1/logs", Code: 413, Status: "413 Request Entity Too Large"},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				exp := &fakeExporter{judge: tooLargeOver(1<<20, refusal)}
				acks := &ackLog{}
				var logBuf strings.Builder
				set := telemetry.NopSettings()
				set.Logger = slogTo(&logBuf)
				s := newTestSink(t, exp, acks, set)
				ctx := context.Background()
				b := batchOf(testMeta, 1, bodiesOf(0, 20, 100<<10)...)
				b.Records = append(b.Records, batchOf(testMeta, 1, bodiesOf(20, 1, 1500<<10)...).Records...)
				b.Records = append(b.Records, batchOf(testMeta, 1, bodiesOf(21, 10, 100<<10)...).Records...)
				if err := s.Consume(ctx, b); err != nil {
					t.Fatal(err)
				}
				if err := s.Consume(ctx, batchOf(testMeta, 2, bodiesOf(31, 5, 10)...)); err != nil {
					t.Fatal(err)
				}
				sctx, cancel := context.WithTimeout(ctx, time.Hour)
				defer cancel()
				if err := s.Shutdown(sctx); err != nil {
					t.Fatalf("Shutdown: %v (a refused request retried forever stalls the pipeline)", err)
				}
				wantSeqs(t, seqs(exp.bodies()), append(span(0, 20), span(21, 36)...)...)
				if st := s.Stats(); st.Rejected != 1 || st.Failures != 0 {
					t.Errorf("rejected %d, failures %d; want the one line over the limit rejected, no failure", st.Rejected, st.Failures)
				}
				if got := acks.list(); fmt.Sprint(got) != "[c1@1 c1@2]" {
					t.Errorf("acks %v, want both batches", got)
				}
				if !strings.Contains(logBuf.String(), "too large for the backend even alone") || !strings.Contains(logBuf.String(), "container=web") {
					t.Errorf("the dropped line is not logged: %q", logBuf.String())
				}
			})
		})
	}
}

// TestOTLPSinkDropsRecordOverTheBound: a record whose encoded size alone is
// over otlp.max_request_bytes is never sent: dropped, logged and counted;
// the lines around it are delivered.
func TestOTLPSinkDropsRecordOverTheBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		exp := &fakeExporter{}
		acks := &ackLog{}
		var logBuf strings.Builder
		set := telemetry.NopSettings()
		set.Logger = slogTo(&logBuf)
		s := sinkWithLimit(t, exp, acks, 256<<10, set)
		ctx := context.Background()
		b := batchOf(testMeta, 1, bodiesOf(0, 2, 100)...)
		b.Records = append(b.Records, batchOf(testMeta, 1, bodiesOf(2, 1, 256<<10)...).Records...)
		b.Records = append(b.Records, batchOf(testMeta, 1, bodiesOf(3, 2, 100)...).Records...)
		if err := s.Consume(ctx, b); err != nil {
			t.Fatal(err)
		}
		if err := s.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		wantSeqs(t, seqs(exp.bodies()), 0, 1, 3, 4)
		if st := s.Stats(); st.Rejected != 1 {
			t.Errorf("rejected %d, want 1", st.Rejected)
		}
		if got := acks.list(); fmt.Sprint(got) != "[c1@1]" {
			t.Errorf("acks %v", got)
		}
		if !strings.Contains(logBuf.String(), "more than otlp.max_request_bytes") {
			t.Errorf("the dropped line is not logged with its reason: %q", logBuf.String())
		}
	})
}

// TestOTLPSinkInvalidSplitsByContainer: a request that merged several
// containers' batches and is refused as invalid is split until the bad
// record's container is alone: only that container's batch is dropped.
func TestOTLPSinkInvalidSplitsByContainer(t *testing.T) {
	for name, invalid := range map[string]error{
		"grpc": status.Error(codes.InvalidArgument, "bad record"),
		"http": &HTTPStatusError{URL: "http://127.0.0.1:4318/v1/logs", Code: 400, Status: "400 Bad Request", Body: "bad record"},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				exp := &fakeExporter{gate: make(chan struct{}), judge: func(recs []exportedRecord) error {
					for _, r := range recs {
						if strings.Contains(r.Body().AsString(), "bad") {
							return invalid
						}
					}
					return nil
				}}
				acks := &ackLog{}
				s := newTestSink(t, exp, acks, telemetry.NopSettings())
				ctx := context.Background()
				c2 := &logs.Meta{ID: "c2", Name: "db"}
				c3 := &logs.Meta{ID: "c3", Name: "cache"}
				if err := s.Consume(ctx, batchOf(testMeta, 1, "seq=0 ")); err != nil {
					t.Fatal(err)
				}
				exp.gate <- struct{}{} // the exporter holds the first; the rest queue
				synctest.Wait()
				for i, b := range []*logs.Batch{
					batchOf(testMeta, 2, "seq=1 ", "seq=2 "),
					batchOf(c2, 3, "seq=100 bad", "seq=101 "),
					batchOf(c3, 4, "seq=3 "),
					batchOf(testMeta, 5, "seq=4 "),
				} {
					if err := s.Consume(ctx, b); err != nil {
						t.Fatalf("batch %d: %v", i, err)
					}
				}
				close(exp.gate)
				if err := s.Shutdown(ctx); err != nil {
					t.Fatal(err)
				}
				wantSeqs(t, seqs(exp.bodies()), 0, 1, 2, 3, 4)
				if st := s.Stats(); st.Rejected != 2 {
					t.Errorf("rejected %d, want c2's 2 records", st.Rejected)
				}
				if got := acks.list(); fmt.Sprint(got) != "[c1@1 c1@2 c2@3 c3@4 c1@5]" {
					t.Errorf("acks %v, want every batch in order", got)
				}
			})
		})
	}
}

// TestOTLPSinkWeightCountsConvertedRecords: the in-flight bytes the sink
// counts for queued batches are at least what they hold on the heap (the
// converted SDK records and their bodies), so that max_in_flight_bytes bounds
// memory, not only bodies.
func TestOTLPSinkWeightCountsConvertedRecords(t *testing.T) {
	exp := &fakeExporter{gate: make(chan struct{})}
	s := newTestSink(t, exp, nil, telemetry.NopSettings())
	ctx := context.Background()
	meta := &logs.Meta{ID: strings.Repeat("a", 64), Name: "web"}
	if err := s.Consume(ctx, batchOf(meta, 0, "warm-up")); err != nil { // the exporter holds it
		t.Fatal(err)
	}
	batches := make([]*logs.Batch, 16)
	for i := range batches {
		batches[i] = batchOf(meta, i+1, bodiesOf(1024*i, 1024, 100)...)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	inFlight := s.Stats().InFlightBytes
	for _, b := range batches {
		if err := s.Consume(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	counted := s.Stats().InFlightBytes - inFlight
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("16 batches of 1024 lines of 100 bytes: %d bytes counted in flight, %d held on the heap", counted, held)
	if counted < held*9/10 {
		t.Errorf("counted %d bytes in flight for %d held: the in-flight bound undercounts memory", counted, held)
	}
	if counted > held*2 {
		t.Errorf("counted %d bytes in flight for %d held: far too much", counted, held)
	}
	runtime.KeepAlive(batches)
	close(exp.gate)
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}
