package export

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	otellog "go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/metric"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/semaphore"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// OTLPSink exports records through an OpenTelemetry log exporter and
// acknowledges a container's batches only after the backend accepted them.
//
// berth does not use the SDK's BatchProcessor: it cannot say which records
// were delivered, and a checkpoint may only move past records the backend
// has. Instead Consume copies a batch into the queue (blocking while the bytes
// not yet acknowledged exceed the in-flight bound: backpressure, never a
// drop) and one exporter goroutine sends the queue in order, retrying
// retryable failures for as long as berth runs, then acknowledges.
type OTLPSink struct {
	exp         sdklog.Exporter
	acker       logs.Acker
	log         *slog.Logger
	tracer      trace.Tracer
	maxInFlight int64
	backoff     config.Backoff
	version     string
	budget      *semaphore.Weighted
	queue       chan *exportItem
	stop        chan struct{}
	done        chan struct{}
	runCtx      context.Context
	cancelRun   context.CancelFunc
	stopOnce    sync.Once
	closed      atomic.Bool

	mu        sync.Mutex
	providers map[*logs.Meta]otellog.Logger

	counters otlpCounters
}

var _ logs.Sink = (*OTLPSink)(nil)

// otlpCounters is what the sink did; the sink's instruments, Stats, Lag and
// Healthy read it.
type otlpCounters struct {
	exported        atomic.Int64 // records the backend accepted
	rejected        atomic.Int64 // records in batches the backend refused as invalid
	rejectedBatches atomic.Int64
	failures        atomic.Int64 // failed export attempts (retried)
	inFlightBytes   atomic.Int64
	newest          atomic.Int64 // UnixNano of the newest acknowledged record's timestamp
	lastFailed      atomic.Bool  // the last export attempt failed
	lastError       atomic.Pointer[string]
}

// OTLPStats is a snapshot of the sink's counters.
type OTLPStats struct {
	// Exported counts the records the backend accepted.
	Exported int64
	// Rejected counts the records in batches the backend refused as
	// invalid; they are not retried.
	Rejected int64
	// Failures counts failed export attempts (each retried).
	Failures int64
	// InFlightBytes is the weight of the records accepted by Consume and
	// not yet acknowledged.
	InFlightBytes int64
}

// recordOverhead is what a record costs besides its body, for the in-flight
// bound.
const recordOverhead = 256

// maxBatchRecords bounds one export request; queueItems bounds the batches
// queued for the exporter goroutine (the in-flight bound usually binds
// first).
const (
	maxBatchRecords = 2048
	queueItems      = 1024
)

type exportItem struct {
	id      string
	name    string
	cursor  logs.Cursor
	records []sdklog.Record
	weight  int64
}

// NewOTLPSink starts the sink's exporter goroutine; Shutdown stops it. cfg
// bounds the bytes in flight (MaxInFlightBytes), bo paces the retries of a
// failed export, and version is berth's, reported as the instrumentation
// scope's of the exported records. The sink traces each export request with
// set's tracer, logs to set's logger and reports its counters, lag and
// in-flight bytes as observable instruments of set's meter provider.
func NewOTLPSink(exp sdklog.Exporter, acker logs.Acker, cfg config.Export, bo config.Backoff, version string, set telemetry.Settings) (*OTLPSink, error) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &OTLPSink{
		exp: exp, acker: acker, log: set.Logger, tracer: set.Tracer(),
		maxInFlight: cfg.MaxInFlightBytes, backoff: bo, version: version,
		budget:    semaphore.NewWeighted(cfg.MaxInFlightBytes),
		queue:     make(chan *exportItem, queueItems),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		runCtx:    ctx,
		cancelRun: cancel,
		providers: make(map[*logs.Meta]otellog.Logger),
	}
	if err := s.registerInstruments(set.Meter()); err != nil {
		cancel()
		return nil, err
	}
	go s.run()
	return s, nil
}

