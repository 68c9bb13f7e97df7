package export

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// fakeExporter records what it exports; its answers are scripted.
type fakeExporter struct {
	mu       sync.Mutex
	exported []exportedRecord
	calls    int
	answers  []error       // per call; past the end: nil
	gate     chan struct{} // if set, each Export waits for a value (or ctx)
	// judge, if set, answers each call past the scripted answers.
	judge func(recs []exportedRecord) error
	// bodyBytes is the bodies' bytes of each call the fake accepted.
	bodyBytes []int
	// sizes is the encoded size of each request the fake accepted.
	sizes []int
}

func (f *fakeExporter) Export(ctx context.Context, body []byte) error {
	recs, err := decodeRecords(body)
	if err != nil {
		panic(err) // the sink encoded a malformed request
	}
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.calls
	f.calls++
	if n < len(f.answers) && f.answers[n] != nil {
		return f.answers[n]
	}
	if f.judge != nil && n >= len(f.answers) {
		if err := f.judge(recs); err != nil {
			return err
		}
	}
	total := 0
	for _, r := range recs {
		f.exported = append(f.exported, r.Clone())
		total += bodyLen(r.Body())
	}
	f.bodyBytes = append(f.bodyBytes, total)
	f.sizes = append(f.sizes, len(body))
	return nil
}
func (f *fakeExporter) Shutdown(context.Context) error { return nil }

func (f *fakeExporter) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeExporter) bodies() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.exported {
		out = append(out, r.Body().Emit())
	}
	return out
}

type ackLog struct {
	mu   sync.Mutex
	acks []string
}

func (a *ackLog) Ack(id string, c logs.Cursor) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.acks = append(a.acks, fmt.Sprintf("%s@%d", id, c.Streams[0].Time.Nanosecond()))
}

func (a *ackLog) list() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.acks...)
}

var testMeta = &logs.Meta{ID: "c1", Name: "web", ImageName: "app", ImageTags: []string{"1.0"}, ServiceName: "web", HostName: "h"}

func batchOf(meta *logs.Meta, pos int, bodies ...string) *logs.Batch {
	b := &logs.Batch{Meta: meta}
	for _, body := range bodies {
		b.Records = append(b.Records, logs.Record{Timestamp: time.Unix(1, 0), Observed: time.Unix(2, 0), Body: []byte(body), Stream: logs.Stdout})
	}
	b.Cursor.Streams[0].Time = time.Unix(0, int64(pos))
	return b
}

// newTestSink is a sink with berth's defaults: in a synctest bubble, the
// default backoff (500ms, doubling, up to 30s) costs no real time.
func newTestSink(t testing.TB, exp Exporter, acker logs.Acker, set telemetry.Settings) *OTLPSink {
	t.Helper()
	def := config.Default()
	s, err := NewOTLPSink(exp, acker, def.Export, def.Backoff, withVersion(set))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// retryWindow is the shortest and the longest the default backoff waits in
// all for n retries: each wait is its interval ±50%.
func retryWindow(n int) (lo, hi time.Duration) {
	bo := config.Default().Backoff
	d := bo.Initial
	for range n {
		lo += d / 2
		hi += d + d/2 + 1 // the jitter's upper end is open by a nanosecond
		d = min(time.Duration(float64(d)*bo.Multiplier), bo.Max)
	}
	return lo, hi
}

func TestOTLPSinkExportsThenAcks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		exp := &fakeExporter{}
		acks := &ackLog{}
		s := newTestSink(t, exp, acks, telemetry.NopSettings())
		other := &logs.Meta{ID: "c2", Name: "db"}
		ctx := context.Background()
		for i, b := range []*logs.Batch{batchOf(testMeta, 1, "a", "b"), batchOf(other, 2, "x"), batchOf(testMeta, 3, "c\xff")} {
			if err := s.Consume(ctx, b); err != nil {
				t.Fatalf("batch %d: %v", i, err)
			}
		}
		if err := s.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if got := acks.list(); fmt.Sprint(got) != "[c1@1 c2@2 c1@3]" {
			t.Fatalf("acks %v, want in order, each after its export", got)
		}
		recs := exp.exported
		if len(recs) != 4 || s.Stats().Exported != 4 {
			t.Fatalf("exported %d records (stats %d)", len(recs), s.Stats().Exported)
		}
		r := recs[0]
		if r.Body().Type() != attribute.STRING || r.Body().AsString() != "a" || !r.Timestamp().Equal(time.Unix(1, 0)) || !r.ObservedTimestamp().Equal(time.Unix(2, 0)) {
			t.Fatalf("record 0: %v", r.Body().Emit())
		}
		var stream string
		r.WalkAttributes(func(kv attribute.KeyValue) bool {
			if kv.Key == "log.iostream" {
				stream = kv.Value.AsString()
			}
			return true
		})
		if stream != "stdout" {
			t.Fatalf("log.iostream = %q", stream)
		}
		if sc := r.InstrumentationScope(); sc.Name != telemetry.ScopeName || sc.Version != "test" {
			t.Fatalf("instrumentation scope %+v, want %s version test", sc, telemetry.ScopeName)
		}
		res := map[string]string{}
		for _, kv := range r.Resource().Attributes() {
			res[string(kv.Key)] = kv.Value.Emit()
		}
		for k, v := range map[string]string{"container.id": "c1", "container.name": "web", "container.image.name": "app", "container.image.tags": `["1.0"]`, "container.runtime": "docker", "service.name": "web", "host.name": "h"} {
			if res[k] != v {
				t.Fatalf("resource %s = %q, want %q (all: %v)", k, res[k], v, res)
			}
		}
		if b := recs[3].Body(); b.Type() != attribute.BYTESLICE || string(b.AsByteSlice()) != "c\xff" {
			t.Fatalf("invalid UTF-8 must be sent as exact bytes, got %v %q", b.Type(), b.Emit())
		}
		if n := s.Stats().InFlightBytes; n != 0 {
			t.Fatalf("in-flight bytes %d after everything was acknowledged", n)
		}
	})
}

