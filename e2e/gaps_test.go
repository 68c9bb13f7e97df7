//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthlog/berth/e2e/internal/lines"
)

// TestRotationGap: a json-file container with max-size=1m, max-file=2
// writes 30,000 numbered lines of 200 bytes (6 MB) at 1,500 lines/s; berth
// is stopped after it has read 1,000 of them and started again on the same
// state dir once the container has exited, by when Docker has rotated most
// of the lines away. The second berth reports one gap: one warning naming
// the container, /status last_gap, berth_log_gaps_total 1; its range runs
// from the newest line berth had read (at or before the last line before
// the hole) to the oldest line Docker still holds (the first after it), so
// it covers every missing line's timestamp. Every line Docker still holds
// arrives, none twice, and the lines missing are exactly one run of
// sequence numbers, none of which Docker holds.
func TestRotationGap(t *testing.T) {
	needDocker(t)
	const n, rate, size = 30000, 1500, 200
	dir := testDir(t)
	state := filepath.Join(dir, "state") // berth creates it
	cfg := BerthConfig{Extra: []string{"checkpoint_interval: 200ms"}}
	proc := func(name string) berthProc {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return berthProc{Dir: d, StateDir: state}
	}
	b1 := startBerthProc(t, cfg, proc("b1"))
	b1.waitReady(t)
	c := runContainer(t, ContainerSpec{
		Args:    []string{"-n", fmt.Sprint(n), "-rate", fmt.Sprint(rate), "-size", fmt.Sprint(size)},
		LogOpts: map[string]string{"max-size": "1m", "max-file": "2"},
	})
	b1.waitRecords(t, c.Name, 1000, time.Minute)
	b1.stop(t)
	recs1 := b1.out.records(c.Name)
	c.waitExited(t, 2*time.Minute)
	truth := dockerLog(t, c)
	if len(truth) == 0 || len(truth) >= n/2 {
		t.Fatalf("Docker holds %d of %d lines; the test needs it to have rotated most away", len(truth), n)
	}

	b2 := startBerthProc(t, cfg, proc("b2"))
	b2.waitRecords(t, c.Name, len(truth), time.Minute)
	var gapJSON string
	waitFor(t, "/status to show the container's last_gap", 30*time.Second, func() (bool, string) {
		gapJSON = b2.statusOf(t, c)
		return strings.Contains(gapJSON, `"last_gap"`), gapJSON
	})
	gaps, gapSeconds := b2.metricSum(t, "berth_log_gaps_total"), b2.metricSum(t, "berth_log_gap_duration_seconds_total")
	b2.stop(t)
	recs2 := b2.out.records(c.Name)

	// Sequence numbers: none twice, Docker's all there, one run missing.
	ts := map[int]time.Time{}
	count := map[int]int{}
	for _, r := range append(append([]Record(nil), recs1...), recs2...) {
		p, ok := lines.Parse(r.Body)
		if !ok {
			t.Fatalf("record without a sequence: %.120q", r.Body)
		}
		count[p.Seq]++
		tm, err := time.Parse(time.RFC3339Nano, r.Timestamp)
		if err != nil {
			t.Fatalf("record timestamp %q: %v", r.Timestamp, err)
		}
		ts[p.Seq] = tm
	}
	for s, k := range count {
		if k > 1 {
			t.Errorf("seq %d delivered %d times", s, k)
		}
	}
	held := map[int]bool{}
	for _, l := range truth {
		p, ok := lines.Parse(l.Body)
		if !ok {
			t.Fatalf("Docker's line without a sequence: %.120q", l.Body)
		}
		held[p.Seq] = true
		if count[p.Seq] == 0 {
			t.Errorf("seq %d, which Docker still holds, was not delivered", p.Seq)
		}
	}
	var missing []int
	for s := range n {
		if count[s] == 0 {
			missing = append(missing, s)
			if held[s] {
				t.Errorf("seq %d is held by Docker but missing", s)
			}
		}
	}
	if len(missing) == 0 {
		t.Fatalf("no line missing: nothing was rotated away before berth read it")
	}
	lo, hi := missing[0], missing[len(missing)-1]
	if hi-lo+1 != len(missing) || lo == 0 || hi == n-1 {
		t.Fatalf("missing %s: want one run of sequence numbers between delivered ones", ranges(missing))
	}

	// The gap's range covers the missing lines' timestamps.
	var st struct {
		LastGap struct {
			Stream  string    `json:"stream"`
			From    time.Time `json:"from"`
			To      time.Time `json:"to"`
			Seconds float64   `json:"seconds"`
			Count   int       `json:"count"`
		} `json:"last_gap"`
	}
	if err := json.Unmarshal([]byte(gapJSON), &st); err != nil {
		t.Fatalf("/status entry %s: %v", gapJSON, err)
	}
	g := st.LastGap
	before, after := ts[lo-1], ts[hi+1]
	if g.Stream != "stdout" || g.Count != 1 || g.From.After(before) || !g.To.Equal(after) {
		t.Errorf("last_gap %+v; want stdout, count 1, from at or before %v (seq %d, the last line before the hole), to %v (seq %d, the oldest Docker holds)",
			g, before.Format(time.RFC3339Nano), lo-1, after.Format(time.RFC3339Nano), hi+1)
	}
	if gaps != 1 || math.Abs(gapSeconds-g.To.Sub(g.From).Seconds()) > 1e-6 {
		t.Errorf("berth_log_gaps_total %v, berth_log_gap_duration_seconds_total %v; want 1 and %v", gaps, gapSeconds, g.To.Sub(g.From).Seconds())
	}
	stderr, _ := os.ReadFile(b2.stderrPath)
	warned := 0
	for _, l := range strings.Split(string(stderr), "\n") {
		if strings.Contains(l, "WARN") && strings.Contains(l, c.Name) && strings.Contains(l, "rotated them away") {
			warned++
			if !strings.Contains(l, g.From.Format(time.RFC3339Nano)) || !strings.Contains(l, g.To.Format(time.RFC3339Nano)) {
				t.Errorf("the warning does not give the range %v to %v: %s", g.From, g.To, l)
			}
		}
	}
	if warned != 1 {
		t.Errorf("%d warnings of the gap naming the container, want 1:\n%s", warned, b2.stderrTail(20))
	}
	t.Logf("figure: %d lines written, berth read %d before it stopped, Docker held %d (seq %d on); missing %s (%d lines), all rotated away; gap %s to %s (%.3f s); delivered %d after the restart, 0 duplicated",
		n, len(recs1), len(truth), hi+1, ranges(missing), len(missing), g.From.Format(time.RFC3339Nano), g.To.Format(time.RFC3339Nano), g.Seconds, len(recs2))
}