// registerInstruments registers the sink's observable instruments, read from
// its counters whenever metrics are collected, for as long as the meter
// provider lives (after Shutdown too: the final values).
func (s *OTLPSink) registerInstruments(meter metric.Meter) error {
	exported, err1 := meter.Int64ObservableCounter("berth.records.exported", metric.WithUnit("{record}"),
		metric.WithDescription("Log records the backend acknowledged."))
	rejected, err2 := meter.Int64ObservableCounter("berth.records.rejected", metric.WithUnit("{record}"),
		metric.WithDescription("Log records the backend rejected as invalid (not retried)."))
	failures, err3 := meter.Int64ObservableCounter("berth.export.failures", metric.WithUnit("{failure}"),
		metric.WithDescription("Failed export attempts (retried)."))
	lag, err4 := meter.Float64ObservableGauge("berth.lag", metric.WithUnit("s"),
		metric.WithDescription("Now minus the timestamp of the newest record the backend acknowledged."))
	inflight, err5 := meter.Int64ObservableGauge("berth.inflight.bytes", metric.WithUnit("By"),
		metric.WithDescription("Bytes of records read but not yet acknowledged."))
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return fmt.Errorf("otlp sink instruments: %w", err)
	}
	_, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(exported, s.counters.exported.Load())
		o.ObserveInt64(rejected, s.counters.rejected.Load())
		o.ObserveInt64(failures, s.counters.failures.Load())
		o.ObserveInt64(inflight, s.counters.inFlightBytes.Load())
		if l, ok := s.Lag(); ok {
			o.ObserveFloat64(lag, l.Seconds())
		}
		return nil
	}, exported, rejected, failures, lag, inflight)
	if err != nil {
		return fmt.Errorf("otlp sink instruments: %w", err)
	}
	return nil
}

// Stats returns a snapshot of the sink's counters.
func (s *OTLPSink) Stats() OTLPStats {
	return OTLPStats{
		Exported:      s.counters.exported.Load(),
		Rejected:      s.counters.rejected.Load(),
		Failures:      s.counters.failures.Load(),
		InFlightBytes: s.counters.inFlightBytes.Load(),
	}
}

// Lag is now minus the timestamp of the newest record the backend
// acknowledged; false before the first acknowledgement.
func (s *OTLPSink) Lag() (time.Duration, bool) {
	n := s.counters.newest.Load()
	if n == 0 {
		return 0, false
	}
	return time.Since(time.Unix(0, n)), true
}

// Healthy reports whether the last export attempt succeeded (true before
// any), and the last export error if it did not.
func (s *OTLPSink) Healthy() (bool, string) {
	if !s.counters.lastFailed.Load() {
		return true, ""
	}
	if e := s.counters.lastError.Load(); e != nil {
		return false, *e
	}
	return false, "export failing"
}

// errSinkClosed says Consume was called after Shutdown.
var errSinkClosed = errors.New("otlp sink is shut down")

// Consume copies the batch into the export queue. It blocks while the
// in-flight bound is reached.
func (s *OTLPSink) Consume(ctx context.Context, b *logs.Batch) error {
	if s.closed.Load() {
		return errSinkClosed
	}
	var weight int64
	for i := range b.Records {
		weight += int64(len(b.Records[i].Body)) + recordOverhead
	}
	weight = min(weight, s.maxInFlight) // a huge batch alone still passes
	if err := s.budget.Acquire(ctx, weight); err != nil {
		return fmt.Errorf("wait for in-flight room: %w", err)
	}
	s.counters.inFlightBytes.Add(weight)
	it := &exportItem{id: b.Meta.ID, name: b.Meta.Name, cursor: b.Cursor, weight: weight}
	it.records = s.convert(b)
	select {
	case s.queue <- it:
		return nil
	case <-ctx.Done():
		s.release(it)
		return fmt.Errorf("wait for room in the export queue: %w", ctx.Err())
	}
}

func (s *OTLPSink) release(it *exportItem) {
	s.budget.Release(it.weight)
	s.counters.inFlightBytes.Add(-it.weight)
}

// captureKey carries the slice a capture processor appends to.
type captureKey struct{}

// captureProcessor hands the SDK's finished record (resource and scope set
// by its provider) back to the Consume that emitted it.
type captureProcessor struct{}

var _ sdklog.Processor = captureProcessor{}

func (captureProcessor) OnEmit(ctx context.Context, r *sdklog.Record) error {
	if dst, ok := ctx.Value(captureKey{}).(*[]sdklog.Record); ok {
		*dst = append(*dst, r.Clone())
	}
	return nil
}
func (captureProcessor) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }
func (captureProcessor) Shutdown(context.Context) error                         { return nil }
func (captureProcessor) ForceFlush(context.Context) error                       { return nil }

// maxProviders bounds the per-container provider cache.
const maxProviders = 4096