// TestOTLPSinkRetriesUntilDelivered: retryable failures are retried on the
// backoff schedule, and the batch is acknowledged once, after the export that
// succeeded.
func TestOTLPSinkRetriesUntilDelivered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		unavailable := status.Error(codes.Unavailable, "backend down")
		exp := &fakeExporter{answers: []error{unavailable, unavailable, errors.New("max retry time elapsed: connection refused")}}
		acks := &ackLog{}
		s := newTestSink(t, exp, acks, telemetry.NopSettings())
		start := time.Now()
		if err := s.Consume(context.Background(), batchOf(testMeta, 1, "a")); err != nil {
			t.Fatal(err)
		}
		lo, hi := retryWindow(3)
		time.Sleep(lo - time.Nanosecond)
		synctest.Wait()
		if got := acks.list(); len(got) != 0 || exp.callCount() > 3 {
			t.Fatalf("before the third retry can be due: acks %v, %d export calls; want none, at most 3", got, exp.callCount())
		}
		time.Sleep(hi - lo + time.Nanosecond)
		synctest.Wait()
		if got := acks.list(); fmt.Sprint(got) != "[c1@1]" {
			t.Fatalf("acks %v %v after the first export, want the batch acknowledged after three failures", got, time.Since(start))
		}
		if f := s.Stats().Failures; f != 3 {
			t.Fatalf("failures %d, want 3", f)
		}
		if got := exp.bodies(); fmt.Sprint(got) != "[a]" {
			t.Fatalf("exported %v", got)
		}
		if err := s.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

