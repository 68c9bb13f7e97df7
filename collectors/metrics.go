package collectors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// instruments are what the collector counts about its bursts. Every attribute
// set is built once, in newInstruments, and passed as a prebuilt option
// slice: recording a batch or a burst allocates nothing.
type instruments struct {
	recordsRead      metric.Int64Counter     // berth.records.read, by log.iostream
	bytesRead        metric.Int64Counter     // berth.bytes.read, by log.iostream
	burstDuration    metric.Float64Histogram // berth.burst.duration, by end_reason
	deadlineExpiries metric.Int64Counter     // berth.deadline.expiries, by kind
	logsRequests     metric.Int64Counter     // berth.logs.requests
	gapCount         metric.Int64Counter     // berth.log.gaps, by log.iostream
	gapSeconds       metric.Float64Counter   // berth.log.gap.duration, by log.iostream
	unparsed         metric.Int64Counter     // berth.records.unparsed

	byStream [2][]metric.AddOption // indexed by logs.Stream-1
	byEnd    map[EndReason][]metric.RecordOption
	idle     []metric.AddOption
	maxBurst []metric.AddOption
}

// burstDurationBuckets are the bucket boundaries of berth.burst.duration, in
// seconds: from a burst that found nothing new to one cut at max_burst.
var burstDurationBuckets = []float64{0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600}

// newInstruments creates the collector's instruments with meter.
func newInstruments(meter metric.Meter) (instruments, error) {
	var inst instruments
	var err error
	var errs []error
	inst.recordsRead, err = meter.Int64Counter("berth.records.read", metric.WithUnit("{record}"),
		metric.WithDescription("Log records read from Docker, by log.iostream."))
	errs = append(errs, err)
	inst.bytesRead, err = meter.Int64Counter("berth.bytes.read", metric.WithUnit("By"),
		metric.WithDescription("Bytes of log record bodies read from Docker, by log.iostream."))
	errs = append(errs, err)
	inst.burstDuration, err = meter.Float64Histogram("berth.burst.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of log bursts, by end reason."),
		metric.WithExplicitBucketBoundaries(burstDurationBuckets...))
	errs = append(errs, err)
	inst.deadlineExpiries, err = meter.Int64Counter("berth.deadline.expiries", metric.WithUnit("{expiry}"),
		metric.WithDescription("Log bursts ended by a connection deadline, by kind (idle or max_burst)."))
	errs = append(errs, err)
	inst.logsRequests, err = meter.Int64Counter("berth.logs.requests", metric.WithUnit("{request}"),
		metric.WithDescription("Logs requests sent to Docker (attaches, re-attaches and reads of stopped containers' logs)."))
	errs = append(errs, err)
	inst.gapCount, err = meter.Int64Counter("berth.log.gaps", metric.WithUnit("{gap}"),
		metric.WithDescription("Stretches of container logs Docker had rotated away before berth read them, by log.iostream."))
	errs = append(errs, err)
	inst.gapSeconds, err = meter.Float64Counter("berth.log.gap.duration", metric.WithUnit("s"),
		metric.WithDescription("Time spanned by the stretches of container logs Docker had rotated away before berth read them, by log.iostream."))
	errs = append(errs, err)
	inst.unparsed, err = meter.Int64Counter("berth.records.unparsed", metric.WithUnit("{record}"),
		metric.WithDescription("Log records whose line was to be parsed (berth.parse, parse.format) and was not in the format: sent as they are."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return instruments{}, fmt.Errorf("instruments: %w", err)
	}
	addSet := func(kv attribute.KeyValue) []metric.AddOption {
		return []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(kv))}
	}
	inst.byStream[0] = addSet(attribute.String("log.iostream", "stdout"))
	inst.byStream[1] = addSet(attribute.String("log.iostream", "stderr"))
	inst.idle = addSet(attribute.String("kind", "idle"))
	inst.maxBurst = addSet(attribute.String("kind", "max_burst"))
	inst.byEnd = make(map[EndReason][]metric.RecordOption, 5)
	for _, r := range []EndReason{EndEOF, EndIdle, EndMaxBurst, EndError, EndShutdown} {
		inst.byEnd[r] = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("end_reason", string(r))))}
	}
	return inst, nil
}

// read counts the records and body bytes of a batch the sink accepted, per
// stream (indexed by logs.Stream-1).
func (inst *instruments) read(lines, bytes [2]int64) {
	ctx := context.Background()
	for i := range lines {
		if lines[i] > 0 {
			inst.recordsRead.Add(ctx, lines[i], inst.byStream[i]...)
			inst.bytesRead.Add(ctx, bytes[i], inst.byStream[i]...)
		}
	}
}

// logsRequest counts a logs request sent.
func (inst *instruments) logsRequest() {
	inst.logsRequests.Add(context.Background(), 1)
}

// unparsedLines counts records sent as they are because their line was not
// in the container's format.
func (inst *instruments) unparsedLines(n int64) {
	inst.unparsed.Add(context.Background(), n)
}

// burstEnded records a burst's duration by its end and counts an end at a
// connection deadline.
func (inst *instruments) burstEnded(end EndReason, d time.Duration) {
	ctx := context.Background()
	if opts, ok := inst.byEnd[end]; ok {
		inst.burstDuration.Record(ctx, d.Seconds(), opts...)
	}
	switch end {
	case EndIdle:
		inst.deadlineExpiries.Add(ctx, 1, inst.idle...)
	case EndMaxBurst:
		inst.deadlineExpiries.Add(ctx, 1, inst.maxBurst...)
	}
}

// gaps counts the gaps a burst found (indexed by logs.Stream-1).
func (inst *instruments) gaps(g *[2]Gap) {
	for i := range g {
		if g[i].IsZero() {
			continue
		}
		inst.gapCount.Add(context.Background(), 1, inst.byStream[i]...)
		inst.gapSeconds.Add(context.Background(), g[i].Duration().Seconds(), inst.byStream[i]...)
	}
}