// logger returns the logger whose resource describes the container.
func (s *OTLPSink) logger(m *logs.Meta) otellog.Logger {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.providers[m]; ok {
		return l
	}
	if len(s.providers) >= maxProviders {
		clear(s.providers)
	}
	lp := sdklog.NewLoggerProvider(
		sdklog.WithResource(containerResource(m)),
		sdklog.WithProcessor(captureProcessor{}),
	)
	l := lp.Logger(telemetry.ScopeName, otellog.WithInstrumentationVersion(s.version))
	s.providers[m] = l
	return l
}

// containerResource is the resource of a container's records, in
// OpenTelemetry semantic conventions, with each selected label as
// container.label.<key>. It is built once per Meta (see logger), never per
// record.
func containerResource(m *logs.Meta) *resource.Resource {
	attrs := make([]attribute.KeyValue, 0, 7+len(m.SelectedLabels))
	attrs = append(attrs,
		attribute.String("container.id", m.ID),
		attribute.String("container.name", m.Name),
		attribute.String("container.image.name", m.ImageName),
		attribute.String("container.runtime", "docker"),
		attribute.String("service.name", m.ServiceName),
		attribute.String("host.name", m.HostName),
	)
	if len(m.ImageTags) > 0 {
		attrs = append(attrs, attribute.StringSlice("container.image.tags", m.ImageTags))
	}
	for _, l := range m.SelectedLabels {
		attrs = append(attrs, attribute.String(labelAttributePrefix+l.Key, l.Value))
	}
	return resource.NewSchemaless(attrs...)
}

// labelAttributePrefix starts the resource attribute of each selected
// container label: container.label.<key>.
const labelAttributePrefix = "container.label."

var (
	attrStdout    = attribute.String("log.iostream", "stdout")
	attrStderr    = attribute.String("log.iostream", "stderr")
	attrTruncated = attribute.Bool("log.truncated", true)
)

// convert turns a batch into SDK records. A body that is valid UTF-8 is a
// string; any other is sent as bytes, exactly.
func (s *OTLPSink) convert(b *logs.Batch) []sdklog.Record {
	out := make([]sdklog.Record, 0, len(b.Records))
	ctx := context.WithValue(context.Background(), captureKey{}, &out)
	l := s.logger(b.Meta)
	for i := range b.Records {
		r := &b.Records[i]
		var lr otellog.Record
		lr.SetTimestamp(r.Timestamp)
		lr.SetObservedTimestamp(r.Observed)
		if utf8.Valid(r.Body) {
			lr.SetBody(attribute.StringValue(string(r.Body)))
		} else {
			lr.SetBody(attribute.ByteSliceValue(append([]byte(nil), r.Body...)))
		}
		if r.Stream == logs.Stderr {
			lr.AddAttributes(attrStderr)
		} else {
			lr.AddAttributes(attrStdout)
		}
		if r.Truncated {
			lr.AddAttributes(attrTruncated)
		}
		l.Emit(ctx, lr)
	}
	return out
}

// run is the exporter goroutine: it sends the queue in order and
// acknowledges what was delivered.
func (s *OTLPSink) run() {
	defer close(s.done)
	var items []*exportItem
	var recs []sdklog.Record
	for {
		items = items[:0]
		select {
		case it := <-s.queue:
			items = append(items, it)
		case <-s.stop:
			// Flush what is queued, then end.
			for {
				select {
				case it := <-s.queue:
					s.exportItems([]*exportItem{it}, recs[:0])
					continue
				default:
				}
				return
			}
		}
		n := len(items[0].records)
	more:
		for n < maxBatchRecords {
			select {
			case it := <-s.queue:
				items = append(items, it)
				n += len(it.records)
			default:
				break more
			}
		}
		recs = s.exportItems(items, recs[:0])
	}
}

