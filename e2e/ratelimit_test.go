//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthlog/berth/e2e/internal/lines"
)

// observedTimes returns the records' observed timestamps (when berth read
// them), sorted.
func observedTimes(t *testing.T, recs []Record) []time.Time {
	t.Helper()
	out := make([]time.Time, len(recs))
	for i, r := range recs {
		ts, err := time.Parse(time.RFC3339Nano, r.ObservedTimestamp)
		if err != nil {
			t.Fatalf("record %d: observed_timestamp %q: %v", i, r.ObservedTimestamp, err)
		}
		out[i] = ts
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

// droppedMetric returns berth_records_dropped_total of the container named
// name in berth's /metrics (0 when there is no series).
func (b *Berth) droppedMetric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := b.http.Get("http://" + b.httpAddr + "/metrics")
	if err != nil {
		t.Fatalf("berth /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sum := 0.0
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "berth_records_dropped_total{") || !strings.Contains(l, `container_name="`+name+`"`) {
			continue
		}
		fs := strings.Fields(l)
		v, err := strconv.ParseFloat(fs[len(fs)-1], 64)
		if err != nil {
			t.Fatalf("berth /metrics: %q: %v", l, err)
		}
		sum += v
	}
	return sum
}

// TestRateLimitThrottle: a container labelled berth.rate_limit=300 writes
// 1,800 sequence-numbered lines as fast as it can (every 7th on stderr) and
// exits. berth, in the default throttle mode, reads it at the rate: every
// line arrives exactly once, and the records were read over at least
// (1,800 - the bucket) / 300 s; by any time no more had been read than the
// bucket plus the rate allows.
func TestRateLimitThrottle(t *testing.T) {
	needDocker(t)
	const (
		n     = 1800
		rate  = 300.0
		burst = rate // rate_limit.burst: 1s
		slack = rate / 10 * 2
	)
	b := startBerth(t, BerthConfig{})
	b.waitReady(t)
	c := runSel(t, uniqueName(t, "throttle"), map[string]string{"berth.rate_limit": fmt.Sprint(rate)},
		"-n", fmt.Sprint(n), "-stderr-every", "7")
	c.waitExited(t, time.Minute)
	b.waitRecords(t, c.Name, n, 2*time.Minute)
	recs := b.out.records(c.Name)
	checkSharedSeqs(t, c, recs, n, 7)

	obs := observedTimes(t, recs)
	spread := obs[len(obs)-1].Sub(obs[0])
	least := time.Duration((n - burst - slack) / rate * float64(time.Second))
	t.Logf("figure: %d lines written at once, read at berth.rate_limit=%v over %v (at least %v expected)", n, rate, spread.Round(time.Millisecond), least)
	if spread < least {
		t.Errorf("%d lines read over %v: faster than %v lines/s with a bucket of %v (at least %v)", n, spread, rate, burst, least)
	}
	if most := 4 * time.Duration(n/rate*float64(time.Second)); spread > most {
		t.Errorf("%d lines read over %v, want well under %v: throttled far below the rate", n, spread, most)
	}
	for i, ts := range obs {
		if allowed := burst + slack + rate*ts.Sub(obs[0]).Seconds(); float64(i+1) > allowed {
			t.Fatalf("record %d read %v after the first: more than the bucket and the rate allow (%v)", i, ts.Sub(obs[0]), allowed)
		}
	}
	if st := b.statusEntry(t, c); st["dropped"] != nil {
		t.Errorf("/status of a throttled container: %s, want no dropped", b.statusOf(t, c))
	}
	b.stop(t)
}

// TestRateLimitDrop: rate_limit.mode drop; a container labelled
// berth.rate_limit=100 writes 3,000 sequence-numbered lines as fast as it
// can and exits. berth keeps what the bucket allows and drops the rest:
// the records it sent are distinct lines of the sequence (none twice), and
// those plus the dropped ones that /status and berth_records_dropped_total
// count for the container are exactly the lines written. A container
// without the label, in the same berth, loses nothing.
func TestRateLimitDrop(t *testing.T) {
	needDocker(t)
	const n = 3000
	b := startBerth(t, BerthConfig{Extra: []string{"rate_limit:", "  mode: drop"}})
	b.waitReady(t)
	c := runSel(t, uniqueName(t, "drop"), map[string]string{"berth.rate_limit": "100"}, "-n", fmt.Sprint(n), "-stderr-every", "7")
	free := runSel(t, uniqueName(t, "free"), nil, "-n", fmt.Sprint(n), "-stderr-every", "7")
	c.waitExited(t, time.Minute)
	free.waitExited(t, time.Minute)
	b.waitRecords(t, free.Name, n, 2*time.Minute)

	var delivered, dropped int
	waitFor(t, "every line of "+c.Name+" sent or counted dropped", time.Minute, func() (bool, string) {
		b.poll(t)
		delivered = len(b.out.records(c.Name))
		d, _ := b.statusEntry(t, c)["dropped"].(float64)
		dropped = int(d)
		return delivered+dropped == n, fmt.Sprintf("%d sent + %d dropped of %d; %s", delivered, dropped, n, b.statusOf(t, c))
	})
	t.Logf("figure: %d lines written at once at berth.rate_limit=100, mode drop: %d sent, %d dropped", n, delivered, dropped)
	if delivered < 100 || delivered > n/2 {
		t.Errorf("%d of %d lines sent, want the bucket's 100 and not much more", delivered, n)
	}
	seen := map[int]int{}
	for _, r := range b.out.records(c.Name) {
		p, ok := lines.Parse(r.Body)
		if !ok {
			t.Fatalf("record %.120q has no sequence", r.Body)
		}
		seen[p.Seq]++
		if seen[p.Seq] > 1 || p.Seq < 0 || p.Seq >= n {
			t.Fatalf("seq %d sent %d times (of 0..%d)", p.Seq, seen[p.Seq], n-1)
		}
	}
	if m := b.droppedMetric(t, c.Name); int(m) != dropped {
		t.Errorf("berth_records_dropped_total of %s = %v, /status dropped %d: want them equal", c.Name, m, dropped)
	}
	checkSharedSeqs(t, free, b.out.records(free.Name), n, 7)
	if st := b.statusEntry(t, free); st["dropped"] != nil {
		t.Errorf("/status of the unlabelled container: %s, want nothing dropped", b.statusOf(t, free))
	}
	b.stop(t)
}
