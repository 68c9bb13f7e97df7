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
	"unsafe"

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
	maxRequest  int64 // the encoded size of one export request, at most
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

	recs []sdklog.Record // the request being exported; the exporter goroutine's
	segs []segment       // the request being packed; the exporter goroutine's

	counters otlpCounters
}

var _ logs.Sink = (*OTLPSink)(nil)

// otlpCounters is what the sink did; the sink's instruments, Stats, Lag and
// Healthy read it.
type otlpCounters struct {
	exported        atomic.Int64 // records the backend accepted
	rejected        atomic.Int64 // records refused as invalid, or too large to send alone
	rejectedBatches atomic.Int64 // refusals that dropped records
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
	// Rejected counts the records dropped: refused by the backend as
	// invalid, or too large to be sent even alone; they are not retried.
	Rejected int64
	// Failures counts failed export attempts (each retried).
	Failures int64
	// InFlightBytes is the weight of the records accepted by Consume and
	// not yet acknowledged.
	InFlightBytes int64
}

// recordOverhead is what a queued record holds in memory besides its body
// (which the SDK record holds a copy of), for the in-flight bound: the
// converted SDK record's struct, with room for five attributes inline (584
// bytes with the SDK of go.mod), and a little for the allocator's rounding.
var recordOverhead = int64(unsafe.Sizeof(sdklog.Record{})) + 32

// maxBatchRecords bounds one export request by records (otlp.max_request_bytes
// bounds it by bytes); queueItems bounds the batches queued for the exporter
// goroutine (the in-flight bound usually binds first).
const (
	maxBatchRecords = 2048
	queueItems      = 1024
)

// exportItem is one batch of one container in the export queue. Its records
// are sent in order, in one or more requests (see exportItems); it is
// acknowledged once every one of them was delivered or dropped.
type exportItem struct {
	id      string
	name    string
	cursor  logs.Cursor
	records []sdklog.Record
	resSize int64 // the encoded size of its resource and scope (an upper bound)
	size    int64 // resSize and its records' encoded sizes (an upper bound)
	weight  int64
	settled int // records delivered or dropped so far
}

// NewOTLPSink starts the sink's exporter goroutine; Shutdown stops it. cfg
// bounds the bytes in flight (MaxInFlightBytes) and the encoded size of each
// export request (OTLP.MaxRequestBytes), bo paces the retries of a
// failed export; set.Version, berth's, is the instrumentation scope's
// version of the exported records. The sink traces each export request with
// set's tracer, logs to set's logger and reports its counters, lag and
// in-flight bytes as observable instruments of set's meter provider.
func NewOTLPSink(exp sdklog.Exporter, acker logs.Acker, cfg config.Export, bo config.Backoff, set telemetry.Settings) (*OTLPSink, error) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &OTLPSink{
		exp: exp, acker: acker, log: set.Logger, tracer: set.Tracer(),
		maxInFlight: cfg.MaxInFlightBytes, maxRequest: cfg.OTLP.MaxRequestBytes, backoff: bo, version: set.Version,
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
		metric.WithDescription("Log records dropped: rejected by the backend as invalid, or too large to be sent even alone (not retried)."))
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
	// The weight is what the batch holds once converted: each body (copied
	// into its SDK record) and each record's structs.
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
	it.resSize = resourceSize(b.Meta, s.version)
	it.size = it.resSize
	for i := range it.records {
		it.size += recordSize(&it.records[i])
	}
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
	for {
		items = items[:0]
		select {
		case it := <-s.queue:
			items = append(items, it)
		case <-s.stop:
			// Flush what is queued, then end.
			select {
			case it := <-s.queue:
				items = append(items, it)
			default:
				return
			}
		}
		n, size := len(items[0].records), items[0].size
	more:
		for n < maxBatchRecords && size < s.maxRequest {
			select {
			case it := <-s.queue:
				items = append(items, it)
				n += len(it.records)
				size += it.size
			default:
				break more
			}
		}
		s.exportItems(items)
	}
}

// segment is records [lo, hi) of an item: a request is a list of them.
type segment struct {
	it     *exportItem
	lo, hi int
}

