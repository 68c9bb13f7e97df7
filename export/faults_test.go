package export

// A slow backend and connections reset in the middle of a request, over
// real OTLP/gRPC and OTLP/HTTP to an in-process backend, through the sink's
// public API only (NewOTLPExporter, NewOTLPSink, Consume, acknowledgements,
// Stats, Shutdown): nothing is lost, duplicates are exactly the requests the
// backend took but answered too late, no goroutine is left behind.

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // berth's gRPC requests are gzip-compressed
	"google.golang.org/protobuf/proto"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/internal/faultproxy"
	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
)

// backendRequest is one export request the fault backend took.
type backendRequest struct {
	seqs []int
	// late: answered only after the client's timeout; abandoned: the
	// client was gone by then (its answer never arrived).
	late, abandoned bool
}

// faultBackend is an OTLP logs backend over gRPC and HTTP that keeps the
// sequence numbers of every record it takes. While late > 0 it takes a
// request (keeps its records: a backend that is slow, not down) and answers
// only when the client has gone, or after lateBound.
type faultBackend struct {
	collogpb.UnimplementedLogsServiceServer

	mu       sync.Mutex
	late     int
	requests []backendRequest
	partial  int // HTTP bodies that could not be read whole

	grpcLn, httpLn net.Listener
	grpcSrv        *grpc.Server
	httpSrv        *http.Server
	wg             sync.WaitGroup
}

// lateBound bounds how long the backend holds a late answer.
const lateBound = 30 * time.Second

func startFaultBackend(t *testing.T) *faultBackend {
	t.Helper()
	b := &faultBackend{grpcSrv: grpc.NewServer()}
	collogpb.RegisterLogsServiceServer(b.grpcSrv, b)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/logs", b.serveHTTP)
	b.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	var err error
	if b.grpcLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if b.httpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	b.wg.Add(2)
	go func() { defer b.wg.Done(); _ = b.grpcSrv.Serve(b.grpcLn) }()
	go func() { defer b.wg.Done(); _ = b.httpSrv.Serve(b.httpLn) }()
	t.Cleanup(func() {
		b.grpcSrv.Stop()
		_ = b.httpSrv.Close()
		b.wg.Wait()
	})
	return b
}

// addr is the backend's host:port for protocol.
func (b *faultBackend) addr(protocol string) string {
	if protocol == "grpc" {
		return b.grpcLn.Addr().String()
	}
	return b.httpLn.Addr().String()
}

func (b *faultBackend) setLate(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.late = n
}

func (b *faultBackend) snapshot() ([]backendRequest, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.requests), b.partial
}

// take keeps req's records and answers when it should: at once, or (late)
// when ctx, the client's request, ends.
func (b *faultBackend) take(ctx context.Context, req *collogpb.ExportLogsServiceRequest) {
	var r backendRequest
	for _, rl := range req.ResourceLogs {
		for _, sl := range rl.ScopeLogs {
			for _, lr := range sl.LogRecords {
				var n int
				if _, err := fmt.Sscanf(lr.GetBody().GetStringValue(), "seq=%d ", &n); err == nil {
					r.seqs = append(r.seqs, n)
				}
			}
		}
	}
	b.mu.Lock()
	r.late = b.late > 0
	if r.late {
		b.late--
	}
	b.requests = append(b.requests, r)
	i := len(b.requests) - 1
	b.mu.Unlock()
	if !r.late {
		return
	}
	t := time.NewTimer(lateBound)
	defer t.Stop()
	select {
	case <-ctx.Done():
		b.mu.Lock()
		b.requests[i].abandoned = true
		b.mu.Unlock()
	case <-t.C:
	}
}

// Export serves OTLP/gRPC.
func (b *faultBackend) Export(ctx context.Context, req *collogpb.ExportLogsServiceRequest) (*collogpb.ExportLogsServiceResponse, error) {
	b.take(ctx, req)
	return &collogpb.ExportLogsServiceResponse{}, nil
}