// TestOTLPSinkHonoursThrottling: a retry waits at least as long as the
// backend asked (gRPC RetryInfo), even when the backoff is shorter.
func TestOTLPSinkHonoursThrottling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = 7 * time.Second
		throttled, err := status.New(codes.ResourceExhausted, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
		if err != nil {
			t.Fatal(err)
		}
		exp := &fakeExporter{answers: []error{throttled.Err()}}
		acks := &ackLog{}
		s := newTestSink(t, exp, acks, telemetry.NopSettings())
		if err := s.Consume(context.Background(), batchOf(testMeta, 1, "a")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay - time.Nanosecond)
		synctest.Wait()
		if n := exp.callCount(); n != 1 {
			t.Fatalf("%d export calls before the backend's delay passed, want 1", n)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if n, got := exp.callCount(), acks.list(); n != 2 || len(got) != 1 {
			t.Fatalf("%d export calls, acks %v at the backend's delay; want 2, one", n, got)
		}
		if err := s.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestOTLPSinkRejectionDoesNotStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		exp := &fakeExporter{answers: []error{status.Error(codes.InvalidArgument, "bad record")}}
		acks := &ackLog{}
		var logBuf bytes.Buffer
		set := telemetry.NopSettings()
		set.Logger = slog.New(slog.NewTextHandler(&logBuf, nil))
		s := newTestSink(t, exp, acks, set)
		ctx := context.Background()
		if err := s.Consume(ctx, batchOf(testMeta, 1, "bad")); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // no retry, no wait: acknowledged at once
		if got := acks.list(); fmt.Sprint(got) != "[c1@1]" {
			t.Fatalf("acks %v, want the rejected batch acknowledged at once", got)
		}
		if err := s.Consume(ctx, batchOf(testMeta, 2, "good")); err != nil {
			t.Fatal(err)
		}
		if err := s.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if got := exp.bodies(); fmt.Sprint(got) != "[good]" {
			t.Fatalf("exported %v, want the batch after the rejected one", got)
		}
		if st := s.Stats(); st.Rejected != 1 || s.counters.rejectedBatches.Load() != 1 || st.Failures != 0 {
			t.Fatalf("rejected %d in %d batches, %d failures", st.Rejected, s.counters.rejectedBatches.Load(), st.Failures)
		}
		if got := acks.list(); fmt.Sprint(got) != "[c1@1 c1@2]" {
			t.Fatalf("acks %v", got)
		}
		if !strings.Contains(logBuf.String(), "rejected records as invalid") || !strings.Contains(logBuf.String(), "container=web") {
			t.Fatalf("the rejection is not in the settings' log: %q", logBuf.String())
		}
	})
}

func TestOTLPSinkBackpressure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		exp := &fakeExporter{gate: make(chan struct{})}
		acks := &ackLog{}
		const bound = 1 << 20
		def := config.Default()
		def.MaxInFlightBytes = bound
		s, err := NewOTLPSink(exp, acks, def.Export, def.Backoff, withVersion(telemetry.NopSettings()))
		if err != nil {
			t.Fatal(err)
		}
		big := string(make([]byte, 300<<10))
		ctx := context.Background()
		for i := range 3 { // 3 x 300 KiB fit under 1 MiB
			if err := s.Consume(ctx, batchOf(testMeta, i+1, big)); err != nil {
				t.Fatal(err)
			}
		}
		// The fourth does not fit while nothing is acknowledged: Consume
		// blocks, for as long as it takes.
		done := make(chan error, 1)
		go func() { done <- s.Consume(ctx, batchOf(testMeta, 4, big)) }()
		time.Sleep(time.Hour)
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Consume over the bound returned %v, want it to block", err)
		default:
		}
		if n := s.Stats().InFlightBytes; n > bound {
			t.Fatalf("in flight %d > bound %d", n, bound)
		}
		// Once the backend takes the first batch, room is made.
		exp.gate <- struct{}{}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		close(exp.gate) // the rest go through (possibly merged into one export)
		if err := s.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if got := acks.list(); len(got) != 4 {
			t.Fatalf("acks %v, want all four", got)
		}
	})
}

// TestOTLPSinkBackpressureHonoursContext: a Consume blocked on the bound
// returns when its context ends, and gives back nothing it did not take.
func TestOTLPSinkBackpressureHonoursContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		exp := &fakeExporter{gate: make(chan struct{})}
		def := config.Default()
		def.MaxInFlightBytes = 1 << 20
		s, err := NewOTLPSink(exp, &ackLog{}, def.Export, def.Backoff, withVersion(telemetry.NopSettings()))
		if err != nil {
			t.Fatal(err)
		}
		big := string(make([]byte, 600<<10))
		if err := s.Consume(context.Background(), batchOf(testMeta, 1, big)); err != nil {
			t.Fatal(err)
		}
		before := s.Stats().InFlightBytes
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		err = s.Consume(ctx, batchOf(testMeta, 2, big))
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 100*time.Millisecond {
			t.Fatalf("Consume over the bound returned %v after %v, want DeadlineExceeded after 100ms", err, time.Since(start))
		}
		if n := s.Stats().InFlightBytes; n != before {
			t.Fatalf("in flight %d after the refused Consume, want %d", n, before)
		}
		close(exp.gate)
		if err := s.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestOTLPSinkShutdownDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		exp := &fakeExporter{}
		for range 1000 {
			exp.answers = append(exp.answers, status.Error(codes.Unavailable, "down"))
		}
		acks := &ackLog{}
		s := newTestSink(t, exp, acks, telemetry.NopSettings())
		if err := s.Consume(context.Background(), batchOf(testMeta, 1, "a")); err != nil {
			t.Fatal(err)
		}
		const deadline = 200 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		start := time.Now()
		err := s.Shutdown(ctx)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != deadline {
			t.Fatalf("Shutdown = %v after %v, want DeadlineExceeded at the deadline (%v)", err, time.Since(start), deadline)
		}
		if len(acks.list()) != 0 {
			t.Fatal("an undelivered batch was acknowledged")
		}
		if n := s.Stats().InFlightBytes; n != 0 {
			t.Fatalf("in flight %d after Shutdown, want the undelivered batch released", n)
		}
		if err := s.Consume(context.Background(), batchOf(testMeta, 2, "b")); !errors.Is(err, errSinkClosed) {
			t.Fatalf("Consume after Shutdown: %v", err)
		}
		if err := s.Shutdown(context.Background()); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("second Shutdown: %v", err)
		}
	})
}

