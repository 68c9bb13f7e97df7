package export

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/semaphore"
)

// OTLPSink exports records over OTLP and acknowledges a container's batches
// only after the backend accepted them.
//
// A checkpoint may only move past records the backend has, so the sink keeps
// each batch until its export is answered. Consume encodes a batch's records
// in their OTLP protobuf form (see otlpencode.go) into the queue (blocking while the bytes
// not yet acknowledged exceed the in-flight bound: backpressure, never a
// drop) and one exporter goroutine sends the queue in order, retrying
// retryable failures for as long as berth runs, then acknowledges.
type OTLPSink struct {
	exp         Exporter
	acker       logs.Acker
	log         *slog.Logger
	tracer      trace.Tracer
	maxInFlight int64
	maxRequest  int64 // the encoded size of one export request, at most
	backoff     config.Backoff
	budget      *semaphore.Weighted
	queue       chan *exportItem
	stop        chan struct{}
	done        chan struct{}
	runCtx      context.Context
	cancelRun   context.CancelFunc
	stopOnce    sync.Once
	closed      atomic.Bool

	resources resourceCache
	scope     []byte    // the encoded scope of every record
	items     sync.Pool // of *exportItem, their buffers reused
	segs      []segment // the request being packed; the exporter goroutine's
	body      []byte    // the request being sent; the exporter goroutine's
	groups    []group   // the request's resources; the exporter goroutine's

	counters otlpCounters
}

var _ logs.Sink = (*OTLPSink)(nil)

// otlpCounters is what the sink did; the sink's instruments, Stats, Lag and
// Healthy read it.
type otlpCounters struct {
	exported        atomic.Int64 // records the backend accepted
	rejected        atomic.Int64 // records refused as invalid, too large to send alone, or in a partial success
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

// recordOverhead is what a queued record holds in memory besides its body,
// for the in-flight bound: its encoding's fields (at most 45 bytes: tags,
// lengths, two timestamps, two attributes), its offset and timestamp in its
// batch (12 bytes), rounded up.
const recordOverhead = 64

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
	res     []byte  // its container's encoded resource (shared, read only)
	buf     []byte  // its records' encoded log_records fields, in order
	offs    []int32 // record i is buf[offs[i]:offs[i+1]]
	ts      []int64 // record i's timestamp, UnixNano
	size    int64   // the encoded size of a request of its records alone
	weight  int64
	settled int // records delivered or dropped so far
}

// records is the number of the item's records.
func (it *exportItem) records() int { return len(it.ts) }

// recordSize is the encoded size of record i's log_records field.
func (it *exportItem) recordSize(i int) int { return int(it.offs[i+1] - it.offs[i]) }

// NewOTLPSink starts the sink's exporter goroutine; Shutdown stops it. cfg
// bounds the bytes in flight (MaxInFlightBytes) and the encoded size of each
// export request (OTLP.MaxRequestBytes), bo paces the retries of a
// failed export; set.Version, berth's, is the instrumentation scope's
// version of the exported records. The sink traces each export request with
// set's tracer, logs to set's logger and reports its counters, lag and
// in-flight bytes as observable instruments of set's meter provider.
func NewOTLPSink(exp Exporter, acker logs.Acker, cfg config.Export, bo config.Backoff, set telemetry.Settings) (*OTLPSink, error) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &OTLPSink{
		exp: exp, acker: acker, log: set.Logger, tracer: set.Tracer(),
		maxInFlight: cfg.MaxInFlightBytes, maxRequest: cfg.OTLP.MaxRequestBytes, backoff: bo,
		budget:    semaphore.NewWeighted(cfg.MaxInFlightBytes),
		queue:     make(chan *exportItem, queueItems),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		runCtx:    ctx,
		cancelRun: cancel,
		scope:     encodeScope(set.Version),
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

// Consume encodes the batch into the export queue. It blocks while the
// in-flight bound is reached.
func (s *OTLPSink) Consume(ctx context.Context, b *logs.Batch) error {
	if s.closed.Load() {
		return errSinkClosed
	}
	// The weight is what the batch holds once encoded: each body and each
	// record's fields.
	var bodies int64
	for i := range b.Records {
		bodies += int64(len(b.Records[i].Body))
	}
	weight := bodies + recordOverhead*int64(len(b.Records))
	weight = min(weight, s.maxInFlight) // a huge batch alone still passes
	if err := s.budget.Acquire(ctx, weight); err != nil {
		return fmt.Errorf("wait for in-flight room: %w", err)
	}
	s.counters.inFlightBytes.Add(weight)
	it := s.encode(b, int(bodies))
	it.weight = weight
	select {
	case s.queue <- it:
		return nil
	case <-ctx.Done():
		s.release(it)
		return fmt.Errorf("wait for room in the export queue: %w", ctx.Err())
	}
}

// encode builds the queue item of a batch: its records encoded, in a buffer
// of a previous item when one is free.
func (s *OTLPSink) encode(b *logs.Batch, bodies int) *exportItem {
	it, _ := s.items.Get().(*exportItem)
	if it == nil {
		it = &exportItem{}
	}
	*it = exportItem{id: b.Meta.ID, name: b.Meta.Name, cursor: b.Cursor, res: s.resources.get(b.Meta),
		buf: it.buf[:0], offs: append(it.offs[:0], 0), ts: it.ts[:0]}
	need := bodies + 48*len(b.Records)
	if cap(it.buf) > 2*need+64<<10 {
		// A buffer much larger than the batch would hold more than its
		// weight says while it is queued.
		it.buf = nil
	}
	it.buf = slices.Grow(it.buf, need)
	for i := range b.Records {
		r := &b.Records[i]
		it.buf = appendOTLPRecord(it.buf, r)
		it.offs = append(it.offs, int32(len(it.buf)))
		it.ts = append(it.ts, r.Timestamp.UnixNano())
	}
	it.size = int64(group{res: it.res, records: len(it.buf)}.size(len(s.scope)))
	return it
}

// release returns an item's weight to the in-flight bound, and its buffers
// to the pool.
func (s *OTLPSink) release(it *exportItem) {
	s.budget.Release(it.weight)
	s.counters.inFlightBytes.Add(-it.weight)
	if cap(it.buf) <= maxPooledItem {
		it.res = nil
		s.items.Put(it)
	}
}

// maxPooledItem bounds the buffer of an item kept for reuse: a batch of huge
// lines is not held on to.
const maxPooledItem = 1 << 20

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
		n, size := items[0].records(), items[0].size
	more:
		for n < maxBatchRecords && size < s.maxRequest {
			select {
			case it := <-s.queue:
				items = append(items, it)
				n += it.records()
				size += it.size
			default:
				break more
			}
		}
		s.exportItems(items)
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

func shortID(id string) string { return id[:min(12, len(id))] }
