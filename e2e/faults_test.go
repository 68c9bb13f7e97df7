//go:build e2e

package e2e

// A slow backend and connections reset in the middle of a request (issue
// 11), between berth and the real OpenTelemetry Collector, over OTLP/gRPC and
// OTLP/HTTP: nothing lost, duplicates exactly accounted for, goroutines and
// file descriptors back to their baseline after the backend recovers.

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // berth's gRPC requests are gzip-compressed
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/berthlog/berth/e2e/internal/lines"
	"github.com/berthlog/berth/e2e/internal/otelcolrun"
	"github.com/berthlog/berth/internal/faultproxy"
)

// slowRequest is one export request the slow proxy forwarded.
type slowRequest struct {
	keys []string // "container.name seq" of each record
	// abandoned: the collector took it (answered OK) but berth had given up
	// (its deadline passed) before the proxy answered.
	abandoned bool
}

// slowProxy is an OTLP logs proxy (a gRPC server and an HTTP server on
// 127.0.0.1) in front of the collector. Every request is forwarded at once;
// while holding, the collector's answer is held back: it is given to berth
// once holding ends, if berth's deadline is then more than holdMargin away,
// else never (berth gives up first: the request is abandoned). So each
// request is unambiguously answered or abandoned, and the collector took
// every abandoned request: each record of one is a duplicate berth causes by
// sending it again.
type slowProxy struct {
	timeout time.Duration // berth's otlp.timeout: the HTTP requests' deadline

	mu       sync.Mutex
	release  chan struct{} // closed when holding ends; nil when not holding
	requests []slowRequest
	errs     []string

	upGRPC  collogpb.LogsServiceClient
	upConn  *grpc.ClientConn
	upHTTP  string
	hc      *http.Client
	grpcLn  net.Listener
	httpLn  net.Listener
	grpcSrv *grpc.Server
	httpSrv *http.Server
	wg      sync.WaitGroup
}

const holdMargin = 500 * time.Millisecond

func startSlowProxy(t *testing.T, col *otelcolrun.Collector, timeout time.Duration) *slowProxy {
	t.Helper()
	conn, err := grpc.NewClient(col.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	p := &slowProxy{timeout: timeout, upConn: conn, upGRPC: collogpb.NewLogsServiceClient(conn),
		upHTTP: col.HTTPEndpoint() + "/v1/logs", hc: &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second},
		grpcSrv: grpc.NewServer()}
	collogpb.RegisterLogsServiceServer(p.grpcSrv, slowGRPC{p: p})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/logs", p.serveHTTP)
	p.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if p.grpcLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if p.httpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	p.wg.Add(2)
	go func() { defer p.wg.Done(); _ = p.grpcSrv.Serve(p.grpcLn) }()
	go func() { defer p.wg.Done(); _ = p.httpSrv.Serve(p.httpLn) }()
	t.Cleanup(func() {
		p.setHolding(false)
		p.grpcSrv.Stop()
		_ = p.httpSrv.Close()
		p.wg.Wait()
		_ = conn.Close()
		p.hc.CloseIdleConnections()
	})
	return p
}

func (p *slowProxy) endpoint(protocol string) string {
	if protocol == "grpc" {
		return "http://" + p.grpcLn.Addr().String()
	}
	return "http://" + p.httpLn.Addr().String()
}

func (p *slowProxy) setHolding(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case on && p.release == nil:
		p.release = make(chan struct{})
	case !on && p.release != nil:
		close(p.release)
		p.release = nil
	}
}

func (p *slowProxy) snapshot() ([]slowRequest, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]slowRequest(nil), p.requests...), append([]string(nil), p.errs...)
}

func (p *slowProxy) fail(format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	p.mu.Lock()
	p.errs = append(p.errs, err.Error())
	p.mu.Unlock()
	return err
}

