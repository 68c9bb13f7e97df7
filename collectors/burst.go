// Package collectors reads container logs in bounded bursts: one logs request
// per burst, read from a connection whose every Read carries a deadline, split
// into Docker's messages, joined into lines, de-duplicated against the
// container's cursor and handed to a Sink in batches.
package collectors

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/multiline"
	"github.com/berthlog/berth/parse"
	"github.com/berthlog/berth/telemetry"
)

// ErrNotFound says the container no longer exists.
var ErrNotFound = errors.New("container not found")

// ErrLogsUnsupported says the container's logging driver cannot be read
// through the API (a driver without dual logging, or "none"): retrying will
// not help until the container is started again.
var ErrLogsUnsupported = errors.New("the container's logging driver does not support reading")

// LogRequest is one logs request. Timestamps are always requested.
type LogRequest struct {
	Follow bool
	Since  time.Time // zero: no lower bound
	Tail   int       // number of most recent messages; TailAll for every one
	// Idle is how long a read of the response may wait for a byte; zero:
	// idle_timeout. A quiet container's burst waits longer (see
	// config.Bursts.QuietIdleTimeout).
	Idle time.Duration
}

// TailAll asks for the whole log.
const TailAll = -1

// LogSource is what a burst needs from Docker. The adapter in
// dockerapi implements it over a connection whose every read has a
// deadline, so a response body's Read returns os.ErrDeadlineExceeded when the
// daemon goes quiet for the idle timeout or the burst reaches max_burst.
type LogSource interface {
	Inspect(ctx context.Context, id string) (*logs.Meta, error)
	Logs(ctx context.Context, id string, req LogRequest) (io.ReadCloser, error)
}

// EndReason says why a burst ended.
type EndReason string

// The ends of a burst.
const (
	EndEOF      EndReason = "eof"           // the daemon closed the stream: the container stopped, or a non-follow read finished
	EndIdle     EndReason = "idle_deadline" // no byte for idle_timeout: a quiet container, a normal end
	EndMaxBurst EndReason = "max_burst"     // the burst reached max_burst
	EndError    EndReason = "error"         // see BurstResult.Err
	EndShutdown EndReason = "shutdown"      // berth is stopping
)

// BurstSpec says what to read.
type BurstSpec struct {
	ID     string
	Follow bool
	Cursor logs.Cursor
	// Meta is the container's description, shared with its owner so that a
	// rename applies to the next batch. If it holds nil the burst inspects
	// the container and stores the result.
	Meta *atomic.Pointer[logs.Meta]
	// Hint, if set, is what the container's start event said of it (name,
	// image, labels; its TTY is not known). With a Hint and no Meta the
	// burst sends its logs request at once and inspects the container
	// concurrently: a container removed as soon as it exits (docker run
	// --rm) takes its log with it, and a request that is in before then
	// still reads it. If the container is already gone when the inspect
	// runs, the records are described by the Hint and the stream's first
	// byte tells a TTY's raw stream from a multiplexed one.
	Hint *logs.Meta
	// Renamed, if set, holds the name of the container's latest rename
	// event, nil before any. A Meta the burst stores is given that name, so
	// that a rename applied while the burst inspected is not undone by the
	// inspect's older answer.
	Renamed *atomic.Pointer[string]
	// Progress, if set, is updated once per batch the sink accepted (never
	// per line), so that its owner can show a burst that is still running.
	Progress *BurstProgress
	// Rate, if set, is the container's rate-limit state, kept across its
	// bursts; without it each burst starts with full buckets.
	Rate *RateState
	// Quiet is how many follow bursts of the container in a row ended at
	// their idle (or max_burst) deadline without a line: each doubles the
	// idle deadline of the next, from idle_timeout up to
	// quiet_idle_timeout (see Collector.IdleFor).
	Quiet int
}

// BurstProgress is what a running burst has delivered so far: /status shows
// it while the burst runs (a burst may last max_burst). The burst updates it
// once per batch the sink accepted; when the burst returns, Lines has grown
// by exactly BurstResult.Lines.
type BurstProgress struct {
	// Lines is the records accepted.
	Lines atomic.Int64
	// Newest is the newest accepted record's timestamp, in Unix
	// nanoseconds; 0 until the first batch.
	Newest atomic.Int64
	// Dropped is the records the rate limit dropped (rate_limit.mode drop)
	// before the accepted batches; it grows by BurstResult.Dropped.
	Dropped atomic.Int64
	// Unparsed is the accepted records whose line was not in the
	// container's format (see BurstResult.Unparsed).
	Unparsed atomic.Int64
}

