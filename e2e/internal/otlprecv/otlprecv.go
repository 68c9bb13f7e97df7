// Package otlprecv is an in-test OTLP logs receiver for berth's tests.
//
// It serves the OTLP logs service over gRPC (LogsService/Export on
// google.golang.org/grpc, gzip accepted) and over HTTP/protobuf (POST /v1/logs
// with an application/x-protobuf body, optionally Content-Encoding: gzip), each
// on its own free port on 127.0.0.1. Every log record it accepts is kept in
// memory, flattened into a Record, together with counters (Stats) and one
// RequestInfo per export request.
//
// It fails on demand:
//
//   - FailUnavailable(until): every export before until is refused as
//     retryable: gRPC codes.Unavailable, HTTP 503. With SetRetryAfter(d > 0)
//     the refusal carries a throttling hint: a google.rpc.RetryInfo detail
//     (retry_delay d) over gRPC, a Retry-After header (d rounded up to whole
//     seconds) over HTTP.
//   - RejectNext(n): the next n export requests are refused as invalid, not
//     retryable: gRPC codes.InvalidArgument, HTTP 400. They are counted as
//     rejected batches and their records as rejected records.
//
// A refused request stores nothing. Error responses over HTTP carry a
// protobuf google.rpc.Status body, as the OTLP specification asks.
//
// Every goroutine it starts is owned: Close stops both servers and waits for
// them.
package otlprecv

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // accept gzip-compressed gRPC requests
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/berthlog/berth/e2e/internal/logrecord"
)

// Transport names, as found in Record.Transport and RequestInfo.Transport.
const (
	GRPC = "grpc"
	HTTP = "http"
)

// Outcomes of an export request, as found in RequestInfo.Outcome.
const (
	OutcomeOK          = "ok"          // stored
	OutcomeUnavailable = "unavailable" // refused by FailUnavailable
	OutcomeRejected    = "rejected"    // refused by RejectNext
	OutcomeBad         = "bad"         // undecodable request (HTTP 400 / 415, not counted as rejected)
)

// Record is one log record the receiver accepted, with the transport it
// came over.
type Record struct {
	Transport string // GRPC or HTTP
	logrecord.Record
}

// RequestInfo describes one export request the receiver answered.
type RequestInfo struct {
	Transport   string
	Time        time.Time
	Compression string              // "gzip" or ""
	Headers     map[string][]string // HTTP headers, or gRPC metadata (lower-case keys)
	Records     int                 // log records in the request (0 if undecodable)
	Bytes       int                 // the request's encoded size, uncompressed (0 if undecodable)
	Outcome     string              // OutcomeOK, OutcomeUnavailable, OutcomeRejected, OutcomeBad
}

// Stats are the receiver's counters.
type Stats struct {
	Requests        int // export requests answered, all outcomes
	Batches         int // requests accepted and stored
	Records         int // records stored
	Unavailable     int // requests refused by FailUnavailable
	RejectedBatches int // requests refused by RejectNext
	RejectedRecords int // records in those requests
	Bad             int // undecodable requests
	GRPCRequests    int
	HTTPRequests    int
	GzipRequests    int // requests that arrived gzip-compressed
}

// Receiver is a running OTLP logs receiver. Its methods are safe for
// concurrent use.
type Receiver struct {
	grpcLis net.Listener
	httpLis net.Listener
	grpcSrv *grpc.Server
	httpSrv *http.Server
	wg      sync.WaitGroup

	mu          sync.Mutex
	changed     chan struct{} // closed and replaced after every request answered
	records     []Record
	requests    []RequestInfo
	stats       Stats
	unavailUtil time.Time
	retryAfter  time.Duration
	rejectNext  int
	closed      bool
	closeErr    error
}

// Start starts a receiver with gRPC and HTTP listeners on free ports of
// 127.0.0.1. Close it when done.
func Start() (*Receiver, error) {
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("otlprecv: listen grpc: %w", err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		gl.Close()
		return nil, fmt.Errorf("otlprecv: listen http: %w", err)
	}
	r := &Receiver{grpcLis: gl, httpLis: hl, changed: make(chan struct{})}

	r.grpcSrv = grpc.NewServer(grpc.StatsHandler(compressionTagger{}))
	collogpb.RegisterLogsServiceServer(r.grpcSrv, &grpcService{r: r})

	mux := http.NewServeMux()
	mux.HandleFunc("/v1/logs", r.serveHTTP)
	r.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		_ = r.grpcSrv.Serve(gl) // returns when Stop is called
	}()
	go func() {
		defer r.wg.Done()
		_ = r.httpSrv.Serve(hl) // returns http.ErrServerClosed on Close
	}()
	return r, nil
}

