package export

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthlog/berth/logs"
	"go.opentelemetry.io/otel/attribute"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// fakeExporter records what it exports; its answers are scripted.
type fakeExporter struct {
	mu       sync.Mutex
	exported []sdklog.Record
	calls    int
	answers  []error       // per call; past the end: nil
	gate     chan struct{} // if set, each Export waits for a value (or ctx)
}

func (f *fakeExporter) Export(ctx context.Context, recs []sdklog.Record) error {
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
	for _, r := range recs {
		f.exported = append(f.exported, r.Clone())
	}
	return nil
}
func (f *fakeExporter) Shutdown(context.Context) error   { return nil }
func (f *fakeExporter) ForceFlush(context.Context) error { return nil }

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

func fastBackoff() BackoffConfig {
	return BackoffConfig{Initial: time.Millisecond, Max: 5 * time.Millisecond, Multiplier: 2}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestOTLPSinkExportsThenAcks(t *testing.T) {
	exp := &fakeExporter{}
	acks := &ackLog{}
	s := NewOTLPSink(exp, acks, OTLPSinkConfig{Backoff: fastBackoff()}, nil)
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
	if len(recs) != 4 || s.Stats().Exported.Load() != 4 {
		t.Fatalf("exported %d records (stats %d)", len(recs), s.Stats().Exported.Load())
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
	if s.Stats().InFlightBytes.Load() != 0 {
		t.Fatalf("in-flight bytes %d after everything was acknowledged", s.Stats().InFlightBytes.Load())
	}
}

func TestOTLPSinkRetriesUntilDelivered(t *testing.T) {
	unavailable := status.Error(codes.Unavailable, "backend down")
	exp := &fakeExporter{answers: []error{unavailable, unavailable, errors.New("max retry time elapsed: connection refused")}}
	acks := &ackLog{}
	s := NewOTLPSink(exp, acks, OTLPSinkConfig{Backoff: fastBackoff()}, nil)
	if err := s.Consume(context.Background(), batchOf(testMeta, 1, "a")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the batch acknowledged after three failures", func() bool { return len(acks.list()) == 1 })
	if f := s.Stats().Failures.Load(); f != 3 {
		t.Fatalf("failures %d, want 3", f)
	}
	if got := exp.bodies(); fmt.Sprint(got) != "[a]" {
		t.Fatalf("exported %v", got)
	}
	_ = s.Shutdown(context.Background())
}

func TestOTLPSinkRejectionDoesNotStall(t *testing.T) {
	exp := &fakeExporter{answers: []error{status.Error(codes.InvalidArgument, "bad record")}}
	acks := &ackLog{}
	s := NewOTLPSink(exp, acks, OTLPSinkConfig{Backoff: fastBackoff(), MaxBatchRecords: 1}, nil)
	ctx := context.Background()
	_ = s.Consume(ctx, batchOf(testMeta, 1, "bad"))
	waitFor(t, "the rejected batch acknowledged", func() bool { return len(acks.list()) == 1 })
	_ = s.Consume(ctx, batchOf(testMeta, 2, "good"))
	_ = s.Shutdown(ctx)
	if got := exp.bodies(); fmt.Sprint(got) != "[good]" {
		t.Fatalf("exported %v, want the batch after the rejected one", got)
	}
	if s.Stats().Rejected.Load() != 1 || s.Stats().RejectedBatches.Load() != 1 {
		t.Fatalf("rejected %d in %d batches", s.Stats().Rejected.Load(), s.Stats().RejectedBatches.Load())
	}
	if got := acks.list(); fmt.Sprint(got) != "[c1@1 c1@2]" {
		t.Fatalf("acks %v", got)
	}
}

func TestOTLPSinkBackpressure(t *testing.T) {
	exp := &fakeExporter{gate: make(chan struct{})}
	acks := &ackLog{}
	const bound = 1 << 20
	s := NewOTLPSink(exp, acks, OTLPSinkConfig{Backoff: fastBackoff(), MaxInFlightBytes: bound}, nil)
	big := string(make([]byte, 300<<10))
	ctx := context.Background()
	for i := range 3 { // 3 x 300 KiB fit under 1 MiB
		if err := s.Consume(ctx, batchOf(testMeta, i+1, big)); err != nil {
			t.Fatal(err)
		}
	}
	// The fourth does not fit while nothing is acknowledged: Consume blocks.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err := s.Consume(short, batchOf(testMeta, 4, big))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Consume over the bound returned %v, want it to block until its context ended", err)
	}
	if n := s.Stats().InFlightBytes.Load(); n > bound {
		t.Fatalf("in flight %d > bound %d", n, bound)
	}
	// Once the backend takes the first batch, room is made.
	done := make(chan error, 1)
	go func() { done <- s.Consume(ctx, batchOf(testMeta, 4, big)) }()
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
}

func TestOTLPSinkShutdownDeadline(t *testing.T) {
	exp := &fakeExporter{answers: []error{status.Error(codes.Unavailable, "down"), status.Error(codes.Unavailable, "down"), status.Error(codes.Unavailable, "down")}}
	exp.answers = append(exp.answers, make([]error, 0)...)
	for range 1000 {
		exp.answers = append(exp.answers, status.Error(codes.Unavailable, "down"))
	}
	acks := &ackLog{}
	s := NewOTLPSink(exp, acks, OTLPSinkConfig{Backoff: fastBackoff()}, nil)
	_ = s.Consume(context.Background(), batchOf(testMeta, 1, "a"))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.Shutdown(ctx)
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("Shutdown = %v after %v, want an error at the deadline", err, time.Since(start))
	}
	if len(acks.list()) != 0 {
		t.Fatal("an undelivered batch was acknowledged")
	}
	if err := s.Consume(context.Background(), batchOf(testMeta, 2, "b")); !errors.Is(err, ErrSinkClosed) {
		t.Fatalf("Consume after Shutdown: %v", err)
	}
	if err := s.Shutdown(context.Background()); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Shutdown: %v", err)
	}
}

