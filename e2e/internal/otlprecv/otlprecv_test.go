package otlprecv

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"go.uber.org/goleak"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T) *Receiver {
	t.Helper()
	r, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

// exporter is what both OTLP log exporters are to these tests.
type exporter interface {
	Export(context.Context, []sdklog.Record) error
	Shutdown(context.Context) error
}

type retry struct {
	enabled bool
	maxTime time.Duration
}

func newExporter(t *testing.T, transport string, r *Receiver, rt retry) exporter {
	t.Helper()
	ctx := context.Background()
	var (
		exp exporter
		err error
	)
	switch transport {
	case GRPC:
		exp, err = otlploggrpc.New(ctx,
			otlploggrpc.WithEndpoint(r.GRPCAddr()),
			otlploggrpc.WithInsecure(),
			otlploggrpc.WithCompressor("gzip"),
			otlploggrpc.WithHeaders(map[string]string{"x-berth-test": "grpc"}),
			otlploggrpc.WithTimeout(5*time.Second),
			otlploggrpc.WithRetry(otlploggrpc.RetryConfig{
				Enabled: rt.enabled, InitialInterval: 50 * time.Millisecond,
				MaxInterval: 200 * time.Millisecond, MaxElapsedTime: rt.maxTime,
			}))
	case HTTP:
		exp, err = otlploghttp.New(ctx,
			otlploghttp.WithEndpoint(r.HTTPAddr()),
			otlploghttp.WithInsecure(),
			otlploghttp.WithCompression(otlploghttp.GzipCompression),
			otlploghttp.WithHeaders(map[string]string{"x-berth-test": "http"}),
			otlploghttp.WithTimeout(5*time.Second),
			otlploghttp.WithRetry(otlploghttp.RetryConfig{
				Enabled: rt.enabled, InitialInterval: 50 * time.Millisecond,
				MaxInterval: 200 * time.Millisecond, MaxElapsedTime: rt.maxTime,
			}))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exp.Shutdown(context.Background()) })
	return exp
}

// capture is an sdklog.Processor that keeps the records emitted through a
// LoggerProvider, so that the test can hand them to an exporter itself and
// see the export's error.
type capture struct {
	mu   sync.Mutex
	recs []sdklog.Record
}

func (c *capture) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }
func (c *capture) OnEmit(_ context.Context, r *sdklog.Record) error {
	c.mu.Lock()
	c.recs = append(c.recs, r.Clone())
	c.mu.Unlock()
	return nil
}
func (c *capture) Shutdown(context.Context) error   { return nil }
func (c *capture) ForceFlush(context.Context) error { return nil }

var (
	t0  = time.Unix(1_700_000_000, 123456789)
	obs = time.Unix(1_700_000_001, 5)
)

// makeRecords emits n records through a LoggerProvider with a container-like
// resource: bodies "line <tag> <i>", the last one a bytes body.
func makeRecords(t *testing.T, tag string, n int) []sdklog.Record {
	t.Helper()
	res := resource.NewSchemaless(
		attribute.String("service.name", "web"),
		attribute.String("container.id", "c0ffee"),
		attribute.String("container.name", "web-1"),
		attribute.StringSlice("container.image.tags", []string{"1.2", "latest"}),
	)
	c := &capture{}
	lp := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(c))
	defer lp.Shutdown(context.Background())
	lg := lp.Logger("berth")
	for i := range n {
		var r otellog.Record
		r.SetTimestamp(t0.Add(time.Duration(i)))
		r.SetObservedTimestamp(obs)
		if i == n-1 {
			r.SetBody(attribute.ByteSliceValue([]byte{0xff, 0x00, byte(i)}))
		} else {
			r.SetBody(attribute.StringValue(fmt.Sprintf("line %s %d", tag, i)))
		}
		r.AddAttributes(attribute.String("log.iostream", "stdout"), attribute.Bool("log.truncated", i == 0))
		lg.Emit(context.Background(), r)
	}
	return c.recs
}

var transports = []string{GRPC, HTTP}