// exportItems exports the items' records in order, in requests of at most
// maxBatchRecords records and otlp.max_request_bytes encoded bytes, each
// retried until it is delivered, refused, or the shutdown deadline passes (see
// send); then it acknowledges the items whose records were all delivered or
// dropped, and releases them all.
func (s *OTLPSink) exportItems(items []*exportItem) {
	var (
		req   = s.segs[:0]
		n     int   // records in req
		size  int64 // req's encoded size
		err   error // the shutdown deadline passed: stop
		flush = func() {
			if len(req) > 0 && err == nil {
				err = s.send(req)
			}
			clear(req)
			req, n, size = req[:0], 0, 0
		}
	)
	for _, it := range items {
		for i := range it.records {
			if err != nil {
				break
			}
			rs := recordSize(&it.records[i])
			if it.resSize+rs > s.maxRequest {
				// Alone it is over the bound: send what precedes it, drop it.
				flush()
				if err == nil {
					s.drop([]segment{{it, i, i + 1}}, fmt.Errorf("%w: %d bytes encoded, more than otlp.max_request_bytes (%d)", errTooLarge, it.resSize+rs, s.maxRequest), "too large")
				}
				continue
			}
			open := len(req) > 0 && req[len(req)-1].it == it && req[len(req)-1].hi == i
			add := rs
			if !open {
				add += it.resSize
			}
			if n+1 > maxBatchRecords || size+add > s.maxRequest {
				flush()
				open, add = false, rs+it.resSize
			}
			if open {
				req[len(req)-1].hi++
			} else {
				req = append(req, segment{it, i, i + 1})
			}
			n++
			size += add
		}
	}
	flush()
	s.segs = req[:0]
	for _, it := range items {
		if it.settled == len(it.records) && s.acker != nil {
			s.acker.Ack(it.id, it.cursor)
		}
		// Otherwise the shutdown deadline passed: not delivered, not
		// acknowledged. They are read again after the restart.
		s.release(it)
		it.records = nil
	}
}

// send exports one request, retrying retryable failures (see
// exportWithRetry). A request the backend refuses as too large is split in
// two halves, each sent in turn, down to a single record, which is dropped. A
// request refused as invalid is split likewise until it holds one container's
// records, which are dropped: one container's bad record never costs another
// container's lines. It returns an error only when the shutdown deadline
// passed.
func (s *OTLPSink) send(req []segment) error {
	recs := s.recs[:0]
	var weight int64
	containers := 0
	for k, seg := range req {
		recs = append(recs, seg.it.records[seg.lo:seg.hi]...)
		weight += seg.it.weight * int64(seg.hi-seg.lo) / int64(max(1, len(seg.it.records)))
		if k == 0 || seg.it.id != req[k-1].it.id {
			containers++
		}
	}
	s.recs = recs
	defer clear(recs) // drop references to the records' memory
	_, span := s.tracer.Start(s.runCtx, "berth.export", trace.WithAttributes(
		attribute.Int("records", len(recs)), attribute.Int64("bytes", weight), attribute.Int("containers", containers)))
	err := s.exportWithRetry(recs)
	var ref *refusal
	if err != nil {
		ref = asRefusal(err)
	}
	outcome := "ok"
	switch {
	case err == nil:
	case ref != nil && ref.tooLarge && len(recs) > 1:
		outcome = "split"
	case ref != nil && !ref.tooLarge && containers > 1:
		outcome = "split"
	case ref != nil:
		outcome = "rejected"
	default:
		outcome = "undelivered"
	}
	span.SetAttributes(attribute.String("outcome", outcome))
	if err != nil {
		span.SetStatus(otelcodes.Error, err.Error())
	}
	span.End()
	switch outcome {
	case "ok":
		s.counters.exported.Add(int64(len(recs)))
		var newest int64
		for i := range recs {
			newest = max(newest, recs[i].Timestamp().UnixNano())
		}
		if newest > s.counters.newest.Load() {
			s.counters.newest.Store(newest)
		}
		for _, seg := range req {
			seg.it.settled += seg.hi - seg.lo
		}
		return nil
	case "rejected":
		reason := "invalid"
		if ref.tooLarge {
			reason = "too large"
		}
		s.drop(req, err, reason)
		return nil
	case "undelivered":
		return err
	}
	var a, b []segment
	if ref.tooLarge {
		a, b = splitRecords(req, len(recs)/2)
	} else {
		a, b = splitContainers(req)
	}
	if err := s.send(a); err != nil {
		return err
	}
	return s.send(b)
}

// splitRecords cuts a request into its first n records and the rest.
func splitRecords(req []segment, n int) (a, b []segment) {
	for k, seg := range req {
		l := seg.hi - seg.lo
		if n >= l {
			a = append(a, seg)
			n -= l
			continue
		}
		if n > 0 {
			a = append(a, segment{seg.it, seg.lo, seg.lo + n})
			seg.lo += n
		}
		b = append(append(b, seg), req[k+1:]...)
		return a, b
	}
	return a, b
}