// handle forwards req with forward; then it returns nil when berth is to
// get the collector's answer, and an error when berth gave up first.
func (p *slowProxy) handle(ctx context.Context, req *collogpb.ExportLogsServiceRequest, deadline time.Time, forward func() error) error {
	r := slowRequest{}
	for _, rl := range req.ResourceLogs {
		name := ""
		for _, kv := range rl.GetResource().GetAttributes() {
			if kv.Key == "container.name" {
				name = kv.GetValue().GetStringValue()
			}
		}
		for _, sl := range rl.ScopeLogs {
			for _, lr := range sl.LogRecords {
				if pl, ok := lines.Parse(lr.GetBody().GetStringValue()); ok {
					r.keys = append(r.keys, fmt.Sprintf("%s %d", name, pl.Seq))
				}
			}
		}
	}
	if err := forward(); err != nil {
		return p.fail("forwarding %d records to the collector: %v", len(r.keys), err)
	}
	p.mu.Lock()
	release := p.release
	p.requests = append(p.requests, r)
	i := len(p.requests) - 1
	p.mu.Unlock()
	if release != nil {
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	if ctx.Err() == nil && time.Until(deadline) > holdMargin {
		return nil
	}
	<-ctx.Done() // too close to berth's deadline to answer unambiguously
	p.mu.Lock()
	p.requests[i].abandoned = true
	p.mu.Unlock()
	return ctx.Err()
}

// slowGRPC serves OTLP/gRPC for the proxy.
type slowGRPC struct {
	collogpb.UnimplementedLogsServiceServer
	p *slowProxy
}

func (s slowGRPC) Export(ctx context.Context, req *collogpb.ExportLogsServiceRequest) (*collogpb.ExportLogsServiceResponse, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return nil, s.p.fail("a gRPC request without a deadline: otlp.timeout not applied")
	}
	var resp *collogpb.ExportLogsServiceResponse
	err := s.p.handle(ctx, req, deadline, func() error {
		fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		resp, err = s.p.upGRPC.Export(fctx, req)
		return err
	})
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return resp, nil
}

