package export

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

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
