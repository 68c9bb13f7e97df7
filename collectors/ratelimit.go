package collectors

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/time/rate"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/logs"
)

// LabelRateLimit is the container label that sets the container's
// rate_limit.lines_per_second: a number of records per second, 0 for none.
const LabelRateLimit = "berth.rate_limit"

// RateLimitFromLabels returns the lines per second a container's
// berth.rate_limit label sets; set is false without the label. A value
// berth cannot use is an error naming the label (the container is then
// collected with the configuration's limit).
func RateLimitFromLabels(labels map[string]string) (perSecond float64, set bool, err error) {
	v, ok := labels[LabelRateLimit]
	if !ok {
		return 0, false, nil
	}
	f, perr := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if perr != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > config.MaxLinesPerSecond {
		return 0, false, fmt.Errorf("%s=%q is not a number of lines per second from 0 (no limit) to 1e9, e.g. 100", LabelRateLimit, v)
	}
	return f, true, nil
}

// RateState is a container's token buckets, kept by its owner across its
// bursts so that re-attaching does not refill them. The zero value is
// ready; one burst at a time may use it.
type RateState struct {
	lim limiter
}

// rateParams is what a limiter was built for.
type rateParams struct {
	lines float64
	bytes int64
	burst time.Duration
	drop  bool
}

// limiter applies a container's rate limit to the records a burst emits:
// one bucket per dimension. Tokens are taken from the buckets in quanta of
// about a tenth of a second at the rate and spent from credit, so that the
// clock and the buckets are consulted once per quantum, not per record, and
// a throttled container's records still go out in batches.
type limiter struct {
	params       rateParams
	lines, bytes bucket
	drop         bool
}

// bucket is one dimension of a limiter.
type bucket struct {
	lim     *rate.Limiter // nil: no limit in this dimension
	size    int           // the bucket's capacity (lim's burst)
	quantum int           // tokens taken from lim at a time, at most
	credit  int           // tokens taken from lim and not yet spent; negative: owed
}

// configure makes l apply p, keeping its buckets' tokens if p is what they
// were built for. It reports whether p limits anything.
func (l *limiter) configure(p rateParams) bool {
	if p.lines == 0 && p.bytes == 0 {
		*l = limiter{}
		return false
	}
	if l.params == p {
		return true
	}
	*l = limiter{params: p, drop: p.drop}
	l.lines.init(p.lines, p.burst)
	l.bytes.init(float64(p.bytes), p.burst)
	return true
}

// init sets b to perSecond with burst's worth of capacity; 0: no limit.
func (b *bucket) init(perSecond float64, burst time.Duration) {
	if perSecond == 0 {
		*b = bucket{}
		return
	}
	b.size = int(max(1, min(math.Ceil(perSecond*burst.Seconds()), math.MaxInt32)))
	b.quantum = int(max(1, min(perSecond/10, float64(b.size))))
	b.lim = rate.NewLimiter(rate.Limit(perSecond), b.size)
	b.credit = 0
}

// cost is what n units cost: a record larger than the whole bucket costs
// the whole bucket, so that it passes once the bucket is full.
func (b *bucket) cost(n int) int { return min(n, b.size) }

// short is how many tokens beyond the credit n units need.
func (b *bucket) short(n int) int {
	if b.lim == nil {
		return 0
	}
	return max(0, b.cost(n)-b.credit)
}

// available is the whole tokens the bucket holds at now.
func (b *bucket) available(now time.Time) int {
	if b.lim == nil {
		return math.MaxInt
	}
	return int(b.lim.TokensAt(now))
}

// refill moves at least need tokens (at most a quantum, unless need is
// more) from the bucket into the credit; the bucket holds them (available).
func (b *bucket) refill(now time.Time, need int) {
	k := min(b.available(now), max(need, b.quantum))
	b.lim.AllowN(now, k)
	b.credit += k
}

// spend spends n units' cost from the credit, into debt if need be.
func (b *bucket) spend(n int) {
	if b.lim != nil {
		b.credit -= b.cost(n)
	}
}