func TestRecordsArrive(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			r := start(t)
			exp := newExporter(t, tr, r, retry{})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := exp.Export(ctx, makeRecords(t, "a", 3)); err != nil {
				t.Fatalf("Export: %v", err)
			}
			if err := exp.Export(ctx, makeRecords(t, "b", 2)); err != nil {
				t.Fatalf("Export: %v", err)
			}
			if err := r.WaitRecords(ctx, 5); err != nil {
				t.Fatal(err)
			}
			got := r.Records()
			if len(got) != 5 {
				t.Fatalf("got %d records, want 5", len(got))
			}
			for i, rec := range got {
				if rec.Transport != tr {
					t.Errorf("record %d: transport %q", i, rec.Transport)
				}
				if rec.Resource["service.name"] != "web" || rec.Resource["container.id"] != "c0ffee" ||
					rec.Resource["container.name"] != "web-1" {
					t.Errorf("record %d: resource %v", i, rec.Resource)
				}
				if tags, _ := rec.Resource["container.image.tags"].([]any); len(tags) != 2 || tags[0] != "1.2" || tags[1] != "latest" {
					t.Errorf("record %d: container.image.tags %#v", i, rec.Resource["container.image.tags"])
				}
				if rec.Scope != "berth" {
					t.Errorf("record %d: scope %q", i, rec.Scope)
				}
				if rec.Attributes["log.iostream"] != "stdout" {
					t.Errorf("record %d: attributes %v", i, rec.Attributes)
				}
				if rec.ObservedTimeUnixNano != uint64(obs.UnixNano()) {
					t.Errorf("record %d: observed %d", i, rec.ObservedTimeUnixNano)
				}
			}
			first, last := got[0], got[2]
			if first.Body != "line a 0" || first.BodyKind != "string" || first.BodyBytes != nil {
				t.Errorf("first body %q kind %q bytes %v", first.Body, first.BodyKind, first.BodyBytes)
			}
			if first.TimeUnixNano != uint64(t0.UnixNano()) || first.Attributes["log.truncated"] != true {
				t.Errorf("first: time %d attrs %v", first.TimeUnixNano, first.Attributes)
			}
			if !bytes.Equal(last.BodyBytes, []byte{0xff, 0, 2}) || last.BodyKind != "bytes" || last.Body != "" {
				t.Errorf("last body %q kind %q bytes %v", last.Body, last.BodyKind, last.BodyBytes)
			}
			if last.TimeUnixNano != uint64(t0.UnixNano())+2 || last.Attributes["log.truncated"] != false {
				t.Errorf("last: time %d attrs %v", last.TimeUnixNano, last.Attributes)
			}

			st := r.Stats()
			want := Stats{Requests: 2, Batches: 2, Records: 5, GzipRequests: 2}
			if tr == GRPC {
				want.GRPCRequests = 2
			} else {
				want.HTTPRequests = 2
			}
			if st != want {
				t.Errorf("stats %+v, want %+v", st, want)
			}
			reqs := r.Requests()
			if len(reqs) != 2 || reqs[0].Records != 3 || reqs[1].Records != 2 || reqs[0].Outcome != OutcomeOK {
				t.Fatalf("requests %+v", reqs)
			}
			h := reqs[0].Headers["x-berth-test"]
			if tr == HTTP {
				h = http.Header(reqs[0].Headers).Values("X-Berth-Test")
			}
			if len(h) != 1 || h[0] != tr {
				t.Errorf("header x-berth-test %v in %v", h, reqs[0].Headers)
			}
		})
	}
}

func TestUnavailableThenRecovery(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			r := start(t)
			exp := newExporter(t, tr, r, retry{enabled: true, maxTime: 20 * time.Second})
			const outage = 700 * time.Millisecond
			begin := time.Now()
			r.FailUnavailable(begin.Add(outage))
			if err := exp.Export(context.Background(), makeRecords(t, "u", 4)); err != nil {
				t.Fatalf("Export through the outage: %v", err)
			}
			if el := time.Since(begin); el < outage {
				t.Errorf("export returned after %v, before the outage ended", el)
			}
			st := r.Stats()
			if st.Unavailable < 1 || st.Batches != 1 || st.Records != 4 || st.Requests != st.Unavailable+1 {
				t.Errorf("stats %+v: want unavailable, then 1 batch of 4", st)
			}
			if len(r.Records()) != 4 {
				t.Errorf("%d records stored, want 4", len(r.Records()))
			}
		})
	}
}

// With SetRetryAfter, the exporters wait for the server's hint (RetryInfo over
// gRPC, Retry-After over HTTP) rather than their own 50 ms backoff.
func TestUnavailableRetryHint(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			r := start(t)
			exp := newExporter(t, tr, r, retry{enabled: true, maxTime: 20 * time.Second})
			hint := 600 * time.Millisecond
			if tr == HTTP {
				hint = time.Second // Retry-After has whole seconds
			}
			r.SetRetryAfter(hint)
			r.FailUnavailable(time.Now().Add(time.Hour))
			// End the outage as soon as the first request has been refused:
			// the exporter's next try must then wait for the hint.
			ended := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				err := r.WaitFor(ctx, func(s Stats) bool { return s.Unavailable >= 1 })
				r.FailUnavailable(time.Time{})
				ended <- err
			}()
			begin := time.Now()
			if err := exp.Export(context.Background(), makeRecords(t, "h", 1)); err != nil {
				t.Fatalf("Export: %v", err)
			}
			if err := <-ended; err != nil {
				t.Fatal(err)
			}
			if el := time.Since(begin); el < hint {
				t.Errorf("export returned after %v, before the %v retry hint", el, hint)
			}
			if st := r.Stats(); st.Unavailable != 1 || st.Records != 1 {
				t.Errorf("stats %+v: want 1 unavailable, then 1 record", st)
			}
		})
	}
}

