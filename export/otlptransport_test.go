package export

import (
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/telemetry"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// TestResolveExporter: the config's keys, then OTEL_EXPORTER_OTLP_LOGS_*,
// then OTEL_EXPORTER_OTLP_*, then the specification's defaults.
func TestResolveExporter(t *testing.T) {
	tests := []struct {
		name     string
		c        config.OTLP
		env      map[string]string
		protocol string
		want     exporterConfig
	}{
		{"http URL", config.OTLP{Endpoint: "http://col:4318"}, nil, "http/protobuf",
			exporterConfig{host: "col:4318", path: "/v1/logs", insecure: true, gzip: true, timeout: 10 * time.Second}},
		{"https URL with a path", config.OTLP{Endpoint: "https://col/otlp"}, nil, "http/protobuf",
			exporterConfig{host: "col", path: "/otlp/v1/logs", gzip: true, timeout: 10 * time.Second}},
		{"host:port is TLS unless insecure", config.OTLP{Endpoint: "col:4317"}, nil, "grpc",
			exporterConfig{host: "col:4317", path: "/v1/logs", gzip: true, timeout: 10 * time.Second}},
		{"host:port insecure", config.OTLP{Endpoint: "col:4317", Insecure: true, Compression: "none", Timeout: time.Second}, nil, "grpc",
			exporterConfig{host: "col:4317", path: "/v1/logs", insecure: true, timeout: time.Second}},
		{"general variable gets the signal path", config.OTLP{}, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://col:4318/base"}, "http/protobuf",
			exporterConfig{host: "col:4318", path: "/base/v1/logs", insecure: true, gzip: true, timeout: 10 * time.Second}},
		{"logs variable is used as is and wins", config.OTLP{}, map[string]string{
			"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "https://logs:443/custom", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://col:4318"}, "http/protobuf",
			exporterConfig{host: "logs:443", path: "/custom", gzip: true, timeout: 10 * time.Second}},
		{"variables for headers, compression, timeout, insecure", config.OTLP{Endpoint: "col:4317"}, map[string]string{
			"OTEL_EXPORTER_OTLP_HEADERS": "a=1,b=x%20y", "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION": "none", "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
			"OTEL_EXPORTER_OTLP_TIMEOUT": "2500", "OTEL_EXPORTER_OTLP_INSECURE": "TRUE"}, "grpc",
			exporterConfig{host: "col:4317", path: "/v1/logs", insecure: true, headers: map[string]string{"a": "1", "b": "x y"}, timeout: 2500 * time.Millisecond}},
		{"the config's headers replace the variable's", config.OTLP{Endpoint: "col:4317", Headers: map[string]string{"c": "3"}}, map[string]string{
			"OTEL_EXPORTER_OTLP_LOGS_HEADERS": "a=1"}, "grpc",
			exporterConfig{host: "col:4317", path: "/v1/logs", headers: map[string]string{"c": "3"}, gzip: true, timeout: 10 * time.Second}},
		{"defaults", config.OTLP{}, nil, "grpc",
			exporterConfig{host: "localhost:4317", path: "/v1/logs", gzip: true, timeout: 10 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolveExporter(tt.c, func(k string) string { return tt.env[k] }, tt.protocol)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	for name, env := range map[string]map[string]string{
		"bad compression": {"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"},
		"bad timeout":     {"OTEL_EXPORTER_OTLP_TIMEOUT": "10s"},
		"bad insecure":    {"OTEL_EXPORTER_OTLP_INSECURE": "yes"},
		"missing CA file": {"OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent/ca.pem"},
		"bad header":      {"OTEL_EXPORTER_OTLP_HEADERS": "novalue"},
	} {
		if _, err := resolveExporter(config.OTLP{Endpoint: "col:4317"}, func(k string) string { return env[k] }, "grpc"); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// testRequest is an encoded request of three records of one container.
func testRequest(t *testing.T) []byte {
	t.Helper()
	s := newTestSink(t, discardExporter{}, nil, telemetry.NopSettings())
	it := s.encode(batchOf(testMeta, 1, "a", "b", "c"), 0)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s.encodeRequest([]segment{{it, 0, 3}})
}

// TestHTTPExporter: the body arrives gzip-compressed with the headers, and
// each answer is what the sink classifies.
func TestHTTPExporter(t *testing.T) {
	body := testRequest(t)
	var mu sync.Mutex
	var answer func(w http.ResponseWriter)
	var got []byte
	var hdr http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		b, err := io.ReadAll(zr)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		mu.Lock()
		got, hdr = b, r.Header.Clone()
		a := answer
		mu.Unlock()
		a(w)
	}))
	defer srv.Close()
	exp, err := NewOTLPExporter(context.Background(), config.OTLP{Endpoint: srv.URL, Headers: map[string]string{"X-Tenant": "t1"}}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	defer exp.Shutdown(context.Background())
	partial, _ := proto.Marshal(&collogspb.ExportLogsServiceResponse{PartialSuccess: &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: 2, ErrorMessage: "too old"}})
	for _, tc := range []struct {
		name   string
		answer func(w http.ResponseWriter)
		check  func(err error) bool
	}{
		{"accepted", func(w http.ResponseWriter) { w.Header().Set("Content-Type", "application/x-protobuf") },
			func(err error) bool { return err == nil }},
		{"partial success", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/x-protobuf")
			_, _ = w.Write(partial)
		}, func(err error) bool {
			ps, ok := err.(*PartialSuccess)
			return ok && ps.Rejected == 2 && ps.Message == "too old"
		}},
		{"413", func(w http.ResponseWriter) { w.WriteHeader(413) },
			func(err error) bool { v, _ := classifyExportError(err); return v == exportTooLarge }},
		{"400", func(w http.ResponseWriter) { http.Error(w, "bad record", 400) },
			func(err error) bool {
				v, _ := classifyExportError(err)
				return v == exportInvalid && strings.Contains(err.Error(), "400 Bad Request (body: bad record)")
			}},
		{"503 with Retry-After", func(w http.ResponseWriter) { w.Header().Set("Retry-After", "3"); w.WriteHeader(503) },
			func(err error) bool { v, d := classifyExportError(err); return v == exportRetry && d == 3*time.Second }},
	} {
		mu.Lock()
		answer = tc.answer
		mu.Unlock()
		err := exp.Export(context.Background(), body)
		if !tc.check(err) {
			t.Errorf("%s: %v", tc.name, err)
		}
		mu.Lock()
		if string(got) != string(body) || hdr.Get("X-Tenant") != "t1" || hdr.Get("Content-Type") != "application/x-protobuf" || hdr.Get("Content-Encoding") != "gzip" {
			t.Errorf("%s: the receiver got %d bytes (sent %d), headers %v", tc.name, len(got), len(body), hdr)
		}
		mu.Unlock()
	}
}

// grpcReceiver answers each Export with its next scripted answer.
type grpcReceiver struct {
	collogspb.UnimplementedLogsServiceServer
	mu      sync.Mutex
	answers []error
	partial *collogspb.ExportLogsPartialSuccess
	got     []*collogspb.ExportLogsServiceRequest
	md      []metadata.MD
	// compression is each request's grpc-encoding.
	compression []string
}

func (r *grpcReceiver) Export(ctx context.Context, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	md, _ := metadata.FromIncomingContext(ctx)
	r.got, r.md = append(r.got, req), append(r.md, md)
	r.compression = append(r.compression, grpc.ServerTransportStreamFromContext(ctx).(interface{ RecvCompress() string }).RecvCompress())
	if len(r.answers) > 0 {
		err := r.answers[0]
		r.answers = r.answers[1:]
		if err != nil {
			return nil, err
		}
	}
	return &collogspb.ExportLogsServiceResponse{PartialSuccess: r.partial}, nil
}

// TestGRPCExporter: the request arrives whole, gzip-compressed, with the
// headers as metadata; statuses and partial successes come back as the
// sink classifies them.
func TestGRPCExporter(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	recv := &grpcReceiver{}
	collogspb.RegisterLogsServiceServer(srv, recv)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	defer func() { srv.Stop(); <-done }()

	exp, err := NewOTLPExporter(context.Background(), config.OTLP{Endpoint: "http://" + ln.Addr().String(), Protocol: "grpc", Headers: map[string]string{"x-tenant": "t1"}}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	defer exp.Shutdown(context.Background())
	body := testRequest(t)
	if err := exp.Export(context.Background(), body); err != nil {
		t.Fatal(err)
	}
	recv.mu.Lock()
	var want collogspb.ExportLogsServiceRequest
	if err := proto.Unmarshal(body, &want); err != nil {
		t.Fatal(err)
	}
	if len(recv.got) != 1 || !proto.Equal(recv.got[0], &want) {
		t.Fatalf("the receiver got %v", recv.got)
	}
	if md := recv.md[0]; strings.Join(md.Get("x-tenant"), ",") != "t1" {
		t.Fatalf("metadata x-tenant %q, want t1", md.Get("x-tenant"))
	}
	if recv.compression[0] != "gzip" {
		t.Fatalf("request compressed with %q, want gzip", recv.compression[0])
	}
	recv.answers = []error{status.Error(codes.InvalidArgument, "bad"), status.Error(codes.ResourceExhausted, "grpc: received message larger than max (5 vs. 4)")}
	recv.mu.Unlock()
	if v, _ := classifyExportError(exp.Export(context.Background(), body)); v != exportInvalid {
		t.Errorf("INVALID_ARGUMENT classified %v", v)
	}
	if v, _ := classifyExportError(exp.Export(context.Background(), body)); v != exportTooLarge {
		t.Errorf("RESOURCE_EXHAUSTED about size classified %v", v)
	}
	recv.mu.Lock()
	recv.partial = &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: 1, ErrorMessage: "dropped one"}
	recv.mu.Unlock()
	err = exp.Export(context.Background(), body)
	if ps, ok := err.(*PartialSuccess); !ok || ps.Rejected != 1 || ps.Message != "dropped one" {
		t.Errorf("partial success: %v", err)
	}
}