func TestClassifyExportError(t *testing.T) {
	throttled, _ := status.New(codes.ResourceExhausted, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(3 * time.Second)})
	tests := []struct {
		name      string
		err       error
		permanent bool
		throttle  time.Duration
	}{
		{"grpc unavailable", status.Error(codes.Unavailable, "x"), false, 0},
		{"grpc invalid argument", status.Error(codes.InvalidArgument, "x"), true, 0},
		{"grpc wrapped invalid argument", fmt.Errorf("max retry time elapsed: %w", status.Error(codes.InvalidArgument, "x")), true, 0},
		{"grpc unauthenticated waits for a fix", status.Error(codes.Unauthenticated, "x"), false, 0},
		{"grpc throttled", throttled.Err(), false, 3 * time.Second},
		{"http 400", errors.New("failed to send logs to http://127.0.0.1:4318/v1/logs: 400 Bad Request (body: bad)"), true, 0},
		{"http 413", errors.New("failed to send logs to http://h/v1/logs: 413 Request Entity Too Large (body: x)"), true, 0},
		{"http 401 waits for a fix", errors.New("failed to send logs to http://h/v1/logs: 401 Unauthorized (body: x)"), false, 0},
		{"http 404 waits for a fix", errors.New("failed to send logs to http://h/v1/logs: 404 Not Found (body: x)"), false, 0},
		{"retries exhausted", errors.New("max retry time elapsed: retry-able request failure: body: x"), false, 0},
		{"connection refused", errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, d := ClassifyExportError(tt.err)
			if p != tt.permanent || d != tt.throttle {
				t.Fatalf("got (%v, %v), want (%v, %v)", p, d, tt.permanent, tt.throttle)
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
	s := NewOTLPSink(exp, &ackLog{}, OTLPSinkConfig{Backoff: fastBackoff()}, nil)
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
	labelsOf := func(r sdklog.Record) map[string]string {
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
	res := ContainerResource(m)
	got := map[string]string{}
	for _, kv := range res.Attributes() {
		got[string(kv.Key)] = kv.Value.Emit()
	}
	want := map[string]string{
		"container.id": "c1", "container.name": "web", "container.image.name": "app", "container.image.tags": `["1.0"]`,
		"container.runtime": "docker", "service.name": "web", "host.name": "h",
		"container.label.service.name": "a label, not the service", "container.label.team": "payments",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("resource %v, want %v", got, want)
	}
}