// NewestTime returns Newest as a time (zero when none).
func (p *BurstProgress) NewestTime() time.Time {
	if n := p.Newest.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// BurstResult reports how a burst went. Cursor is the position after the last
// batch the sink accepted: the next burst starts there.
type BurstResult struct {
	ID      string
	Follow  bool
	Cursor  logs.Cursor
	End     EndReason
	Err     error
	Lines   int64 // records accepted by the sink
	Dropped int64 // records dropped by the rate limit, the cursor past them
	// Unparsed counts the accepted records whose line was to be parsed
	// (berth.parse, parse.format) and was not in the format: they were
	// sent as they are.
	Unparsed int64
	Bytes    int64 // bytes read from the daemon
	Requests int   // logs requests made (more than one when the tail was widened)
	Duration time.Duration
	// Idle is the idle deadline the burst's reads had.
	Idle time.Duration
	// Stopped says that a follow burst ended because the container is no
	// longer running (inspected after the end of the stream).
	Stopped bool
	// Restarted says that a follow burst ended because the container
	// stopped and has already started again: re-attach at once.
	Restarted bool
	// Gone says that the container no longer exists.
	Gone bool
	// Gaps are the stretches of the log, by Stream-1, that Docker no
	// longer held when the burst asked for them (see Gap); zero: none.
	Gaps [2]Gap
}

// Collector runs bursts against a LogSource and hands records to a Sink.
type Collector struct {
	src      LogSource
	sink     logs.Sink
	cfg      config.Bursts
	hostName string // the host.name of every record
	tracer   trace.Tracer
	inst     instruments
	state    sync.Pool // *burstState, reused across bursts
	rules    sync.Map  // multiline.Spec -> *multiline.Rules, compiled once
	nrules   atomic.Int64
	drops    metric.Int64Counter // berth.records.dropped (ratelimit.go)
	// attaches and drains bound the bursts that open a logs request and
	// read what is waiting (max_concurrent_attaches each): a slot is a
	// value sent; nil: no bound.
	attaches, drains chan struct{}
	format           parse.Format // parse.format: the format of a container without a berth.parse label
	body             parse.Body   // parse.body
}

// formatFor returns how the lines of the container meta describes are
// parsed: by its berth.parse label, else by the configuration. A bad label
// falls back to the configuration (events reports it).
func (c *Collector) formatFor(meta *logs.Meta) parse.Format {
	f, _ := parse.FromLabels(meta.Labels, c.format)
	return f
}

// maxCachedRules bounds the compiled multiline rules kept: beyond it (a
// label per container, each different) a burst compiles its own.
const maxCachedRules = 1024

// rulesFor returns how the lines of the container meta describes are
// joined: by its berth.multiline.* labels, else by the configuration; nil
// joins nothing. A bad label falls back to the configuration (events
// reports it).
func (c *Collector) rulesFor(meta *logs.Meta) *multiline.Rules {
	spec, _ := multiline.FromLabels(meta.Labels, c.cfg.Multiline.Spec())
	if spec.IsZero() {
		return nil
	}
	if r, ok := c.rules.Load(spec); ok {
		return r.(*multiline.Rules)
	}
	r, err := multiline.New(spec, c.cfg.Multiline.Timeout, c.cfg.Multiline.MaxLines)
	if err != nil {
		return nil // validated: the configuration's rule compiles
	}
	if c.nrules.Add(1) <= maxCachedRules {
		c.rules.Store(spec, r)
	}
	return r
}

// NewCollector returns a Collector that reads bursts as cfg bounds them
// (max_burst, max_line_bytes, reattach_tail; cfg is validated, see
// config.Config.Validate) and describes every container as running on
// hostName. It traces each burst and counts what the bursts read with the
// tracer and meter of set. It starts no goroutine: each Burst runs in its
// caller's goroutine.
func NewCollector(src LogSource, sink logs.Sink, cfg config.Bursts, hostName string, set telemetry.Settings) (*Collector, error) {
	inst, err := newInstruments(set.Meter())
	if err != nil {
		return nil, fmt.Errorf("collector: %w", err)
	}
	drops, err := newDropCounter(set.Meter())
	if err != nil {
		return nil, fmt.Errorf("collector: %w", err)
	}
	c := &Collector{src: src, sink: sink, cfg: cfg, hostName: hostName, tracer: set.Tracer(), inst: inst, drops: drops}
	c.format, c.body = cfg.Parse.Formats()
	c.state.New = func() any { return newBurstState() }
	if n := cfg.MaxConcurrentAttaches; n > 0 {
		c.attaches, c.drains = make(chan struct{}, n), make(chan struct{}, n)
	}
	return c, nil
}

// IdleFor is the idle deadline of a burst of container id after quiet
// quiet bursts in a row: idle_timeout doubled quiet times, up to
// quiet_idle_timeout and max_burst. A grown deadline is spread over its
// last fifth by the container's ID, so that containers that went quiet
// together do not all re-attach at once.
func (c *Collector) IdleFor(id string, quiet int) time.Duration {
	idle := c.cfg.IdleTimeout
	limit := max(c.cfg.QuietIdleTimeout, idle)
	if c.cfg.MaxBurst > 0 {
		limit = max(min(limit, c.cfg.MaxBurst), idle)
	}
	for range min(quiet, 62) {
		if idle >= limit/2 {
			idle = limit
			break
		}
		idle *= 2
	}
	if idle <= c.cfg.IdleTimeout {
		return c.cfg.IdleTimeout
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	spread := time.Duration(uint64(idle/5) * uint64(h.Sum32()%1024) / 1024)
	return max(idle-spread, c.cfg.IdleTimeout)
}

// maxWidenTail is the last bounded tail before a re-attach reads the whole log.
const maxWidenTail = 1 << 16

// errWiden says that the first message of a bounded tail was new: lines
// between the cursor and the window may be missing, so the request is
// repeated with a wider tail before anything is passed on.
var errWiden = errors.New("tail window does not reach the cursor")

// Burst runs one burst: it inspects the container if needed, makes a logs
// request planned from the cursor, reads until EOF, a deadline, an error or
// cancellation, and returns. It never blocks on a read without a deadline.
func (c *Collector) Burst(ctx context.Context, spec BurstSpec) BurstResult {
	start := time.Now()
	ctx, span := c.tracer.Start(ctx, "berth.burst", trace.WithAttributes(
		attribute.String("container.id", spec.ID), attribute.Bool("follow", spec.Follow)))
	defer span.End()
	res := BurstResult{ID: spec.ID, Follow: spec.Follow}
	st := c.state.Get().(*burstState)
	defer c.state.Put(st)
	st.cursor.CopyFrom(&spec.Cursor)
	st.committed.CopyFrom(&spec.Cursor)
	st.progress = spec.Progress
	st.rate, st.droppedTotal = RateState{}, 0
	st.follow = spec.Follow
	res.Idle = c.IdleFor(spec.ID, spec.Quiet)
	st.gaps.found = [2]Gap{}

	res.End, res.Err = c.burst(ctx, spec, st, &res)
	st.releaseSlot()
	if res.End == EndEOF && spec.Follow {
		// The daemon ends a follow stream when the container stops; a stream
		// that ends while it still runs is a fault the owner backs off from.
		m, err := c.src.Inspect(ctx, spec.ID)
		switch {
		case errors.Is(err, ErrNotFound):
			res.Stopped, res.Gone = true, true
		case err == nil:
			res.Stopped = !m.Running
			res.Restarted = m.Running && m.StartedAt.After(start)
		}
	}
	if res.End == EndEOF && (!spec.Follow || res.Stopped || res.Restarted) {
		c.endPartials(ctx, st, spec.Meta, &res)
	}
	if errors.Is(res.Err, ErrNotFound) {
		res.Gone = true
	}
	res.Cursor = st.committed.Clone()
	res.Dropped = st.droppedTotal
	res.Gaps = st.gaps.found
	c.inst.gaps(&res.Gaps)
	res.Duration = time.Since(start)
	st.release()
	c.inst.burstEnded(res.End, res.Duration)
	if span.IsRecording() {
		name := ""
		if m := spec.Meta.Load(); m != nil {
			name = m.Name
		}
		span.SetAttributes(attribute.String("container.name", name), attribute.Int64("bytes", res.Bytes),
			attribute.Int64("lines", res.Lines), attribute.String("end_reason", string(res.End)),
			attribute.Int("requests", res.Requests))
		if res.Err != nil {
			span.SetStatus(codes.Error, res.Err.Error())
		}
	}
	return res
}

// inspectResult is the answer of an inspect run concurrently with a burst's
// logs request.
type inspectResult struct {
	meta *logs.Meta
	err  error
}

func (c *Collector) burst(ctx context.Context, spec BurstSpec, st *burstState, res *BurstResult) (end EndReason, err error) {
	meta := spec.Meta.Load()
	// The first request for a container that has just started is never
	// held back: a --rm job's log is gone once it is removed.
	if !(meta == nil && spec.Hint != nil) {
		// A follow attach holds its slot for idle_timeout at most: a daemon
		// that answers a quiet container's request only with its first
		// line (Podman before 5.3) must not hold the others back.
		hold := time.Duration(0)
		if spec.Follow {
			hold = c.cfg.IdleTimeout
		}
		if err := st.takeSlot(ctx, c.slots(spec.Follow), hold); err != nil {
			return EndShutdown, nil
		}
	}
	var inspected chan inspectResult // the concurrent inspect; nil once taken
	// gone: the inspect beside the logs request found no container; the
	// Hint describes it, and its stream tells whether it is a TTY's.
	gone := false
	if meta == nil && spec.Hint == nil {
		m, err := c.src.Inspect(ctx, spec.ID)
		if err != nil {
			return endOf(ctx, err, false), fmt.Errorf("inspect container %.12s: %w", spec.ID, err)
		}
		meta = c.storeMeta(spec, m)
	} else if meta == nil {
		// The logs request goes first; the inspect runs beside it, and the
		// burst waits for it before it returns.
		inspected = make(chan inspectResult, 1)
		go func() {
			m, err := c.src.Inspect(ctx, spec.ID)
			inspected <- inspectResult{m, err}
		}()
		defer func() {
			if inspected != nil {
				gone = errors.Is((<-inspected).err, ErrNotFound)
			}
			if err != nil && gone && !errors.Is(err, ErrNotFound) {
				// The container was gone when it was inspected: the daemon
				// could not open, or read on, a log it was deleting.
				err = fmt.Errorf("%w: %w", ErrNotFound, err)
			}
		}()
	}
	tail := TailAll
	if !spec.Cursor.IsBeginning() {
		tail = c.cfg.ReattachTail
	}
	for {
		req := LogRequest{Follow: spec.Follow, Since: st.committed.Since(), Tail: tail, Idle: res.Idle}
		res.Requests++
		c.inst.logsRequest()
		reqStart := time.Now()
		body, err := c.src.Logs(ctx, spec.ID, req)
		if err != nil {
			// A daemon that takes the request but sends no response header
			// ends the request at the connection's deadline: an idle (or
			// max_burst) end like a stream that went quiet, not a fault.
			end := endOf(ctx, err, c.pastMaxBurst(reqStart))
			if end != EndError {
				return end, nil
			}
			return end, fmt.Errorf("open logs of container %.12s: %w", spec.ID, err)
		}
		if inspected != nil {
			// The daemon answered: it holds the log open, and the
			// container's removal no longer takes it from this response.
			r := <-inspected
			inspected = nil
			meta, gone, err = c.metaAfterLogs(spec, r)
			if err != nil {
				_ = body.Close()
				return endOf(ctx, err, false), fmt.Errorf("inspect container %.12s: %w", spec.ID, err)
			}
		}
		st.start(body, meta.TTY, gone, c.cfg.MaxLineBytes, c.rulesFor(meta))
		st.limit = c.limiterFor(st, spec, meta)
		st.format, st.parseBody = c.formatFor(meta), c.body
		err = c.read(ctx, st, spec.Meta, tail != TailAll, reqStart, res)
		_ = body.Close()
		if errors.Is(err, errWiden) {
			tail = widen(tail)
			continue
		}
		end := endOf(ctx, err, c.pastMaxBurst(reqStart))
		if end != EndError {
			err = nil
		}
		return end, err
	}
}

// storeMeta publishes an inspected Meta of the collector's host.
func (c *Collector) storeMeta(spec BurstSpec, m *logs.Meta) *logs.Meta {
	m.HostName = c.hostName
	return spec.StoreMeta(m)
}

// StoreMeta publishes m, an inspected Meta, for the container's records
// unless one is there already, and gives it the name of the latest rename
// its owner published in Renamed. It returns the Meta in force.
func (spec BurstSpec) StoreMeta(m *logs.Meta) *logs.Meta {
	spec.Meta.CompareAndSwap(nil, m)
	cur := spec.Meta.Load()
	if spec.Renamed != nil {
		// The owner stores the name before it renames a stored Meta: either
		// it sees this Meta, or this sees its name.
		if n := spec.Renamed.Load(); n != nil && *n != cur.Name {
			spec.Meta.CompareAndSwap(cur, cur.Renamed(*n))
			cur = spec.Meta.Load()
		}
	}
	return cur
}

// metaAfterLogs takes the result of the inspect that ran beside the logs
// request: the inspected Meta, or the Hint if the container is already gone
// (then sniff: the stream's first byte tells whether it is a TTY's).
func (c *Collector) metaAfterLogs(spec BurstSpec, r inspectResult) (meta *logs.Meta, gone bool, err error) {
	switch {
	case r.err == nil:
		return c.storeMeta(spec, r.meta), false, nil
	case errors.Is(r.err, ErrNotFound):
		h := *spec.Hint
		h.ID = spec.ID
		return c.storeMeta(spec, &h), true, nil
	}
	return nil, false, r.err
}

// pastMaxBurst says whether a request made at reqStart has run for max_burst:
// its deadline was then the hard one, not the idle one.
func (c *Collector) pastMaxBurst(reqStart time.Time) bool {
	return c.cfg.MaxBurst > 0 && time.Since(reqStart) >= c.cfg.MaxBurst
}

// slots returns the bound of a follow burst's attach or of a stopped
// container's drain; nil: none.
func (c *Collector) slots(follow bool) chan struct{} {
	if follow {
		return c.attaches
	}
	return c.drains
}

func widen(tail int) int {
	if tail == TailAll || tail >= maxWidenTail {
		return TailAll
	}
	return tail * 16
}

// endOf classifies the error that ended a read, or a logs request that got
// no response. A deadline berth armed on the connection is recognized by type
// (os.ErrDeadlineExceeded anywhere in the chain), whether it fired before the
// response header or in the middle of the body.
func endOf(ctx context.Context, err error, pastMaxBurst bool) EndReason {
	switch {
	case err == nil || errors.Is(err, io.EOF):
		return EndEOF
	case ctx.Err() != nil:
		return EndShutdown
	case errors.Is(err, os.ErrDeadlineExceeded):
		if pastMaxBurst {
			return EndMaxBurst
		}
		return EndIdle
	}
	return EndError
}

// read consumes one response. It returns io.EOF at the end of the stream, the
// read error otherwise, or errWiden.
//
// With multiline rules, the records being joined are held in st.join, their
// lines outside the cursor (as a partial line's chunks are), so that the
// committed cursor never passes a line of a record not yet sent. While the
// reader waits for bytes with a record held, a flusher sends it after
// multiline.timeout; st.mu is held by whichever of the two runs.
func (c *Collector) read(ctx context.Context, st *burstState, meta *atomic.Pointer[logs.Meta], bounded bool, reqStart time.Time, res *BurstResult) error {
	st.cursor.CopyFrom(&st.committed)
	st.cursor.Rewind()
	st.gaps.arm(&st.committed)
	for i := range st.pending {
		st.pending[i].active = false
		st.join[i].Reset(st.rules, st.maxLine)
		st.held[i].Reset()
	}
	// The flusher starts when the reader first waits holding something.
	var f *flusher
	st.mu.Lock()
	defer func() {
		st.mu.Unlock() // first: the flusher may wait for mu
		if f != nil {
			f.stop()
			// The flusher counts its records apart, so that res does not
			// escape to the heap.
			res.Lines += st.flushed.Lines
			res.Unparsed += st.flushed.Unparsed
		}
	}()
	first := true
	for {
		drained := !st.msgs.buffered()
		waiting := st.holding() && drained
		if waiting {
			if f == nil {
				f = c.startFlusher(ctx, st, meta)
			}
			st.wait()
		}
		if drained {
			// The next read may wait for the container: a stream that
			// trickles waits without the connection buffer (see park).
			st.park()
		}
		st.wake()
		s, msg, cut, err := st.msgs.next()
		if waiting {
			st.mu.Lock()
			st.waiting = false
			if st.flushErr != nil {
				return st.flushErr
			}
		}
		if err != nil {
			eof := errors.Is(err, io.EOF)
			if ctx.Err() == nil && (eof || (errors.Is(err, os.ErrDeadlineExceeded) && !c.pastMaxBurst(reqStart))) {
				// The container stopped, or went quiet: its records are
				// complete. (At shutdown, an error or max_burst they stay
				// out of the cursor, and are read again whole.)
				if st.rules != nil {
					st.closeHeld(0)
					st.closeHeld(1)
				}
				if !eof {
					st.idlePartials(c.cfg.IdleTimeout, c.cfg.PartialFlushTimeout)
				}
			}
			if ferr := c.flush(ctx, st, meta, res); ferr != nil {
				return ferr
			}
			return err
		}
		res.Bytes += int64(len(msg))
		if de, ok := daemonStreamError(msg); ok {
			_ = c.flush(ctx, st, meta, res)
			return de
		}
		ts, content, complete, err := st.ts.parseMessage(msg)
		if err != nil {
			_ = c.flush(ctx, st, meta, res)
			return fmt.Errorf("%w: %.64q", err, msg)
		}
		h := logs.MessageHash(content)
		old := st.cursor.Seen(s, ts, h)
		if first && bounded {
			if !old {
				return errWiden
			}
			st.gaps.windowStarts(ts)
		}
		first = false
		if st.gaps.watching {
			st.gaps.see(s, ts, old)
		}
		if !old {
			st.add(s, ts, h, content, complete || cut, cut)
			if st.limit != nil && st.limit.owing() {
				if err := c.throttle(ctx, st, meta, res); err != nil {
					return err
				}
			}
		}
		if drained := !st.msgs.buffered(); drained || len(st.batch.Records) >= maxBatchRecords || st.batchBytes >= maxBatchBytes {
			if err := c.flush(ctx, st, meta, res); err != nil {
				return err
			}
			if drained {
				// The next read may wait for the container for as long as
				// its idle deadline: the arena waits in the pool meanwhile,
				// and an attach has read what was waiting for it.
				st.giveArena()
				if st.follow {
					st.releaseSlot()
				}
			}
		}
	}
}

// maxBatchRecords and maxBatchBytes bound a batch when the daemon sends
// faster than the connection buffer drains: a batch is handed to the sink
// once it holds 1024 records or 2 MiB of bodies, whichever comes first (so a
// batch holds less than maxBatchBytes + max_line_bytes). The byte bound keeps
// a batch of long lines (1024 of 256 KiB would be 256 MiB) well within the
// in-flight bound, which then paces reading batch by batch, and keeps the
// arena the bodies are copied into at about maxBatchBytes.
const (
	maxBatchRecords = 1024
	maxBatchBytes   = 2 << 20
)

// flush hands the completed records to the sink and, once it accepted them,
// commits the cursor.
func (c *Collector) flush(ctx context.Context, st *burstState, meta *atomic.Pointer[logs.Meta], res *BurstResult) error {
	if len(st.batch.Records) == 0 && st.dropped == 0 {
		return nil // (a batch of none moves the checkpoint past dropped records)
	}
	st.batch.Meta = meta.Load()
	st.batch.Cursor = st.cursor.Clone()
	if err := c.sink.Consume(ctx, &st.batch); err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	res.Lines += int64(len(st.batch.Records))
	if st.dropped > 0 {
		c.countDropped(st, st.batch.Meta)
	}
	var n, b [2]int64
	var unparsed int64
	for i := range st.batch.Records {
		r := &st.batch.Records[i]
		n[r.Stream-1]++
		b[r.Stream-1] += int64(len(r.Body))
		if r.Unparsed {
			unparsed++
		}
	}
	c.inst.read(n, b)
	if unparsed > 0 {
		res.Unparsed += unparsed
		c.inst.unparsedLines(unparsed)
	}
	st.committed.CopyFrom(&st.cursor)
	if st.progress != nil {
		st.progress.Lines.Add(int64(len(st.batch.Records)))
		st.progress.Unparsed.Add(unparsed)
		if n := st.committed.Newest(); !n.IsZero() {
			st.progress.Newest.Store(n.UnixNano())
		}
	}
	st.batch.Records = st.batch.Records[:0]
	st.arena = st.arena[:0]
	st.attrs = st.attrs[:0]
	st.batchBytes = 0
	st.observed = time.Time{}
	return nil
}

// flusher sends the records a burst holds when the burst has waited
// multiline.timeout for bytes, and the lines that have not ended after
// partial_flush_timeout (see partial.go). It runs beside read, which owns
// it, from the reader's first wait with something held.
type flusher struct {
	arm  chan struct{} // the reader started waiting with a record held
	done chan struct{} // closed to stop the flusher
	wg   sync.WaitGroup
}

func (c *Collector) startFlusher(ctx context.Context, st *burstState, meta *atomic.Pointer[logs.Meta]) *flusher {
	f := &flusher{arm: make(chan struct{}, 1), done: make(chan struct{})}
	st.arm = f.arm
	st.flushErr = nil
	st.flushed = BurstResult{}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		c.runFlusher(ctx, st, meta, f)
	}()
	return f
}

// stop ends the flusher and waits for it. The caller must not hold st.mu.
func (f *flusher) stop() {
	close(f.done)
	f.wg.Wait()
}

func (c *Collector) runFlusher(ctx context.Context, st *burstState, meta *atomic.Pointer[logs.Meta], f *flusher) {
	for {
		select {
		case <-f.done:
			return
		case <-f.arm:
		}
		for {
			st.mu.Lock()
			if !st.waiting || st.flushErr != nil || !st.holding() {
				st.mu.Unlock()
				break // the reader has bytes again; it arms anew when it waits
			}
			// What has waited long enough since the reader last had bytes
			// is complete (multiline.timeout), or sent partial
			// (partial_flush_timeout).
			left := st.closeDue(time.Since(st.waitSince), c.cfg.PartialFlushTimeout)
			if len(st.batch.Records) > 0 {
				if err := c.flush(ctx, st, meta, &st.flushed); err != nil {
					st.flushErr = err
				} else {
					st.giveArena()
				}
			}
			failed := st.flushErr != nil
			st.mu.Unlock()
			if left <= 0 || failed {
				break
			}
			t := time.NewTimer(left)
			select {
			case <-f.done:
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// wait lets the flusher run while the reader waits for bytes.
func (st *burstState) wait() {
	st.waiting = true
	st.waitSince = time.Now()
	st.mu.Unlock()
	select {
	case st.arm <- struct{}{}:
	default: // armed already: the flusher reads waitSince when it takes it
	}
}

// burstState is the memory a burst reuses: the connection buffer, the
// message readers, the records of the batch being built and their bytes.
type burstState struct {
	// br buffers the response; nil while the burst waits for a trickling
	// stream's next bytes (see park), when it is in the readers pool. It
	// reads body through pre.
	br        *bufio.Reader
	body      io.Reader
	pre       prefixReader
	small     [parkReadSize]byte // what a parked burst's wait reads into
	follow    bool               // the burst follows the log
	slot      *heldSlot          // the slot the burst holds; nil: none
	frames    frameReader
	raw       rawReader
	msgs      messageReader
	tty       bool
	maxLine   int
	cursor    logs.Cursor // advanced as messages are consumed
	committed logs.Cursor // advanced when the sink accepted them
	pending   [2]pendingLine
	// rules joins lines into records (nil: it does not); join holds each
	// stream's record being joined, and held the cursor of its lines.
	rules *multiline.Rules
	join  [2]multiline.Joiner
	held  [2]logs.StreamCursor
	// With rules, mu is held by the reader except while it waits for bytes
	// (waiting, since waitSince), when the flusher may take it; arm wakes
	// the flusher, and flushErr is what its flush returned.
	mu        sync.Mutex
	waiting   bool
	waitSince time.Time
	arm       chan struct{}
	flushErr  error
	flushed   BurstResult // the records the flusher delivered (its Lines)
	ts        tsCache
	gaps      gapWatch       // judges each stream's first message of a response
	observed  time.Time      // when the bytes of the current batch were read; zero after a flush
	progress  *BurstProgress // BurstSpec.Progress of the running burst; may be nil
	batch     logs.Batch
	arena     []byte     // record bodies of the batch; never reallocated under a record; nil while the burst waits
	arenaBox  *batchBufs // the arenas pool's box of arena and batch.Records, while the burst holds one
	// batchBytes is the bodies' bytes in the batch (the arena's length,
	// counting the blocks it left when it grew).
	batchBytes int
	// limit is the running burst's rate limit (nil: none), kept in
	// BurstSpec.Rate or in rate; dropped counts the records it dropped
	// since the last batch the sink accepted, droppedTotal before.
	limit        *limiter
	rate         RateState
	dropped      int64
	droppedTotal int64
	// format is how the response's lines are parsed, parseBody what becomes
	// a parsed line's body; attrs holds the fields of the batch's parsed
	// records (each record's Attrs is a part of it).
	format    parse.Format
	parseBody parse.Body
	attrs     []logs.Attr
}

// pendingLine is a line whose chunks are still arriving.
type pendingLine struct {
	active    bool
	ts        time.Time
	buf       []byte
	truncated bool
	bound     logs.StreamCursor // the chunks consumed for this line
}

const (
	readBufferSize = 64 * 1024
	arenaSize      = 256 * 1024
	// parkReadSize is what a burst waiting for a trickling stream reads
	// into before it takes a connection buffer again.
	parkReadSize = 512
	// parkBelow: a body read shorter than this found the stream drained,
	// not busy: the next wait parks. A busy stream's reads fill most of the
	// buffer and keep it.
	parkBelow = 16 * 1024
)

func newBurstState() *burstState {
	return &burstState{}
}

// readers holds the connection buffers of the bursts that wait for bytes:
// a burst takes one when bytes arrive and gives it back when a trickling
// stream has nothing more buffered, so that quiet containers hold none.
// readersHeld counts the buffers bursts hold.
var (
	readers     = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}
	readersHeld atomic.Int64
)

// prefixReader is a response body whose first bytes were already read (by
// a parked burst's wait): it returns them, then reads the body. last is the
// size of the latest read of the body itself.
type prefixReader struct {
	buf  []byte
	err  error // the wait's error, returned once buf is consumed
	body io.Reader
	last int
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if len(p.buf) > 0 {
		n := copy(b, p.buf)
		p.buf = p.buf[n:]
		return n, nil
	}
	if p.err != nil {
		return 0, p.err
	}
	n, err := p.body.Read(b)
	p.last = n
	return n, err
}

// park gives the connection buffer back while the burst waits for bytes,
// when its stream trickles (the latest read found little): it holds
// nothing buffered then. A busy stream keeps its buffer.
func (st *burstState) park() {
	if st.pre.last >= parkBelow || st.msgs.buffered() {
		return
	}
	st.giveReader()
}

// giveReader puts the connection buffer, if the burst holds one, back in
// the pool.
func (st *burstState) giveReader() {
	if st.br == nil {
		return
	}
	st.br.Reset(nil)
	readers.Put(st.br)
	readersHeld.Add(-1)
	st.setReader(nil)
}

// wake takes a connection buffer if the burst has none: it first waits for
// the stream's next bytes with a small read (the wait of a parked burst),
// which the buffer then returns first.
func (st *burstState) wake() {
	if st.br != nil {
		return
	}
	n, err := st.body.Read(st.small[:])
	st.pre = prefixReader{buf: st.small[:n], err: err, body: st.body, last: n}
	br := readers.Get().(*bufio.Reader)
	readersHeld.Add(1)
	br.Reset(&st.pre)
	st.setReader(br)
}

// setReader points the message readers at br.
func (st *burstState) setReader(br *bufio.Reader) {
	st.br, st.frames.r, st.raw.r = br, br, br
}

// heldSlot is a slot of a bound, taken by one burst: given back once,
// by the burst or by its timer.
type heldSlot struct {
	bound chan struct{}
	given atomic.Bool
	timer *time.Timer // nil: none
}

func (s *heldSlot) give() {
	if s.given.CompareAndSwap(false, true) {
		<-s.bound
	}
}

// takeSlot waits for a slot of bound (nil: none) for the burst, until ctx
// ends. With hold > 0 the slot is given back after hold at the latest.
func (st *burstState) takeSlot(ctx context.Context, bound chan struct{}, hold time.Duration) error {
	if bound == nil {
		return nil
	}
	select {
	case bound <- struct{}{}:
		st.slot = &heldSlot{bound: bound}
		if hold > 0 {
			st.slot.timer = time.AfterFunc(hold, st.slot.give)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// releaseSlot gives the burst's slot back, if it holds one.
func (st *burstState) releaseSlot() {
	if st.slot != nil {
		if st.slot.timer != nil {
			st.slot.timer.Stop()
		}
		st.slot.give()
		st.slot = nil
	}
}

// start binds the state to a response body. With sniff the TTY is not known
// and the body's first byte tells: a multiplexed stream starts with a frame
// header, whose first byte is the stream (0, 1 or 2); a TTY's raw stream
// starts with a message's timestamp (timestamps are always requested) or
// the daemon's error text. An empty body needs neither.
func (st *burstState) start(body io.Reader, tty, sniff bool, maxLine int, rules *multiline.Rules) {
	st.rules = rules
	st.body = body
	st.pre = prefixReader{body: body}
	if st.br != nil {
		st.br.Reset(&st.pre)
	}
	if sniff {
		st.wake()
		b, err := st.br.Peek(1)
		if err != nil {
			// Peek hands the error over: the first read must see it too.
			st.br.Reset(errReader{err})
		}
		tty = err == nil && b[0] > 2
	}
	st.tty = tty
	st.maxLine = maxLine
	// A frame carries one message of at most 16 KiB of content; frames larger
	// than a line can be are cut.
	limit := max(maxLine, chunkSize) + tsWidth + 1
	if tty {
		st.raw = rawReader{r: st.br, acc: st.raw.acc[:0], limit: limit}
		st.msgs = &st.raw
	} else {
		st.frames = frameReader{r: st.br, big: st.frames.big, limit: limit}
		st.msgs = &st.frames
	}
	st.setReader(st.br)
}

// errReader is a body whose every read fails with err.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// release drops references to the last response so the pooled state holds
// nothing but memory.
func (st *burstState) release() {
	st.giveReader()
	st.body, st.pre = nil, prefixReader{}
	st.frames.r, st.raw.r, st.msgs = nil, nil, nil
	st.progress = nil
	st.rules, st.arm, st.flushErr = nil, nil, nil
	st.limit, st.rate, st.dropped = nil, RateState{}, 0
	st.format = parse.None
	clear(st.attrs[:cap(st.attrs)]) // no reference to the last batch's bytes
	st.attrs = st.attrs[:0]
	st.batch = logs.Batch{Records: st.batch.Records[:0]}
	st.giveArena()
	st.batchBytes = 0
	st.observed = time.Time{}
}

// add consumes a new message: it starts or continues the stream's pending
// line and, when the message ends the line, appends a record.
func (st *burstState) add(s logs.Stream, ts time.Time, h uint32, content []byte, ends, cut bool) {
	p := &st.pending[s-1]
	if !p.active && ends {
		// The common case: a whole line in one message.
		body, truncated := logs.Clip(content, st.maxLine)
		if st.rules != nil {
			st.joinLine(s, ts, body, truncated || cut, h, nil)
			return
		}
		st.emit(s, ts, body, truncated || cut)
		st.cursor.Streams[s-1].Advance(ts, h)
		return
	}
	if !p.active {
		p.active, p.ts, p.buf, p.truncated = true, ts, p.buf[:0], false
		p.bound.Reset()
	}
	p.bound.Advance(ts, h)
	room := st.maxLine - len(p.buf)
	if p.truncated {
		// The line was cut: what follows the cut is not part of its record,
		// even where a character the cut backed off from left some room.
		room = 0
	}
	part, truncated := logs.Clip(content, room)
	p.buf = append(p.buf, part...)
	p.truncated = p.truncated || truncated || cut
	if ends {
		p.active = false
		if st.rules != nil {
			st.joinLine(s, p.ts, p.buf, p.truncated, 0, &p.bound)
			return
		}
		st.emit(s, p.ts, p.buf, p.truncated)
		st.cursor.Streams[s-1].Merge(&p.bound)
	}
}

// joinLine offers a complete line to its stream's joiner. Its position (h
// at ts, or the chunks in bound) goes into the cursor when the record it is
// part of is emitted, never before.
func (st *burstState) joinLine(s logs.Stream, ts time.Time, body []byte, truncated bool, h uint32, bound *logs.StreamCursor) {
	i := int(s - 1)
	if st.tty {
		// Each line of a TTY's record ends with \r; emit drops only the
		// record's last.
		if n := len(body); n > 0 && body[n-1] == '\r' {
			body = body[:n-1]
		}
	}
	if st.join[1-i].Expired(ts) {
		st.closeHeld(1 - i)
	}
	j := &st.join[i]
	if j.Expired(ts) {
		st.closeHeld(i)
	}
	into := &st.held[i]
	switch j.Step(body) {
	case multiline.Begin:
		st.closeHeld(i)
		j.Begin(ts, body, truncated)
		into.Reset()
	case multiline.Continue:
		j.Append(ts, body, truncated)
	case multiline.End:
		j.Append(ts, body, truncated)
		defer st.closeHeld(i)
	default: // multiline.Single
		st.closeHeld(i)
		st.emit(s, ts, body, truncated)
		into = &st.cursor.Streams[i]
	}
	if bound != nil {
		into.Merge(bound)
	} else {
		into.Advance(ts, h)
	}
}

// closeHeld emits stream i's held record, if any, and moves the cursor past
// its lines.
func (st *burstState) closeHeld(i int) {
	if !st.join[i].Held() {
		return
	}
	ts, body, truncated := st.join[i].Take()
	st.emit(logs.Stream(i+1), ts, body, truncated)
	st.cursor.Streams[i].Merge(&st.held[i])
	st.held[i].Reset()
}

// arenas holds the arenas of the bursts that wait for bytes, each with the
// records slice of a batch: a burst takes one when it has a line to copy,
// and gives it back when its batch was handed over and the connection has
// nothing more buffered, so that quiet containers hold neither (a batch's
// records alone are up to 80 KiB). arenasHeld counts the arenas bursts hold.
var (
	arenas = sync.Pool{New: func() any {
		return &batchBufs{arena: make([]byte, 0, arenaSize), records: make([]logs.Record, 0, 256)}
	}}
	arenasHeld atomic.Int64
)

// batchBufs is what a burst needs to build a batch: the arena its records'
// bodies are copied into, and the records.
type batchBufs struct {
	arena   []byte
	records []logs.Record
}

// takeArena takes an arena and a records slice from the pool.
func (st *burstState) takeArena() {
	st.arenaBox = arenas.Get().(*batchBufs)
	st.arena = st.arenaBox.arena[:0]
	if st.arena == nil {
		st.arena = make([]byte, 0, arenaSize)
	}
	st.batch.Records = st.arenaBox.records[:0]
	arenasHeld.Add(1)
}

// giveArena gives the arena and the records slice back. An arena that a
// line too long for a batch made larger than any batch needs is left to the
// garbage collector, and the records that referred to it are cleared. Call
// it only when the batch is empty and no record refers to the arena any
// more.
func (st *burstState) giveArena() {
	if st.arenaBox == nil {
		return
	}
	b := st.arenaBox
	b.arena, b.records = st.arena[:0], st.batch.Records[:0]
	if cap(st.arena) > maxBatchBytes {
		b.arena = nil
		clear(b.records[:cap(b.records)])
	}
	arenas.Put(b)
	st.arena, st.arenaBox, st.batch.Records = nil, nil, nil
	arenasHeld.Add(-1)
}

// emit appends a record whose body is copied into the arena.
func (st *burstState) emit(s logs.Stream, ts time.Time, body []byte, truncated bool) {
	if st.tty {
		if n := len(body); n > 0 && body[n-1] == '\r' {
			body = body[:n-1]
		}
	}
	if st.limit != nil && !st.limit.take(len(body)) {
		st.dropped++ // the caller moves the cursor past it all the same
		return
	}
	if st.arena == nil {
		st.takeArena()
	}
	need := len(body)
	if st.format != parse.None {
		// Room for the strings parsing decodes, never longer than the line.
		need *= 2
	}
	if len(st.arena)+need > cap(st.arena) {
		// Earlier records keep the old block; the new one is reused from now
		// on. A batch is flushed at maxBatchBytes: no block need be larger,
		// unless one line is.
		st.arena = make([]byte, 0, max(min(2*cap(st.arena), maxBatchBytes), need))
	}
	st.batchBytes += len(body)
	off := len(st.arena)
	st.arena = append(st.arena, body...)
	if st.observed.IsZero() {
		// One clock read per batch: the records of a batch were read from
		// the connection together.
		st.observed = time.Now()
	}
	st.batch.Records = append(st.batch.Records, logs.Record{
		Timestamp: ts,
		Observed:  st.observed,
		Body:      st.arena[off:len(st.arena):len(st.arena)],
		Stream:    s,
		Truncated: truncated,
	})
	if st.format != parse.None {
		st.structure(&st.batch.Records[len(st.batch.Records)-1])
	}
}

// structure parses a record's line in the response's format: its fields
// refer to the line in the arena, and the strings parsing decodes go to the
// arena after it (emit made room: the arena does not move). A line not in
// the format stays as it is, marked Unparsed; so does one whose fields
// could not be sent in an export request (see parse.EncodedBound).
func (st *burstState) structure(r *logs.Record) {
	n0, line := len(st.attrs), r.Body
	arena, attrs, ok := parse.Fields(st.format, line, st.arena, st.attrs)
	if !ok {
		r.Unparsed = true
		return
	}
	parse.Structure(r, attrs[n0:len(attrs):len(attrs)], st.parseBody)
	if parse.EncodedBound(r) > st.maxLine {
		clear(attrs[n0:]) // nothing refers to them, nor to the bytes decoded
		*r = logs.Record{Timestamp: r.Timestamp, Observed: r.Observed, Body: line, Stream: r.Stream, Truncated: r.Truncated, Unparsed: true}
		return
	}
	st.arena, st.attrs = arena, attrs
}