// serveHTTP serves OTLP/HTTP for the proxy: the body is forwarded as is.
func (p *slowProxy) serveHTTP(w http.ResponseWriter, r *http.Request) {
	deadline := time.Now().Add(p.timeout)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // berth went away
	}
	raw := body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err == nil {
			raw, err = io.ReadAll(zr)
		}
		if err != nil {
			http.Error(w, p.fail("gunzip: %v", err).Error(), http.StatusBadRequest)
			return
		}
	}
	req := &collogpb.ExportLogsServiceRequest{}
	if err := proto.Unmarshal(raw, req); err != nil {
		http.Error(w, p.fail("decode: %v", err).Error(), http.StatusBadRequest)
		return
	}
	var status int
	var respBody []byte
	var ctype string
	err = p.handle(r.Context(), req, deadline, func() error {
		up, err := http.NewRequest(http.MethodPost, p.upHTTP, bytes.NewReader(body))
		if err != nil {
			return err
		}
		up.Header.Set("Content-Type", r.Header.Get("Content-Type"))
		if ce := r.Header.Get("Content-Encoding"); ce != "" {
			up.Header.Set("Content-Encoding", ce)
		}
		resp, err := p.hc.Do(up)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		status, ctype = resp.StatusCode, resp.Header.Get("Content-Type")
		if respBody, err = io.ReadAll(resp.Body); err != nil {
			return err
		}
		if status != http.StatusOK {
			return fmt.Errorf("collector answered %d: %.200s", status, respBody)
		}
		return nil
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.WriteHeader(status)
	_, _ = w.Write(respBody)
}

// faultRun is what the two fault tests share: a collector, berth in front of
// it through a proxy, one container writing
// sequence-numbered lines, and the baseline taken before the fault.
type faultRun struct {
	col      *otelcolrun.Collector
	b        *Berth
	v        *otlpView
	c        *Ctr
	n        int
	base     otlpStatusDoc
	baseG    int
	baseFDs  int
	faultEnd time.Time
}

const (
	faultTimeout = 2 * time.Second
	// faultWindow is longer than the HTTP exporter's own retry of a
	// request (15 s, exporter.go) plus otlp.timeout, so that the fault
	// shows in berth's failure count over HTTP too.
	faultWindow = 20 * time.Second
	faultRate   = 100 // lines/s
	// resetTimeout is TestOTLPConnectionReset's otlp.timeout.
	resetTimeout = 30 * time.Second
)

func startCollector(t *testing.T) *otelcolrun.Collector {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	bin, err := otelcolrun.Build(ctx) // cached; a cold build takes minutes
	if err != nil {
		t.Fatal(err)
	}
	col, err := otelcolrun.Start(ctx, otelcolrun.Options{Dir: testDir(t), Binary: bin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = col.Stop(0)
		if t.Failed() {
			t.Logf("collector log %s (tail):\n%s", col.LogPath, tail(col.Log(), 30))
		}
	})
	return col
}

// openFDs is the "open_fds" figure of /status.
func (b *Berth) openFDs(t *testing.T) int {
	t.Helper()
	m, err := b.status()
	if err != nil {
		t.Fatalf("berth /status: %v", err)
	}
	n, ok := m["open_fds"].(float64)
	if !ok {
		t.Fatalf("berth /status has no numeric \"open_fds\": %v", m)
	}
	return int(n)
}

// runFault starts berth (its endpoint set by the caller, which also starts
// the collector), waits until it exports, starts the writer, takes the
// baseline, turns the fault on, waits until /status shows the failures
// (unhealthy, the failure count up) and until faultWindow has passed, and
// turns the fault off.
func runFault(t *testing.T, col *otelcolrun.Collector, endpoint, protocol string, timeout time.Duration, fault func(on bool)) *faultRun {
	t.Helper()
	// Only this test's containers: the daemon is shared, and others'
	// containers would move the goroutine and fd counts.
	u := uniqueName(t, "x") // berth-e2e-<test>-x-<6 hex digits>
	prefix := strings.TrimSuffix(u[:len(u)-6], "-x-")
	cfg := BerthConfig{Extra: append(otlpYAML(endpoint, protocol), "  timeout: "+quote(timeout.String()), "include:", "  - "+quote("name="+prefix+"-*"),
		"telemetry_otlp: false", "trace_sampling: 0", "backoff:", "  initial: 200ms", "  max: 1s")}
	f := &faultRun{col: col, v: collectorView(col.OutputPath)}
	f.b = startBerthOTLP(t, cfg, otlpRun{})
	waitReadyOTLP(t, f.b, f.v)
	// The writer runs through the fault and some 15 s after it.
	f.n = faultRate * (int(faultWindow/time.Second) + 25)
	f.c = runContainer(t, ContainerSpec{Name: uniqueName(t, "seq"), Args: []string{"-n", fmt.Sprint(f.n), "-rate", fmt.Sprint(faultRate)}})
	waitFor(t, "the writer's records at the collector", 30*time.Second, func() (bool, string) {
		f.v.poll(t)
		return f.v.count(f.c.Name) >= faultRate, fmt.Sprintf("%d records", f.v.count(f.c.Name))
	})
	f.baseG = f.b.stableGoroutines(t, 20*time.Second)
	f.baseFDs = f.b.openFDs(t)
	f.base = f.b.otlpStatus(t)

	fault(true)
	start := time.Now()
	var sawUnhealthy, lastErr string
	// The fault lasts its window, or until /status shows it if that takes
	// longer.
	waitFor(t, "berth's /status to show the failed exports", faultWindow+10*time.Second, func() (bool, string) {
		st := f.b.otlpStatus(t)
		if !st.Exporter.Healthy && sawUnhealthy == "" {
			sawUnhealthy = time.Since(start).Round(time.Millisecond).String()
			lastErr = st.Exporter.LastError
		}
		return sawUnhealthy != "" && st.Exporter.Failures > f.base.Exporter.Failures,
			fmt.Sprintf("healthy %v, failures %d (%d before), last error %q", st.Exporter.Healthy, st.Exporter.Failures, f.base.Exporter.Failures, st.Exporter.LastError)
	})
	t.Logf("/status unhealthy %s into the fault: %s", sawUnhealthy, lastErr)
	time.Sleep(time.Until(start.Add(faultWindow)))
	fault(false)
	f.faultEnd = time.Now()
	return f
}

// recover waits until berth has caught up (returning how long after the
// fault's end), then until every line is at the collector and /status is
// healthy, then until the goroutines and open FDs are back to their
// baseline (+2).
func (f *faultRun) recover(t *testing.T) (caughtUp time.Duration) {
	t.Helper()
	// Caught up: the collector holds a line written after the fault ended
	// and every line before it.
	if ok, state := waitUntil(90*time.Second, func() (bool, string) {
		f.v.poll(t)
		have := map[int]bool{}
		after := -1
		for _, r := range f.v.records(f.c.Name) {
			p, ok := lines.Parse(r.Body)
			ts, err := time.Parse(time.RFC3339Nano, r.Timestamp)
			if !ok || err != nil {
				continue
			}
			have[p.Seq] = true
			if !ts.Before(f.faultEnd) && (after < 0 || p.Seq < after) {
				after = p.Seq
			}
		}
		for q := range after {
			if !have[q] {
				return false, fmt.Sprintf("seq %d missing, %d written after the fault", q, after)
			}
		}
		return after >= 0, fmt.Sprintf("%d seqs, none written after the fault", len(have))
	}); !ok {
		t.Fatalf("berth did not catch up within 90 s of the fault's end: %s", state)
	}
	caughtUp = time.Since(f.faultEnd)
	// Every line: distinct sequence numbers (a count of records would be
	// reached early by the duplicates of a slow backend).
	waitFor(t, fmt.Sprintf("each of the %d lines at the collector", f.n), 90*time.Second, func() (bool, string) {
		f.v.poll(t)
		f.b.checkAlive(t)
		have := map[int]bool{}
		for _, r := range f.v.records(f.c.Name) {
			if p, ok := lines.Parse(r.Body); ok && p.Seq < f.n {
				have[p.Seq] = true
			}
		}
		return len(have) == f.n, fmt.Sprintf("%d of %d distinct lines", len(have), f.n)
	})
	waitFor(t, "berth healthy, nothing in flight", 30*time.Second, func() (bool, string) {
		st := f.b.otlpStatus(t)
		return st.Exporter.Healthy && st.Exporter.InFlightBytes == 0, fmt.Sprintf("%+v", st.Exporter)
	})
	var g, fds int
	if ok, state := waitUntil(30*time.Second, func() (bool, string) {
		g, fds = f.b.goroutines(t), f.b.openFDs(t)
		return g <= f.baseG+2 && fds <= f.baseFDs+2, fmt.Sprintf("goroutines %d, open fds %d", g, fds)
	}); !ok {
		t.Errorf("goroutines and open fds not back to the baseline (%d, %d) + 2 30 s after the catch-up: %s", f.baseG, f.baseFDs, state)
	}
	t.Logf("goroutines %d before the fault, %d after; open fds %d before, %d after", f.baseG, g, f.baseFDs, fds)
	return caughtUp
}

// finalCounts stops berth and the collector and counts the writer's records
// per sequence number in the collector's whole output.
func (f *faultRun) finalCounts(t *testing.T) (counts map[int]int, failures int64) {
	t.Helper()
	f.c.waitExited(t, time.Minute)
	st := f.b.otlpStatus(t)
	f.b.stopOTLP(t)
	if err := f.col.Stop(0); err != nil {
		t.Errorf("stopping the collector: %v", err)
	}
	final := collectorView(f.col.OutputPath)
	final.poll(t)
	counts = map[int]int{}
	for _, k := range seqsOf(t, final.records(f.c.Name)) {
		counts[k.Seq]++
	}
	if st.Exporter.Rejected != f.base.Exporter.Rejected {
		t.Errorf("berth rejected %d records", st.Exporter.Rejected-f.base.Exporter.Rejected)
	}
	return counts, st.Exporter.Failures - f.base.Exporter.Failures
}

// TestOTLPSlowBackend: a proxy between berth (otlp.timeout 2s) and the
// collector holds the collector's answers for 20 s (the requests reach the
// collector, which takes them; the answers come after berth gave up), while
// a container writes 100 numbered lines/s. berth's /status shows the
// failures (healthy false, the failure count up) during the window. After
// it, every line arrives; the collector holds each line once plus once per
// request that held it and that berth abandoned (the proxy answers each
// request unambiguously in time or not at all, so this count is exact);
// over gRPC each abandoned request is one failed export attempt in /status,
// over HTTP (whose exporter retries a request itself for up to 15 s) at
// least one and at most that many; goroutines and open fds are back to their
// baseline.
func TestOTLPSlowBackend(t *testing.T) {
	needDocker(t)
	for _, protocol := range []string{"grpc", "http/protobuf"} {
		t.Run(strings.Split(protocol, "/")[0], func(t *testing.T) {
			col := startCollector(t)
			p := startSlowProxy(t, col, faultTimeout)
			f := runFault(t, col, p.endpoint(protocol), protocol, faultTimeout, p.setHolding)
			caughtUp := f.recover(t)
			counts, failures := f.finalCounts(t)
			reqs, errs := p.snapshot()
			if len(errs) > 0 {
				t.Fatalf("the proxy failed: %s", strings.Join(errs, "; "))
			}
			want := map[int]int{}
			for q := range f.n {
				want[q] = 1
			}
			abandoned, dups := 0, 0
			prefix := f.c.Name + " "
			for _, r := range reqs {
				if !r.abandoned {
					continue
				}
				abandoned++
				for _, k := range r.keys {
					if seq, ok := strings.CutPrefix(k, prefix); ok {
						var q int
						fmt.Sscan(seq, &q)
						want[q]++
						dups++
					}
				}
			}
			var missing, wrong []string
			for q := range f.n {
				if counts[q] == 0 {
					missing = append(missing, fmt.Sprint(q))
				} else if counts[q] != want[q] {
					wrong = append(wrong, fmt.Sprintf("%d: %d (want %d)", q, counts[q], want[q]))
				}
			}
			if len(missing) > 0 || len(wrong) > 0 || len(counts) != f.n {
				t.Fatalf("at the collector: %d seqs missing (%s), %d with another count than once plus once per abandoned request (%s), %d distinct seqs (want %d)",
					len(missing), head(missing, 20), len(wrong), head(wrong, 20), len(counts), f.n)
			}
			if abandoned == 0 {
				t.Fatalf("no request abandoned by berth in a %v hold with otlp.timeout %v", faultWindow, faultTimeout)
			}
			if protocol == "grpc" && failures != int64(abandoned) || failures < 1 || failures > int64(abandoned) {
				t.Errorf("%d failed export attempts in /status for %d abandoned requests", failures, abandoned)
			}
			t.Logf("figure: %s, answers held %v with otlp.timeout %v: %d lines each at the collector, %d requests forwarded, %d abandoned by berth (answered too late), %d records received twice or more (exactly those), %d failed attempts in /status; caught up %v after the hold",
				protocol, faultWindow, faultTimeout, f.n, len(reqs), abandoned, dups, failures, caughtUp.Round(time.Millisecond))
		})
	}
}

// TestOTLPConnectionReset: a TCP proxy between berth (otlp.timeout 30s) and
// the collector resets every connection in the middle of a request's body
// (half of the body forwarded, then RST both ways) for 20 s, while a
// container writes 100 numbered lines/s; /status shows the failures. After
// it, every line arrives exactly once (the collector never held a cut
// request whole), and goroutines and open fds are back to their baseline.
func TestOTLPConnectionReset(t *testing.T) {
	needDocker(t)
	for _, protocol := range []string{"grpc", "http/protobuf"} {
		t.Run(strings.Split(protocol, "/")[0], func(t *testing.T) {
			col := startCollector(t)
			upstream, framing := col.GRPCAddr, faultproxy.HTTP2
			if protocol != "grpc" {
				upstream, framing = col.HTTPAddr, faultproxy.HTTP1
			}
			px, err := faultproxy.Start(upstream, framing)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = px.Close() })
			// otlp.timeout is longer than the exporter's own retries (15
			// s): no attempt ends by its deadline, so no request can be
			// taken by the collector and answered too late (the slow
			// backend's duplicate), and each line must arrive once.
			f := runFault(t, col, "http://"+px.Addr(), protocol, resetTimeout, func(on bool) {
				if on {
					px.Cut(faultproxy.CutAll)
				} else {
					px.Cut(0)
				}
			})
			cut := px.Stats().Cut
			caughtUp := f.recover(t)
			counts, failures := f.finalCounts(t)
			var missing, dup []string
			for q := range f.n {
				switch counts[q] {
				case 0:
					missing = append(missing, fmt.Sprint(q))
				case 1:
				default:
					dup = append(dup, fmt.Sprintf("%d (x%d)", q, counts[q]))
				}
			}
			if len(missing) > 0 || len(dup) > 0 || len(counts) != f.n {
				t.Fatalf("at the collector: %d seqs missing (%s), %d duplicated (%s), %d distinct (want %d)",
					len(missing), head(missing, 20), len(dup), head(dup, 20), len(counts), f.n)
			}
			if cut < 2 {
				t.Fatalf("the proxy cut %d requests in %v", cut, faultWindow)
			}
			st := px.Stats()
			if st.Open > 1 {
				t.Errorf("%d connections open through the proxy at the end, want at most 1", st.Open)
			}
			t.Logf("figure: %s, connections reset mid-request for %v: %d lines each exactly once at the collector, %d requests cut on %d connections, %d failed attempts in /status; caught up %v after the fault",
				protocol, faultWindow, f.n, cut, st.Conns, failures, caughtUp.Round(time.Millisecond))
		})
	}
}