// exportItems exports the items as one request, retrying until it is
// delivered, refused as invalid, or the shutdown deadline passes; then it
// acknowledges and releases them.
func (s *OTLPSink) exportItems(items []*exportItem, recs []sdklog.Record) []sdklog.Record {
	var weight int64
	for _, it := range items {
		recs = append(recs, it.records...)
		weight += it.weight
	}
	_, span := s.tracer.Start(s.runCtx, "berth.export", trace.WithAttributes(
		attribute.Int("records", len(recs)), attribute.Int64("bytes", weight), attribute.Int("containers", len(items))))
	err := s.exportWithRetry(recs)
	outcome := "ok"
	switch {
	case err == nil:
	case errors.Is(err, errRejected):
		outcome = "rejected"
	default:
		outcome = "undelivered"
	}
	span.SetAttributes(attribute.String("outcome", outcome))
	if err != nil {
		span.SetStatus(otelcodes.Error, err.Error())
	}
	span.End()
	switch {
	case err == nil:
		s.counters.exported.Add(int64(len(recs)))
		var newest int64
		for i := range recs {
			newest = max(newest, recs[i].Timestamp().UnixNano())
		}
		if newest > s.counters.newest.Load() {
			s.counters.newest.Store(newest)
		}
	case errors.Is(err, errRejected):
		s.counters.rejected.Add(int64(len(recs)))
		s.counters.rejectedBatches.Add(1)
		for _, it := range items {
			s.log.Error("the backend rejected records as invalid; they are not retried",
				"container", it.name, "id", shortID(it.id), "records", len(it.records), "err", err)
		}
	default:
		// The shutdown deadline passed: not delivered, not acknowledged.
		// They are read again after the restart.
		for _, it := range items {
			s.release(it)
		}
		clear(recs)
		return recs
	}
	for _, it := range items {
		if s.acker != nil {
			s.acker.Ack(it.id, it.cursor)
		}
		s.release(it)
		it.records = nil
	}
	clear(recs) // drop references to the records' memory
	return recs
}

// errRejected marks an export the backend refused as invalid.
var errRejected = errors.New("rejected by the backend")

func (s *OTLPSink) exportWithRetry(recs []sdklog.Record) error {
	// It never gives up: the queue waits, the logs stay in Docker.
	bo := s.backoff.NewExponentialBackOff()
	for attempt := 1; ; attempt++ {
		err := s.exp.Export(s.runCtx, recs)
		s.counters.lastFailed.Store(err != nil)
		if err != nil {
			msg := err.Error()
			s.counters.lastError.Store(&msg)
		}
		if err == nil {
			if attempt > 1 {
				s.log.Info("export recovered", "attempts", attempt)
			}
			return nil
		}
		if s.runCtx.Err() != nil {
			return s.runCtx.Err()
		}
		permanent, throttle := classifyExportError(err)
		if permanent {
			return fmt.Errorf("%w: %v", errRejected, err)
		}
		s.counters.failures.Add(1)
		d := max(bo.NextBackOff(), throttle)
		if attempt == 1 || attempt%10 == 0 {
			s.log.Warn("export failed; retrying (reading pauses when the in-flight bound is reached)",
				"records", len(recs), "attempt", attempt, "retry_in", d.Round(time.Millisecond), "err", err)
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-s.runCtx.Done():
			t.Stop()
			return s.runCtx.Err()
		}
	}
}

// Shutdown stops accepting batches, exports what is queued (retrying until
// ctx ends), acknowledges it and returns. Records not delivered by then are
// not acknowledged: berth reads them again after a restart. Call it after
// the last Consume returned. It is idempotent.
func (s *OTLPSink) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() {
		s.closed.Store(true)
		close(s.stop)
	})
	var err error
	select {
	case <-s.done:
	case <-ctx.Done():
		s.cancelRun()
		<-s.done
		err = fmt.Errorf("otlp sink: records still queued at the shutdown deadline: %w", ctx.Err())
	}
	s.cancelRun()
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return errors.Join(err, s.exp.Shutdown(sctx))
}

// httpStatus finds the status code in an OTLP/HTTP exporter's error
// ("failed to send logs to URL: 400 Bad Request (body: ...)"): the exporter
// does not expose it as a value. This is the one place where berth reads an
// export error's words.
var httpStatus = regexp.MustCompile(`failed to send logs to \S+: ([1-5][0-9][0-9]) `)

// classifyExportError says whether an export error is permanent (the backend
// refused the records as invalid: retrying the same records cannot succeed)
// and how long the backend asked berth to wait, if it did. Authentication,
// authorization and not-found answers are not permanent: they are
// configuration faults, and berth waits for them to be fixed rather than
// drop records.
func classifyExportError(err error) (permanent bool, throttle time.Duration) {
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok && ri.RetryDelay != nil {
				throttle = ri.RetryDelay.AsDuration()
			}
		}
		return st.Code() == codes.InvalidArgument, throttle
	}
	if m := httpStatus.FindStringSubmatch(err.Error()); m != nil {
		code, _ := strconv.Atoi(m[1])
		return code == 400 || code == 413, 0
	}
	return false, 0
}

func shortID(id string) string { return id[:min(12, len(id))] }