// splitContainers cuts a request of several containers in two, at the
// container boundary nearest its middle segment.
func splitContainers(req []segment) (a, b []segment) {
	best := -1
	for k := 1; k < len(req); k++ {
		if req[k].it.id != req[k-1].it.id && (best < 0 || abs(k-len(req)/2) < abs(best-len(req)/2)) {
			best = k
		}
	}
	return req[:best:best], req[best:]
}

func abs(x int) int { return max(x, -x) }

// drop settles records that will never be delivered: counted as rejected and
// logged, once per container.
func (s *OTLPSink) drop(req []segment, err error, reason string) {
	s.counters.rejectedBatches.Add(1)
	for _, seg := range req {
		n := seg.hi - seg.lo
		seg.it.settled += n
		s.counters.rejected.Add(int64(n))
		if reason == "too large" {
			var bytes int64
			for i := seg.lo; i < seg.hi; i++ {
				bytes += recordSize(&seg.it.records[i])
			}
			s.log.Error("a record is too large for the backend even alone; it is dropped (raise the backend's limit and otlp.max_request_bytes, or lower max_line_bytes)",
				"container", seg.it.name, "id", shortID(seg.it.id), "records", n, "encoded_bytes", bytes, "err", err)
			continue
		}
		s.log.Error("the backend rejected records as invalid; they are not retried",
			"container", seg.it.name, "id", shortID(seg.it.id), "records", n, "err", err)
	}
}

// errTooLarge marks a record over otlp.max_request_bytes by itself.
var errTooLarge = errors.New("record too large")

// refusal is an export the backend refused for good: as too large, or as
// invalid. Retrying the same request cannot succeed.
type refusal struct {
	tooLarge bool
	err      error
}

func (r *refusal) Error() string {
	if r.tooLarge {
		return "refused by the backend as too large: " + r.err.Error()
	}
	return "rejected by the backend as invalid: " + r.err.Error()
}
func (r *refusal) Unwrap() error { return r.err }

// asRefusal returns the refusal in err's chain, or nil.
func asRefusal(err error) *refusal {
	var r *refusal
	if errors.As(err, &r) {
		return r
	}
	return nil
}

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
		verdict, throttle := classifyExportError(err)
		if verdict != exportRetry {
			return &refusal{tooLarge: verdict == exportTooLarge, err: err}
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

// exportVerdict is what berth does after a failed export.
type exportVerdict int

const (
	// exportRetry: retry the same request (the backend is down, busy,
	// throttling, or misconfigured and waiting for a fix).
	exportRetry exportVerdict = iota
	// exportTooLarge: the backend refused the request as too large; split
	// it.
	exportTooLarge
	// exportInvalid: the backend refused the records as invalid; retrying
	// them cannot succeed.
	exportInvalid
)

// tooLargeMessage recognizes a gRPC RESOURCE_EXHAUSTED about the message's
// size, rather than throttling: grpc-go says "received message larger than
// max (5000000 vs. 4194304)", grpc-java "message exceeds maximum size".
var tooLargeMessage = regexp.MustCompile(`(?i)larger than max|exceeds maximum|too large`)

// classifyExportError says what to do after a failed export, and how long
// the backend asked berth to wait, if it did. A request too large (HTTP 413,
// gRPC RESOURCE_EXHAUSTED about the message's size) is split; records refused
// as invalid (HTTP 400, gRPC INVALID_ARGUMENT) are not retried.
// Authentication, authorization and not-found answers are retried: they are
// configuration faults, and berth waits for them to be fixed rather than drop
// records.
func classifyExportError(err error) (verdict exportVerdict, throttle time.Duration) {
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok && ri.RetryDelay != nil {
				throttle = ri.RetryDelay.AsDuration()
			}
		}
		switch {
		case st.Code() == codes.InvalidArgument:
			return exportInvalid, throttle
		case st.Code() == codes.ResourceExhausted && tooLargeMessage.MatchString(st.Message()):
			return exportTooLarge, 0
		}
		return exportRetry, throttle
	}
	if m := httpStatus.FindStringSubmatch(err.Error()); m != nil {
		switch code, _ := strconv.Atoi(m[1]); code {
		case 400:
			return exportInvalid, 0
		case 413:
			return exportTooLarge, 0
		}
	}
	return exportRetry, 0
}

func shortID(id string) string { return id[:min(12, len(id))] }
