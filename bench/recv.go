package main

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // berth sends gzip by default
	"google.golang.org/protobuf/proto"
)

// receiver is an OTLP logs receiver on 127.0.0.1 (gRPC and HTTP/protobuf)
// that acknowledges every request at once and checks every record's
// sequence number: per generator run, each number once, none missing
// (check). It keeps no record.
type receiver struct {
	collogpb.UnimplementedLogsServiceServer

	grpcLn, httpLn net.Listener
	grpcSrv        *grpc.Server
	httpSrv        *http.Server
	wg             sync.WaitGroup

	mu      sync.Mutex
	runs    map[string][]bool // run id -> seen sequence numbers
	total   int64
	dups    int64
	bad     []string // first few records that are not generator lines
	latency bool
	lat     []time.Duration // Docker's timestamp to receipt, when latency is on
}

func startReceiver() (*receiver, error) {
	r := &receiver{runs: map[string][]bool{}}
	var err error
	if r.grpcLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("receiver: %w", err)
	}
	if r.httpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		r.grpcLn.Close()
		return nil, fmt.Errorf("receiver: %w", err)
	}
	r.grpcSrv = grpc.NewServer(grpc.MaxRecvMsgSize(16 << 20))
	collogpb.RegisterLogsServiceServer(r.grpcSrv, r)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/logs", r.serveHTTP)
	r.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: time.Minute}
	r.wg.Add(2)
	go func() { defer r.wg.Done(); _ = r.grpcSrv.Serve(r.grpcLn) }()
	go func() { defer r.wg.Done(); _ = r.httpSrv.Serve(r.httpLn) }()
	return r, nil
}

func (r *receiver) grpcAddr() string { return r.grpcLn.Addr().String() }
func (r *receiver) httpAddr() string { return r.httpLn.Addr().String() }

func (r *receiver) close() {
	r.grpcSrv.Stop()
	ctx, cancel := dctx(5 * time.Second)
	defer cancel()
	_ = r.httpSrv.Shutdown(ctx)
	r.wg.Wait()
}

// reset forgets every count, and turns the latency figures on or off.
func (r *receiver) reset(latency bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs, r.total, r.dups, r.bad, r.latency, r.lat = map[string][]bool{}, 0, 0, nil, latency, nil
}

// Export is the gRPC LogsService.
func (r *receiver) Export(_ context.Context, req *collogpb.ExportLogsServiceRequest) (*collogpb.ExportLogsServiceResponse, error) {
	r.take(req)
	return &collogpb.ExportLogsServiceResponse{}, nil
}

func (r *receiver) serveHTTP(w http.ResponseWriter, hr *http.Request) {
	var body io.Reader = hr.Body
	if hr.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(hr.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		defer zr.Close()
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req := &collogpb.ExportLogsServiceRequest{}
	if err := proto.Unmarshal(data, req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.take(req)
	resp, _ := proto.Marshal(&collogpb.ExportLogsServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(resp)
}

// take counts and checks the records of one request.
func (r *receiver) take(req *collogpb.ExportLogsServiceRequest) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rl := range req.GetResourceLogs() {
		for _, sl := range rl.GetScopeLogs() {
			for _, lr := range sl.GetLogRecords() {
				r.total++
				run, seq, ok := parseLine(lr.GetBody().GetStringValue())
				if !ok {
					if len(r.bad) < 5 {
						r.bad = append(r.bad, fmt.Sprintf("%.120q", lr.GetBody().GetStringValue()))
					}
					continue
				}
				seen := r.runs[run]
				if seq >= len(seen) {
					seen = append(seen, make([]bool, seq+1-len(seen)+len(seen)/2)...)
					r.runs[run] = seen
				}
				if seen[seq] {
					r.dups++
				}
				seen[seq] = true
				if r.latency && lr.GetTimeUnixNano() > 0 {
					r.lat = append(r.lat, now.Sub(time.Unix(0, int64(lr.GetTimeUnixNano()))))
				}
			}
		}
	}
}

// count returns the records received since reset.
func (r *receiver) count() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

// check reports an error unless exactly runs generator runs arrived, each
// with sequence numbers 0 to perRun-1 once each, and nothing else.
func (r *receiver) check(runs, perRun int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	if len(r.bad) > 0 {
		errs = append(errs, fmt.Errorf("records that are not generator lines: %v", r.bad))
	}
	if r.dups > 0 {
		errs = append(errs, fmt.Errorf("%d duplicate records", r.dups))
	}
	if len(r.runs) != runs {
		errs = append(errs, fmt.Errorf("%d generator runs, want %d", len(r.runs), runs))
	}
	for run, seen := range r.runs {
		n, first := 0, -1
		for i, s := range seen {
			if s {
				n++
				if i >= perRun {
					errs = append(errs, fmt.Errorf("run %s: sequence number %d, want < %d", run, i, perRun))
					break
				}
			} else if i < perRun && first < 0 {
				first = i
			}
		}
		if n < perRun && first < 0 {
			first = len(seen)
		}
		if n != perRun {
			errs = append(errs, fmt.Errorf("run %s: %d distinct sequence numbers, want %d (first missing: %d)", run, n, perRun, first))
		}
	}
	if r.total != int64(runs*perRun) {
		errs = append(errs, fmt.Errorf("%d records, want %d", r.total, runs*perRun))
	}
	return errors.Join(errs...)
}

// latencies returns p50 and p99 of the latency figures.
func (r *receiver) latencies() (p50, p99 time.Duration, n int) {
	r.mu.Lock()
	l := slices.Clone(r.lat)
	r.mu.Unlock()
	if len(l) == 0 {
		return 0, 0, 0
	}
	slices.Sort(l)
	return l[len(l)*50/100], l[min(len(l)-1, len(l)*99/100)], len(l)
}

// parseLine reads "run=<id> stream=<out|err> seq=<n>" from the head of a
// generator line (e2e/internal/lines).
func parseLine(s string) (run string, seq int, ok bool) {
	if !strings.HasPrefix(s, "run=") {
		return "", 0, false
	}
	sp := strings.IndexByte(s, ' ')
	if sp < 0 {
		return "", 0, false
	}
	run = s[4:sp]
	i := strings.Index(s[sp:], " seq=")
	if i < 0 {
		return "", 0, false
	}
	rest := s[sp+i+5:]
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	n, err := strconv.Atoi(rest[:end])
	if err != nil {
		return "", 0, false
	}
	return run, n, true
}