func TestClassifyExportError(t *testing.T) {
	throttled, _ := status.New(codes.ResourceExhausted, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(3 * time.Second)})
	tests := []struct {
		name     string
		err      error
		verdict  exportVerdict
		throttle time.Duration
	}{
		{"grpc unavailable", status.Error(codes.Unavailable, "x"), exportRetry, 0},
		{"grpc invalid argument", status.Error(codes.InvalidArgument, "x"), exportInvalid, 0},
		{"grpc wrapped invalid argument", fmt.Errorf("max retry time elapsed: %w", status.Error(codes.InvalidArgument, "x")), exportInvalid, 0},
		{"grpc unauthenticated waits for a fix", status.Error(codes.Unauthenticated, "x"), exportRetry, 0},
		{"grpc throttled", throttled.Err(), exportRetry, 3 * time.Second},
		{"grpc resource exhausted without a word of size is throttling", status.Error(codes.ResourceExhausted, "quota"), exportRetry, 0},
		{"grpc message larger than max (grpc-go server)", status.Error(codes.ResourceExhausted, "grpc: received message larger than max (5242880 vs. 4194304)"), exportTooLarge, 0},
		{"grpc message larger than max after decompression", status.Error(codes.ResourceExhausted, "grpc: received message after decompression larger than max (5242880 vs. 4194304)"), exportTooLarge, 0},
		{"grpc message larger than max (client side)", fmt.Errorf("export: %w", status.Error(codes.ResourceExhausted, "grpc: trying to send message larger than max (2147483648 vs. 2147483647)")), exportTooLarge, 0},
		{"grpc message exceeds maximum size (grpc-java)", status.Error(codes.ResourceExhausted, "gRPC message exceeds maximum size 4194304: 5242880"), exportTooLarge, 0},
		{"http 400", &HTTPStatusError{URL: "http://127.0.0.1:4318/v1/logs", Code: 400, Status: "400 Bad Request", Body: "bad"}, exportInvalid, 0},
		{"http 413", &HTTPStatusError{URL: "http://h/v1/logs", Code: 413, Status: "413 Request Entity Too Large", Body: "x"}, exportTooLarge, 0},
		{"http 401 waits for a fix", &HTTPStatusError{URL: "http://h/v1/logs", Code: 401, Status: "401 Unauthorized", Body: "x"}, exportRetry, 0},
		{"http 404 waits for a fix", &HTTPStatusError{URL: "http://h/v1/logs", Code: 404, Status: "404 Not Found", Body: "x"}, exportRetry, 0},
		{"http 503 with Retry-After", fmt.Errorf("export: %w", &HTTPStatusError{URL: "http://h/v1/logs", Code: 503, Status: "503 Service Unavailable", RetryAfter: 7 * time.Second}), exportRetry, 7 * time.Second},
		{"http 429 with Retry-After", &HTTPStatusError{URL: "http://h/v1/logs", Code: 429, Status: "429 Too Many Requests", RetryAfter: 2 * time.Second}, exportRetry, 2 * time.Second},
		{"retries exhausted", errors.New("max retry time elapsed: retry-able request failure: body: x"), exportRetry, 0},
		{"connection refused", errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), exportRetry, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, d := classifyExportError(tt.err)
			if v != tt.verdict || d != tt.throttle {
				t.Fatalf("got (%v, %v), want (%v, %v)", v, d, tt.verdict, tt.throttle)
			}
		})
	}
}