func TestUnavailableWithoutRetryIsAnError(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			r := start(t)
			exp := newExporter(t, tr, r, retry{})
			r.SetRetryAfter(3 * time.Second)
			r.FailUnavailable(time.Now().Add(time.Hour))
			err := exp.Export(context.Background(), makeRecords(t, "x", 2))
			if err == nil {
				t.Fatal("Export succeeded during the outage")
			}
			if tr == GRPC {
				st := status.Convert(err)
				if st.Code() != codes.Unavailable {
					t.Errorf("code %v (%v), want Unavailable", st.Code(), err)
				}
				if len(st.Details()) != 1 {
					t.Errorf("details %v, want a RetryInfo", st.Details())
				}
			} else if !strings.Contains(err.Error(), "retry-able request failure") {
				t.Errorf("error %v, want a retryable failure", err)
			}
			r.FailUnavailable(time.Time{})
			if err := exp.Export(context.Background(), makeRecords(t, "y", 2)); err != nil {
				t.Fatalf("Export after the outage: %v", err)
			}
			if st := r.Stats(); st.Unavailable != 1 || st.Records != 2 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestRejectNext(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			r := start(t)
			// Retry enabled: a rejection must not be retried.
			exp := newExporter(t, tr, r, retry{enabled: true, maxTime: 20 * time.Second})
			r.RejectNext(1)
			begin := time.Now()
			err := exp.Export(context.Background(), makeRecords(t, "r", 3))
			if err == nil {
				t.Fatal("rejected Export returned no error")
			}
			if el := time.Since(begin); el > 2*time.Second {
				t.Errorf("rejection took %v: retried?", el)
			}
			if tr == GRPC {
				if c := status.Code(err); c != codes.InvalidArgument {
					t.Errorf("code %v (%v), want InvalidArgument", c, err)
				}
			} else if !strings.Contains(err.Error(), "400") {
				t.Errorf("error %v, want a 400", err)
			}
			t.Logf("rejection as the exporter reports it: %v", err)
			if err := exp.Export(context.Background(), makeRecords(t, "s", 2)); err != nil {
				t.Fatalf("Export after the rejection: %v", err)
			}
			st := r.Stats()
			if st.RejectedBatches != 1 || st.RejectedRecords != 3 || st.Batches != 1 || st.Records != 2 || st.Requests != 2 {
				t.Errorf("stats %+v", st)
			}
			recs := r.Records()
			if len(recs) != 2 || recs[0].Body != "line s 0" {
				t.Errorf("records %+v", recs)
			}
		})
	}
}

func TestHTTPBadRequests(t *testing.T) {
	r := start(t)
	url := r.HTTPEndpoint() + "/v1/logs"
	post := func(ct, ce string, body []byte) (int, *spb.Status) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		if ce != "" {
			req.Header.Set("Content-Encoding", ce)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		var st spb.Status
		if resp.StatusCode != http.StatusOK {
			if err := proto.Unmarshal(buf.Bytes(), &st); err != nil {
				t.Errorf("error body is not a google.rpc.Status: %v", err)
			}
		}
		return resp.StatusCode, &st
	}
	defer http.DefaultClient.CloseIdleConnections()

	if code, _ := post("application/json", "", []byte("{}")); code != http.StatusUnsupportedMediaType {
		t.Errorf("JSON: %d", code)
	}
	if code, st := post("application/x-protobuf", "", []byte{0xff, 0xff, 0xff}); code != http.StatusBadRequest || st.GetCode() != int32(codes.InvalidArgument) {
		t.Errorf("garbage: %d %v", code, st)
	}
	if code, _ := post("application/x-protobuf", "gzip", []byte("not gzip")); code != http.StatusBadRequest {
		t.Errorf("bad gzip: %d", code)
	}
	if code, _ := post("application/x-protobuf", "br", nil); code != http.StatusUnsupportedMediaType {
		t.Errorf("br: %d", code)
	}
	// A valid gzip request with no records.
	raw, _ := proto.Marshal(&collogpb.ExportLogsServiceRequest{})
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	_, _ = zw.Write(raw)
	_ = zw.Close()
	if code, _ := post("application/x-protobuf", "gzip", z.Bytes()); code != http.StatusOK {
		t.Errorf("empty gzip request: %d", code)
	}
	st := r.Stats()
	if st.Bad != 4 || st.Batches != 1 || st.Records != 0 || st.GzipRequests != 2 || st.RejectedBatches != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestWaitRecordsAndReset(t *testing.T) {
	r := start(t)
	exp := newExporter(t, GRPC, r, retry{})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := r.WaitRecords(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitRecords on an empty receiver: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- r.WaitRecords(ctx, 4)
	}()
	for range 2 {
		if err := exp.Export(context.Background(), makeRecords(t, "w", 2)); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	r.RejectNext(5)
	r.Reset()
	if r.Count() != 0 || r.Stats() != (Stats{}) || len(r.Requests()) != 0 {
		t.Errorf("after Reset: %d records, %+v", r.Count(), r.Stats())
	}
	if err := exp.Export(context.Background(), makeRecords(t, "z", 1)); err != nil {
		t.Errorf("Reset did not cancel RejectNext: %v", err)
	}
}

func TestCloseTwice(t *testing.T) {
	r, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}