// GRPCAddr is the gRPC listener's address, "127.0.0.1:port" (what
// otlploggrpc.WithEndpoint takes, with WithInsecure).
func (r *Receiver) GRPCAddr() string { return r.grpcLis.Addr().String() }

// HTTPAddr is the HTTP listener's address, "127.0.0.1:port" (what
// otlploghttp.WithEndpoint takes, with WithInsecure).
func (r *Receiver) HTTPAddr() string { return r.httpLis.Addr().String() }

// GRPCEndpoint is "http://127.0.0.1:port", for OTEL_EXPORTER_OTLP_ENDPOINT
// with protocol grpc.
func (r *Receiver) GRPCEndpoint() string { return "http://" + r.GRPCAddr() }

// HTTPEndpoint is "http://127.0.0.1:port", for OTEL_EXPORTER_OTLP_ENDPOINT
// with protocol http/protobuf (the exporter appends /v1/logs).
func (r *Receiver) HTTPEndpoint() string { return "http://" + r.HTTPAddr() }

// Close stops both servers, closing their connections at once, and waits for
// every goroutine the receiver started. Stored records stay readable.
func (r *Receiver) Close() error {
	r.mu.Lock()
	if r.closed {
		err := r.closeErr
		r.mu.Unlock()
		return err
	}
	r.closed = true
	r.mu.Unlock()

	r.grpcSrv.Stop()
	err := r.httpSrv.Close()
	r.wg.Wait()

	r.mu.Lock()
	r.closeErr = err
	r.mu.Unlock()
	return err
}

// FailUnavailable makes every export request answered before until fail as
// retryable (gRPC Unavailable, HTTP 503). A zero or past until ends it.
func (r *Receiver) FailUnavailable(until time.Time) {
	r.mu.Lock()
	r.unavailUtil = until
	r.mu.Unlock()
}

// SetRetryAfter sets the throttling hint of FailUnavailable's refusals:
// d > 0 adds a RetryInfo detail with retry_delay d (gRPC) and a Retry-After
// header of d rounded up to whole seconds (HTTP); d <= 0 (the default) sends
// no hint, leaving the client to its own backoff.
func (r *Receiver) SetRetryAfter(d time.Duration) {
	r.mu.Lock()
	r.retryAfter = d
	r.mu.Unlock()
}

// RejectNext makes the next n export requests fail as invalid (gRPC
// InvalidArgument, HTTP 400), counted in Stats.RejectedBatches. It replaces
// any count still pending; n <= 0 cancels it. Rejection is checked after
// FailUnavailable: a request refused as unavailable does not use one up.
func (r *Receiver) RejectNext(n int) {
	r.mu.Lock()
	r.rejectNext = max(n, 0)
	r.mu.Unlock()
}

// Records returns a copy of the records stored so far, in arrival order.
// The maps are shared with the receiver and must not be modified.
func (r *Receiver) Records() []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Record(nil), r.records...)
}

// Requests returns a copy of the export requests answered so far.
func (r *Receiver) Requests() []RequestInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]RequestInfo(nil), r.requests...)
}

// Stats returns the counters.
func (r *Receiver) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// Count is the number of records stored.
func (r *Receiver) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.records)
}

// WaitRecords waits until at least n records are stored, or ctx is done. It
// returns ctx's error, with the count reached, in the latter case.
func (r *Receiver) WaitRecords(ctx context.Context, n int) error {
	err := r.WaitFor(ctx, func(s Stats) bool { return s.Records >= n })
	if err != nil {
		return fmt.Errorf("otlprecv: %d of %d records: %w", r.Count(), n, ctx.Err())
	}
	return nil
}

