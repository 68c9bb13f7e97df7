package export

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
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
	scope := len(s.scope)
	var (
		req    = s.segs[:0]
		n      int   // records in req
		closed int   // the encoded size of req's groups before the last
		last   group // req's last group
		err    error // the shutdown deadline passed: stop
		flush  = func() {
			if len(req) > 0 && err == nil {
				err = s.send(req)
			}
			clear(req)
			req, n, closed, last = req[:0], 0, 0, group{}
		}
	)
	for _, it := range items {
		for i := range it.records() {
			if err != nil {
				break
			}
			rs := it.recordSize(i)
			if alone := (group{res: it.res, records: rs}).size(scope); int64(alone) > s.maxRequest {
				// Alone it is over the bound: send what precedes it, drop it.
				flush()
				if err == nil {
					s.drop([]segment{{it, i, i + 1}}, fmt.Errorf("%w: %d bytes encoded, more than otlp.max_request_bytes (%d)", errTooLarge, alone, s.maxRequest), "too large")
				}
				continue
			}
			same := len(req) > 0 && sameResource(last.res, it.res)
			open := same && req[len(req)-1].it == it && req[len(req)-1].hi == i
			var size int
			if same {
				size = closed + group{res: last.res, records: last.records + rs}.size(scope)
			} else {
				size = closed + group{res: it.res, records: rs}.size(scope)
				if len(req) > 0 {
					size += last.size(scope)
				}
			}
			if n+1 > maxBatchRecords || int64(size) > s.maxRequest {
				flush()
				same, open = false, false
			}
			switch {
			case same:
				last.records += rs
			default:
				if len(req) > 0 {
					closed += last.size(scope)
				}
				last = group{res: it.res, records: rs}
			}
			if open {
				req[len(req)-1].hi++
			} else {
				req = append(req, segment{it, i, i + 1})
			}
			n++
		}
	}
	flush()
	s.segs = req[:0]
	for _, it := range items {
		if it.settled == it.records() && s.acker != nil {
			s.acker.Ack(it.id, it.cursor)
		}
		// Otherwise the shutdown deadline passed: not delivered, not
		// acknowledged. They are read again after the restart.
		s.release(it)
	}
}

// sameResource reports whether two encoded resources are the same: the
// records of consecutive segments of one container share one ResourceLogs.
func sameResource(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0] || bytes.Equal(a, b))
}

// encodeRequest builds req's ExportLogsServiceRequest into s.body: a
// ResourceLogs for each run of segments of one resource, its ScopeLogs
// holding their records' encoded fields as they are.
func (s *OTLPSink) encodeRequest(req []segment) []byte {
	groups := s.groups[:0]
	size := 0
	for k, seg := range req {
		b := int(seg.it.offs[seg.hi] - seg.it.offs[seg.lo])
		if k > 0 && sameResource(groups[len(groups)-1].res, seg.it.res) {
			groups[len(groups)-1].records += b
			continue
		}
		groups = append(groups, group{res: seg.it.res, records: b})
	}
	for _, g := range groups {
		size += g.size(len(s.scope))
	}
	body := slices.Grow(s.body[:0], size)
	k := 0
	for _, g := range groups {
		body = appendGroupHeader(body, g, s.scope)
		for n := 0; n < g.records; k++ {
			seg := req[k]
			recs := seg.it.buf[seg.it.offs[seg.lo]:seg.it.offs[seg.hi]]
			body = append(body, recs...)
			n += len(recs)
		}
	}
	s.groups = groups[:0]
	if cap(body) <= maxKeptRequest {
		s.body = body
	} else {
		s.body = nil
	}
	return body
}

// maxKeptRequest bounds the request buffer the sink keeps between requests.
const maxKeptRequest = 8 << 20