// pay waits until the bucket has given what the credit owes.
func (b *bucket) pay(ctx context.Context) error {
	for b.credit < 0 {
		k := min(max(-b.credit, b.quantum), b.size)
		if err := b.lim.WaitN(ctx, k); err != nil {
			return err
		}
		b.credit += k
	}
	return nil
}

// take pays for a record of n bytes. In drop mode it reports false, and
// takes nothing, when the buckets do not hold enough now; in throttle mode
// it always takes, into debt if need be (see owing).
func (l *limiter) take(n int) bool {
	sl, sb := l.lines.short(1), l.bytes.short(n)
	if sl > 0 || sb > 0 {
		now := time.Now()
		switch {
		case l.lines.available(now) >= sl && l.bytes.available(now) >= sb:
			if sl > 0 {
				l.lines.refill(now, sl)
			}
			if sb > 0 {
				l.bytes.refill(now, sb)
			}
		case l.drop:
			return false
		}
	}
	l.lines.spend(1)
	l.bytes.spend(n)
	return true
}

// owing says that records were taken beyond what the buckets held: the
// burst must wait (pay) before it reads on.
func (l *limiter) owing() bool { return l.lines.credit < 0 || l.bytes.credit < 0 }

// pay waits until the debt is paid, or ctx ends.
func (l *limiter) pay(ctx context.Context) error {
	if err := l.lines.pay(ctx); err != nil {
		return fmt.Errorf("wait for the rate limit: %w", err)
	}
	if err := l.bytes.pay(ctx); err != nil {
		return fmt.Errorf("wait for the rate limit: %w", err)
	}
	return nil
}

// limiterFor returns the limiter that applies to the container meta
// describes, kept in the container's RateState (or st's, for a burst
// without one); nil when nothing limits it. A berth.rate_limit label sets
// its lines per second; a bad one is ignored (events reports it).
func (c *Collector) limiterFor(st *burstState, spec BurstSpec, meta *logs.Meta) *limiter {
	rl := c.cfg.RateLimit
	p := rateParams{lines: rl.LinesPerSecond, bytes: rl.BytesPerSecond, burst: rl.Burst, drop: rl.Mode == config.RateModeDrop}
	if v, ok, err := RateLimitFromLabels(meta.Labels); ok && err == nil {
		p.lines = v
	}
	rs := spec.Rate
	if rs == nil {
		rs = &st.rate
	}
	if !rs.lim.configure(p) {
		return nil
	}
	return &rs.lim
}

// throttle hands over the batch and waits until the rate limit allows more:
// meanwhile berth does not read, and the container's lines wait in Docker's
// log. The connection's idle deadline is armed by each read, not by the
// wait; a wait past max_burst ends the burst at the next read, and the next
// burst starts at the committed cursor.
func (c *Collector) throttle(ctx context.Context, st *burstState, meta *atomic.Pointer[logs.Meta], res *BurstResult) error {
	if err := c.flush(ctx, st, meta, res); err != nil {
		return err
	}
	st.giveArena()
	return st.limit.pay(ctx)
}

// newDropCounter creates berth.records.dropped.
func newDropCounter(meter metric.Meter) (metric.Int64Counter, error) {
	return meter.Int64Counter("berth.records.dropped", metric.WithUnit("{record}"),
		metric.WithDescription("Log records dropped by a container's rate limit (rate_limit.mode drop), by container."))
}

// countDropped counts the records dropped before a batch the sink accepted,
// for the container's progress and berth.records.dropped.
func (c *Collector) countDropped(st *burstState, m *logs.Meta) {
	n := st.dropped
	st.dropped = 0
	st.droppedTotal += n
	if st.progress != nil {
		st.progress.Dropped.Add(n)
	}
	var id, name string
	if m != nil {
		id, name = m.ID, m.Name
	}
	c.drops.Add(context.Background(), n, metric.WithAttributes(
		attribute.String("container.id", id), attribute.String("container.name", name),
		attribute.String("reason", "rate_limit")))
}