// WaitFor waits until cond holds for the counters, or ctx is done. cond is
// checked now and after every request the receiver answers.
func (r *Receiver) WaitFor(ctx context.Context, cond func(Stats) bool) error {
	for {
		r.mu.Lock()
		st, ch := r.stats, r.changed
		r.mu.Unlock()
		if cond(st) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Reset forgets the stored records, requests and counters, and ends any
// FailUnavailable or RejectNext in force. The SetRetryAfter hint stays.
func (r *Receiver) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records, r.requests, r.stats = nil, nil, Stats{}
	r.unavailUtil, r.rejectNext = time.Time{}, 0
}

// verdict decides the outcome of a decoded request, counts it and, when it is
// accepted, stores its records. It returns the outcome and the retry hint.
func (r *Receiver) verdict(info RequestInfo, req *collogpb.ExportLogsServiceRequest) (string, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	info.Outcome = OutcomeOK
	switch {
	case time.Now().Before(r.unavailUtil):
		info.Outcome = OutcomeUnavailable
		r.stats.Unavailable++
	case r.rejectNext > 0:
		r.rejectNext--
		info.Outcome = OutcomeRejected
		r.stats.RejectedBatches++
		r.stats.RejectedRecords += info.Records
	default:
		r.stats.Batches++
		r.stats.Records += info.Records
		r.records = flatten(r.records, info.Transport, req)
	}
	r.countLocked(info)
	return info.Outcome, r.retryAfter
}

func (r *Receiver) countBad(info RequestInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	info.Outcome = OutcomeBad
	r.stats.Bad++
	r.countLocked(info)
}

func (r *Receiver) countLocked(info RequestInfo) {
	defer func() {
		close(r.changed)
		r.changed = make(chan struct{})
	}()
	r.requests = append(r.requests, info)
	r.stats.Requests++
	switch info.Transport {
	case GRPC:
		r.stats.GRPCRequests++
	case HTTP:
		r.stats.HTTPRequests++
	}
	if info.Compression == "gzip" {
		r.stats.GzipRequests++
	}
}

func countRecords(req *collogpb.ExportLogsServiceRequest) int {
	n := 0
	for _, rl := range req.GetResourceLogs() {
		for _, sl := range rl.GetScopeLogs() {
			n += len(sl.GetLogRecords())
		}
	}
	return n
}

func flatten(dst []Record, transport string, req *collogpb.ExportLogsServiceRequest) []Record {
	for _, rl := range req.GetResourceLogs() {
		res := attrMap(rl.GetResource().GetAttributes())
		for _, sl := range rl.GetScopeLogs() {
			scope := sl.GetScope().GetName()
			for _, lr := range sl.GetLogRecords() {
				rec := Record{Transport: transport, Record: logrecord.Record{
					Resource:             res,
					Scope:                scope,
					Attributes:           attrMap(lr.GetAttributes()),
					TimeUnixNano:         lr.GetTimeUnixNano(),
					ObservedTimeUnixNano: lr.GetObservedTimeUnixNano(),
					SeverityNumber:       int32(lr.GetSeverityNumber()),
					SeverityText:         lr.GetSeverityText(),
					EventName:            lr.GetEventName(),
				}}
				if id := lr.GetTraceId(); len(id) > 0 {
					rec.TraceID = hex.EncodeToString(id)
				}
				if id := lr.GetSpanId(); len(id) > 0 {
					rec.SpanID = hex.EncodeToString(id)
				}
				if b := lr.GetBody(); b != nil {
					switch v := b.GetValue().(type) {
					case *commonpb.AnyValue_StringValue:
						rec.Body, rec.BodyKind = v.StringValue, "string"
					case *commonpb.AnyValue_BytesValue:
						rec.BodyBytes, rec.BodyKind = v.BytesValue, "bytes"
					case nil:
					default:
						rec.Body, rec.BodyKind = fmt.Sprint(Value(b)), kind(b)
					}
				}
				dst = append(dst, rec)
			}
		}
	}
	return dst
}

func kind(v *commonpb.AnyValue) string {
	switch v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return "string"
	case *commonpb.AnyValue_BytesValue:
		return "bytes"
	case *commonpb.AnyValue_IntValue:
		return "int"
	case *commonpb.AnyValue_DoubleValue:
		return "double"
	case *commonpb.AnyValue_BoolValue:
		return "bool"
	case *commonpb.AnyValue_ArrayValue:
		return "array"
	case *commonpb.AnyValue_KvlistValue:
		return "kvlist"
	}
	return ""
}

func attrMap(kvs []*commonpb.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = Value(kv.GetValue())
	}
	return m
}

// Value converts an OTLP AnyValue to Go: string, []byte, int64, float64,
// bool, []any, map[string]any, or nil.
func Value(v *commonpb.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BytesValue:
		return x.BytesValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_ArrayValue:
		out := make([]any, 0, len(x.ArrayValue.GetValues()))
		for _, e := range x.ArrayValue.GetValues() {
			out = append(out, Value(e))
		}
		return out
	case *commonpb.AnyValue_KvlistValue:
		return attrMap(x.KvlistValue.GetValues())
	}
	return nil
}

// gRPC