// TestOTLPSinkExportsSelectedLabels: each selected label is the resource
// attribute container.label.<key> of every record of its container, and a
// container without selected labels has no such attribute.
func TestOTLPSinkExportsSelectedLabels(t *testing.T) {
	labelled := &logs.Meta{
		ID: "c1", Name: "web", ImageName: "app", ServiceName: "web", HostName: "h",
		Labels: map[string]string{"team": "payments", "com.example.tier": "edge", "secret": "not selected", "empty": ""},
		SelectedLabels: []logs.Label{
			{Key: "com.example.tier", Value: "edge"}, {Key: "empty", Value: ""}, {Key: "team", Value: "payments"},
		},
	}
	plain := &logs.Meta{ID: "c2", Name: "db", Labels: map[string]string{"team": "storage"}}
	exp := &fakeExporter{}
	s := newTestSink(t, exp, &ackLog{}, telemetry.NopSettings())
	ctx := context.Background()
	for i, b := range []*logs.Batch{batchOf(labelled, 1, "a", "b"), batchOf(plain, 2, "x")} {
		if err := s.Consume(ctx, b); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if len(exp.exported) != 3 {
		t.Fatalf("exported %d records, want 3", len(exp.exported))
	}
	labelsOf := func(r exportedRecord) map[string]string {
		got := map[string]string{}
		for _, kv := range r.Resource().Attributes() {
			if k, ok := strings.CutPrefix(string(kv.Key), "container.label."); ok {
				if kv.Value.Type() != attribute.STRING {
					t.Errorf("%s is a %v, want a string", kv.Key, kv.Value.Type())
				}
				got[k] = kv.Value.AsString()
			}
		}
		return got
	}
	want := map[string]string{"com.example.tier": "edge", "empty": "", "team": "payments"}
	for i, r := range exp.exported[:2] {
		if got := labelsOf(r); !reflect.DeepEqual(got, want) {
			t.Errorf("record %d: labels %v, want %v", i, got, want)
		}
	}
	if got := labelsOf(exp.exported[2]); len(got) != 0 {
		t.Errorf("a container without selected labels has %v", got)
	}
}

// TestContainerResourceLabels: the selected labels come after the
// semantic-convention attributes and change none of them.
func TestContainerResourceLabels(t *testing.T) {
	m := &logs.Meta{
		ID: "c1", Name: "web", ImageName: "app", ImageTags: []string{"1.0"}, ServiceName: "web", HostName: "h",
		SelectedLabels: []logs.Label{{Key: "service.name", Value: "a label, not the service"}, {Key: "team", Value: "payments"}},
	}
	res := decodedResource(t, m)
	got := map[string]string{}
	for _, kv := range res.Attributes() {
		got[string(kv.Key)] = kv.Value.Emit()
	}
	want := map[string]string{
		"container.id": "c1", "container.name": "web", "container.image.name": "app", "container.image.tags": `["1.0"]`,
		"container.runtime.name": "docker", "container.runtime": "docker", "service.name": "web", "host.name": "h",
		"container.label.service.name": "a label, not the service", "container.label.team": "payments",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("resource %v, want %v", got, want)
	}
}

// withVersion sets the version the tests expect as the records' scope version.
func withVersion(set telemetry.Settings) telemetry.Settings {
	set.Version = "test"
	return set
}

// TestOTLPSinkPartialSuccess: a partial success is an acceptance: the batch
// is acknowledged and not sent again; the records the backend says it
// rejected count as rejected, the others as exported.
func TestOTLPSinkPartialSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		exp := &fakeExporter{answers: []error{&PartialSuccess{Rejected: 1, Message: "one too old"}}}
		acks := &ackLog{}
		var logBuf strings.Builder
		set := telemetry.NopSettings()
		set.Logger = slogTo(&logBuf)
		s := newTestSink(t, exp, acks, set)
		ctx := context.Background()
		if err := s.Consume(ctx, batchOf(testMeta, 1, "a", "b", "c")); err != nil {
			t.Fatal(err)
		}
		if err := s.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if got := acks.list(); fmt.Sprint(got) != "[c1@1]" {
			t.Fatalf("acks %v, want the batch's", got)
		}
		if n := exp.callCount(); n != 1 {
			t.Fatalf("%d export calls, want 1: a partial success is not retried", n)
		}
		if st := s.Stats(); st.Exported != 2 || st.Rejected != 1 || st.Failures != 0 {
			t.Fatalf("stats %+v, want 2 exported, 1 rejected, no failure", st)
		}
		if !strings.Contains(logBuf.String(), "one too old") {
			t.Fatalf("the partial success is not logged: %s", logBuf.String())
		}
		if ok, _ := s.Healthy(); !ok {
			t.Fatal("a partial success makes the sink unhealthy")
		}
	})
}