// serveHTTP serves OTLP/HTTP (protobuf, gzip or not).
func (b *faultBackend) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err == nil && r.Header.Get("Content-Encoding") == "gzip" {
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(bytes.NewReader(body)); err == nil {
			body, err = io.ReadAll(zr)
		}
	}
	req := &collogpb.ExportLogsServiceRequest{}
	if err == nil {
		err = proto.Unmarshal(body, req)
	}
	if err != nil {
		b.mu.Lock()
		b.partial++
		b.mu.Unlock()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b.take(r.Context(), req)
	out, _ := proto.Marshal(&collogpb.ExportLogsServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// netSink is a sink exporting over protocol to endpoint (host:port) with
// otlp.timeout timeout and a short backoff.
func netSink(t *testing.T, protocol, endpoint string, timeout time.Duration, acker logs.Acker) *OTLPSink {
	t.Helper()
	cfg := config.Default()
	cfg.OTLP.Endpoint = "http://" + endpoint
	cfg.OTLP.Protocol = protocol
	if protocol == "http" {
		cfg.OTLP.Protocol = "http/protobuf"
	}
	cfg.OTLP.Timeout = timeout
	cfg.Backoff.Initial, cfg.Backoff.Max = 50*time.Millisecond, 200*time.Millisecond
	exp, err := NewOTLPExporter(context.Background(), cfg.OTLP, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewOTLPSink(exp, acker, cfg.Export, cfg.Backoff, withVersion(telemetry.NopSettings()))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// consumeSeq gives the sink batches of 10 sequence-numbered lines, from seq
// first, n lines in all; batch k's cursor is first/10+k+1.
func consumeSeq(t *testing.T, s *OTLPSink, first, n int) {
	t.Helper()
	for i := first; i < first+n; i += 10 {
		if err := s.Consume(context.Background(), batchOf(testMeta, i/10+1, bodiesOf(i, 10, 100)...)); err != nil {
			t.Fatal(err)
		}
	}
}

// waitAcks polls until n batches are acknowledged and returns them.
func waitAcks(t *testing.T, acks *ackLog, n int) []string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := acks.list()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d batches acknowledged after 60 s", len(got), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wantAcksInOrder: batches 1..n each acknowledged once, in order.
func wantAcksInOrder(t *testing.T, got []string, n int) {
	t.Helper()
	var want []string
	for k := 1; k <= n; k++ {
		want = append(want, fmt.Sprintf("c1@%d", k))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("acks %v,\nwant %v", got, want)
	}
}

// waitGoroutines polls until the process has at most base+slack goroutines.
func waitGoroutines(t *testing.T, base, slack int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base+slack {
			return n
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines 10 s after recovery, %d before the fault:\n%s", n, base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// seqCounts counts each sequence number over the requests.
func seqCounts(reqs []backendRequest) map[int]int {
	c := map[int]int{}
	for _, r := range reqs {
		for _, s := range r.seqs {
			c[s]++
		}
	}
	return c
}

// TestOTLPSinkSlowBackend: the backend takes the first requests after a
// warm-up but answers them only after otlp.timeout (when berth has given
// up). berth retries until a request is answered in time: every line
// arrives; the lines the backend got more than once are exactly those of
// the requests it answered late (each took by the backend, the answer lost);
// each batch is acknowledged once, in order, after its delivery; no
// goroutine is left behind. Over gRPC each timed-out request is one failed
// export attempt in Stats; over HTTP the exporter retries a timed-out
// request itself for up to 15 s (exporter.go) before the attempt fails, so
// Stats counts at most one failure per late request.
func TestOTLPSinkSlowBackend(t *testing.T) {
	for _, protocol := range []string{"grpc", "http"} {
		t.Run(protocol, func(t *testing.T) {
			const timeout, late, lines = time.Second, 2, 200
			backend := startFaultBackend(t)
			acks := &ackLog{}
			s := netSink(t, protocol, backend.addr(protocol), timeout, acks)
			defer s.Shutdown(context.Background())
			consumeSeq(t, s, 0, 10) // warm-up: the connection is up
			waitAcks(t, acks, 1)
			base := runtime.NumGoroutine()

			backend.setLate(late)
			consumeSeq(t, s, 10, lines-10)
			got := waitAcks(t, acks, lines/10)
			wantAcksInOrder(t, got, lines/10)
			reqs, _ := backend.snapshot()
			abandoned := 0
			wantCount := map[int]int{}
			for q := range lines {
				wantCount[q] = 1
			}
			for i, r := range reqs {
				if r.late && !r.abandoned {
					t.Errorf("request %d was answered %v late and berth still waited: otlp.timeout (%v) not applied", i, lateBound, timeout)
				}
				if r.abandoned {
					abandoned++
					for _, q := range r.seqs {
						wantCount[q]++
					}
				}
			}
			if abandoned != late {
				t.Fatalf("%d requests abandoned by berth, want the %d answered late", abandoned, late)
			}
			if c := seqCounts(reqs); !maps.Equal(c, wantCount) {
				t.Fatalf("records per sequence number at the backend %v,\nwant each once plus once per late request that held it %v", c, wantCount)
			}
			n := waitGoroutines(t, base, 0)
			st := s.Stats()
			if st.Exported < lines || st.InFlightBytes != 0 {
				t.Errorf("stats %+v, want >= %d exported, nothing in flight", st, lines)
			}
			if st.Failures > int64(late) || (protocol == "grpc" && st.Failures != int64(late)) {
				t.Errorf("%d failed export attempts for %d timed-out requests", st.Failures, late)
			}
			t.Logf("%s: %d requests, %d answered after otlp.timeout (%d records duplicated at the backend), %d failed attempts; goroutines %d before, %d after",
				protocol, len(reqs), late, sumCounts(wantCount)-lines, st.Failures, base, n)
			if err := s.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestOTLPSinkConnectionReset: the connections of the first requests after
// a warm-up are reset in the middle of the request's body (a proxy forwards
// half of it, then RST): berth retries; every line arrives exactly once (a
// cut request never reached the backend whole), each batch is acknowledged
// once, in order; no goroutine and no connection is left behind.
func TestOTLPSinkConnectionReset(t *testing.T) {
	for _, protocol := range []string{"grpc", "http"} {
		t.Run(protocol, func(t *testing.T) {
			const cuts, lines = 3, 200
			backend := startFaultBackend(t)
			framing := faultproxy.HTTP2
			if protocol == "http" {
				framing = faultproxy.HTTP1
			}
			px, err := faultproxy.Start(backend.addr(protocol), framing)
			if err != nil {
				t.Fatal(err)
			}
			defer px.Close()
			acks := &ackLog{}
			// otlp.timeout is longer than the exporter's own retries (15 s):
			// no attempt ends by its deadline, so no request can be taken by
			// the backend and answered too late (the slow backend's
			// duplicate, tested above), and each line must arrive once.
			s := netSink(t, protocol, px.Addr(), 30*time.Second, acks)
			defer s.Shutdown(context.Background())
			consumeSeq(t, s, 0, 10)
			waitAcks(t, acks, 1)
			base := runtime.NumGoroutine()

			px.Cut(cuts)
			consumeSeq(t, s, 10, lines-10)
			got := waitAcks(t, acks, lines/10)
			wantAcksInOrder(t, got, lines/10)
			reqs, partial := backend.snapshot()
			c := seqCounts(reqs)
			for q := range lines {
				if c[q] != 1 {
					t.Fatalf("seq %d arrived %d times, want once (counts %v)", q, c[q], c)
				}
			}
			if len(c) != lines {
				t.Fatalf("%d distinct sequence numbers at the backend, want %d", len(c), lines)
			}
			ps := px.Stats()
			if ps.Cut != cuts {
				t.Fatalf("proxy cut %d requests, want %d", ps.Cut, cuts)
			}
			n := waitGoroutines(t, base, 0)
			if ps := px.Stats(); ps.Open > 1 {
				t.Errorf("%d connections open through the proxy after recovery, want at most 1", ps.Open)
			}
			st := s.Stats()
			if st.Failures > cuts || st.InFlightBytes != 0 {
				t.Errorf("stats %+v: more failed attempts than cut requests (%d), or bytes in flight", st, cuts)
			}
			t.Logf("%s: %d requests cut on %d connections, %d bodies cut at the backend, %d failed attempts; goroutines %d before, %d after",
				protocol, ps.Cut, ps.Conns, partial, st.Failures, base, n)
			if err := s.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func sumCounts(c map[int]int) int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}