type grpcService struct {
	collogpb.UnimplementedLogsServiceServer
	r *Receiver
}

type compressionKey struct{}

// compressionTagger records the request compression of each RPC, which gRPC
// does not expose to handlers, in a *string in the RPC's context.
type compressionTagger struct{}

func (compressionTagger) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, compressionKey{}, new(string))
}

func (compressionTagger) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if h, ok := s.(*stats.InHeader); ok && !h.Client {
		if p, ok := ctx.Value(compressionKey{}).(*string); ok {
			*p = h.Compression
		}
	}
}

func (compressionTagger) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (compressionTagger) HandleConn(context.Context, stats.ConnStats) {}

func (s *grpcService) Export(ctx context.Context, req *collogpb.ExportLogsServiceRequest) (*collogpb.ExportLogsServiceResponse, error) {
	info := RequestInfo{Transport: GRPC, Time: time.Now(), Records: countRecords(req), Bytes: proto.Size(req)}
	if p, ok := ctx.Value(compressionKey{}).(*string); ok {
		info.Compression = *p
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		info.Headers = map[string][]string(md.Copy())
	}
	switch outcome, retry := s.r.verdict(info, req); outcome {
	case OutcomeUnavailable:
		st := status.New(codes.Unavailable, "otlprecv: unavailable (FailUnavailable)")
		if retry > 0 {
			if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)}); err == nil {
				st = d
			}
		}
		return nil, st.Err()
	case OutcomeRejected:
		return nil, status.Error(codes.InvalidArgument, "otlprecv: rejected (RejectNext)")
	}
	return &collogpb.ExportLogsServiceResponse{}, nil
}

// HTTP

const maxBody = 64 << 20

func (r *Receiver) serveHTTP(w http.ResponseWriter, req *http.Request) {
	info := RequestInfo{
		Transport:   HTTP,
		Time:        time.Now(),
		Compression: req.Header.Get("Content-Encoding"),
		Headers:     req.Header.Clone(),
	}
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeStatus(w, http.StatusMethodNotAllowed, codes.Unimplemented, "otlprecv: POST only")
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		r.countBad(info)
		writeStatus(w, http.StatusUnsupportedMediaType, codes.InvalidArgument, "otlprecv: unsupported content type "+strconv.Quote(ct))
		return
	}
	var body io.Reader = http.MaxBytesReader(w, req.Body, maxBody)
	switch info.Compression {
	case "", "identity":
		info.Compression = ""
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			r.countBad(info)
			writeStatus(w, http.StatusBadRequest, codes.InvalidArgument, "otlprecv: gzip: "+err.Error())
			return
		}
		defer zr.Close()
		body = io.LimitReader(zr, maxBody+1)
	default:
		r.countBad(info)
		writeStatus(w, http.StatusUnsupportedMediaType, codes.InvalidArgument, "otlprecv: unsupported content encoding "+strconv.Quote(info.Compression))
		return
	}
	raw, err := io.ReadAll(body)
	if err == nil && len(raw) > maxBody {
		err = errors.New("body too large")
	}
	if err != nil {
		r.countBad(info)
		writeStatus(w, http.StatusBadRequest, codes.InvalidArgument, "otlprecv: read body: "+err.Error())
		return
	}
	var msg collogpb.ExportLogsServiceRequest
	if err := proto.Unmarshal(raw, &msg); err != nil {
		r.countBad(info)
		writeStatus(w, http.StatusBadRequest, codes.InvalidArgument, "otlprecv: decode: "+err.Error())
		return
	}
	info.Records = countRecords(&msg)
	info.Bytes = len(raw)

	switch outcome, retry := r.verdict(info, &msg); outcome {
	case OutcomeUnavailable:
		if retry > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(retry.Seconds())), 10))
		}
		writeStatus(w, http.StatusServiceUnavailable, codes.Unavailable, "otlprecv: unavailable (FailUnavailable)")
		return
	case OutcomeRejected:
		writeStatus(w, http.StatusBadRequest, codes.InvalidArgument, "otlprecv: rejected (RejectNext)")
		return
	}
	out, _ := proto.Marshal(&collogpb.ExportLogsServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(w, bytes.NewReader(out))
}

// writeStatus writes an OTLP/HTTP error response: a protobuf google.rpc.Status.
func writeStatus(w http.ResponseWriter, httpCode int, code codes.Code, msg string) {
	out, _ := proto.Marshal(status.New(code, msg).Proto())
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(httpCode)
	_, _ = w.Write(out)
}