// send exports one request, retrying retryable failures (see
// exportWithRetry). A request the backend refuses as too large is split in
// two halves, each sent in turn, down to a single record, which is dropped. A
// request refused as invalid is split likewise until it holds one container's
// records, which are dropped: one container's bad record never costs another
// container's lines. It returns an error only when the shutdown deadline
// passed.
func (s *OTLPSink) send(req []segment) error {
	var weight int64
	containers, records := 0, 0
	for k, seg := range req {
		records += seg.hi - seg.lo
		weight += seg.it.weight * int64(seg.hi-seg.lo) / int64(max(1, seg.it.records()))
		if k == 0 || seg.it.id != req[k-1].it.id {
			containers++
		}
	}
	_, span := s.tracer.Start(s.runCtx, "berth.export", trace.WithAttributes(
		attribute.Int("records", records), attribute.Int64("bytes", weight), attribute.Int("containers", containers)))
	partial, err := s.exportWithRetry(req, records)
	var ref *refusal
	if err != nil {
		ref = asRefusal(err)
	}
	outcome := "ok"
	switch {
	case err == nil:
	case ref != nil && ref.tooLarge && records > 1:
		outcome = "split"
	case ref != nil && !ref.tooLarge && containers > 1:
		outcome = "split"
	case ref != nil:
		outcome = "rejected"
	default:
		outcome = "undelivered"
	}
	if partial != nil {
		span.SetAttributes(attribute.Int64("rejected", partial.Rejected))
	}
	span.SetAttributes(attribute.String("outcome", outcome))
	if err != nil {
		span.SetStatus(otelcodes.Error, err.Error())
	}
	span.End()
	switch outcome {
	case "ok":
		rejected := int64(0)
		if partial != nil {
			rejected = min(max(partial.Rejected, 0), int64(records))
			s.counters.rejected.Add(rejected)
			s.log.Warn("the backend accepted a request but rejected some of its records; they are not retried",
				"records", records, "rejected", partial.Rejected, "err", partial)
		}
		s.counters.exported.Add(int64(records) - rejected)
		var newest int64
		for _, seg := range req {
			for _, t := range seg.it.ts[seg.lo:seg.hi] {
				newest = max(newest, t)
			}
			seg.it.settled += seg.hi - seg.lo
		}
		if newest > s.counters.newest.Load() {
			s.counters.newest.Store(newest)
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
		a, b = splitRecords(req, records/2)
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
			encoded := int64(seg.it.offs[seg.hi] - seg.it.offs[seg.lo])
			s.log.Error("a record is too large for the backend even alone; it is dropped (raise the backend's limit and otlp.max_request_bytes, or lower max_line_bytes)",
				"container", seg.it.name, "id", shortID(seg.it.id), "records", n, "encoded_bytes", encoded, "err", err)
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

// exportWithRetry sends req (records records) until the backend accepts it
// (partial says what it rejected of it, if it did), refuses it for good (a
// *refusal), or the shutdown deadline passes. Retryable failures wait on
// berth's backoff, or longer if the backend asked (Retry-After, RetryInfo).
func (s *OTLPSink) exportWithRetry(req []segment, records int) (partial *PartialSuccess, err error) {
	// It never gives up: the queue waits, the logs stay in Docker.
	bo := s.backoff.NewExponentialBackOff()
	for attempt := 1; ; attempt++ {
		body := s.encodeRequest(req)
		err := s.exp.Export(s.runCtx, body)
		if errors.As(err, &partial) {
			err = nil
		}
		s.counters.lastFailed.Store(err != nil)
		if err != nil {
			msg := err.Error()
			s.counters.lastError.Store(&msg)
			s.body = nil // the transport may still hold it
		}
		if err == nil {
			if attempt > 1 {
				s.log.Info("export recovered", "attempts", attempt)
			}
			return partial, nil
		}
		if s.runCtx.Err() != nil {
			return nil, s.runCtx.Err()
		}
		verdict, throttle := classifyExportError(err)
		if verdict != exportRetry {
			return nil, &refusal{tooLarge: verdict == exportTooLarge, err: err}
		}
		s.counters.failures.Add(1)
		d := max(bo.NextBackOff(), throttle)
		if attempt == 1 || attempt%10 == 0 {
			s.log.Warn("export failed; retrying (reading pauses when the in-flight bound is reached)",
				"records", records, "attempt", attempt, "retry_in", d.Round(time.Millisecond), "err", err)
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-s.runCtx.Done():
			t.Stop()
			return nil, s.runCtx.Err()
		}
	}
}

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
// records. Throttling (HTTP 429 and 503 with Retry-After, gRPC RetryInfo) is
// honoured.
func classifyExportError(err error) (verdict exportVerdict, throttle time.Duration) {
	var he *HTTPStatusError
	if errors.As(err, &he) {
		switch he.Code {
		case 400:
			return exportInvalid, 0
		case 413:
			return exportTooLarge, 0
		}
		return exportRetry, he.RetryAfter
	}
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
	return exportRetry, 0
}
