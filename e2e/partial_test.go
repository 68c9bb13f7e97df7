//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/berthlog/berth/e2e/internal/lines"
)

// partial is log.partial.
func (r Record) partial() bool { b, _ := r.attr("log.partial").(bool); return b }

// TestPartialLines: lines that never end. A progress bar of 20,000 bytes
// without a newline, then a pause: Docker writes its first 16 KiB as a
// chunk and keeps the rest until the container exits. berth sends the chunk
// while the container still pauses, marked log.partial: on a multiplexed
// stream after partial_flush_timeout, on a TTY's at the burst's idle end
// (the raw stream shows where the chunk ends only when the next message
// starts). When the container is stopped, the rest comes as a second
// partial record. A container whose last output has no newline and that
// exits at once has it sent, marked partial. Each once: the records of each
// container are its numbered lines, then its unterminated output, byte for
// byte, over bursts that re-attached while it paused.
func TestPartialLines(t *testing.T) {
	needDocker(t)
	const progress = 20000
	b := startBerth(t, BerthConfig{IdleTimeout: "3s", Extra: []string{"partial_flush_timeout: 1s"}})
	b.waitReady(t)
	bar := lines.Progress(progress)
	args := []string{"-n", "3", "-progress", fmt.Sprint(progress), "-sleep-after", "10m"}
	muxed := runContainer(t, ContainerSpec{Name: uniqueName(t, "bar"), Args: args})
	tty := runContainer(t, ContainerSpec{Name: uniqueName(t, "bartty"), Args: args, Tty: true})
	const last = "last line without a newline"
	exits := runContainer(t, ContainerSpec{Name: uniqueName(t, "last"), Args: []string{"-n", "3", "-unterminated", last}})

	// check says whether c's records are its three numbered lines, then
	// want (its unterminated output so far) in k partial records.
	check := func(c *Ctr, want string, k int) (bool, string) {
		b.poll(t)
		recs := b.out.records(c.Name)
		if len(recs) != 3+k {
			return false, fmt.Sprintf("%d records, want %d", len(recs), 3+k)
		}
		for i, r := range recs[:3] {
			if p, ok := lines.Parse(r.Body); !ok || p.Seq != i || r.partial() {
				return false, fmt.Sprintf("record %d: %.80q partial %v, want seq %d, not partial", i, r.Body, r.partial(), i)
			}
		}
		var got strings.Builder
		for i, r := range recs[3:] {
			if !r.partial() {
				return false, fmt.Sprintf("record %d (%d bytes) is not marked log.partial", 3+i, len(r.Body))
			}
			got.WriteString(r.Body)
		}
		if got.String() != want {
			return false, fmt.Sprintf("partial records hold %d bytes (%.40q...), want %d (%.40q...)", got.Len(), got.String(), len(want), want)
		}
		return true, ""
	}
	chunk := bar[:16*1024]
	start := time.Now()
	waitFor(t, "the multiplexed bar's first 16 KiB, marked partial, while it pauses", 30*time.Second, func() (bool, string) { return check(muxed, chunk, 1) })
	tMuxed := time.Since(start)
	waitFor(t, "the TTY bar's first 16 KiB, marked partial, while it pauses", 30*time.Second, func() (bool, string) { return check(tty, chunk, 1) })
	tTTY := time.Since(start)
	waitFor(t, "the last line of the container that exited", 30*time.Second, func() (bool, string) { return check(exits, last, 1) })
	for _, c := range []*Ctr{muxed, tty} {
		if st := c.inspect(t); !st.State.Running {
			t.Fatalf("%s is not running: its chunk must be sent while it pauses", c.Name)
		}
	}
	// Over two idle ends more (re-attaches), nothing is sent again.
	time.Sleep(7 * time.Second)
	for _, c := range []*Ctr{muxed, tty} {
		if ok, why := check(c, chunk, 1); !ok {
			t.Errorf("%s after re-attaches: %s", c.Name, why)
		}
	}
	muxed.stop(t, 10)
	tty.stop(t, 10)
	for _, c := range []*Ctr{muxed, tty} {
		waitFor(t, c.Name+"'s whole bar in two partial records once it stopped", 30*time.Second, func() (bool, string) { return check(c, bar, 2) })
	}
	b.stop(t)
	for _, c := range []*Ctr{muxed, tty, exits} {
		want, k := bar, 2
		if c == exits {
			want, k = last, 1
		}
		if ok, why := check(c, want, k); !ok {
			t.Errorf("%s at the end: %s", c.Name, why)
		}
	}
	t.Logf("figure: first chunk of the bar sent %v (multiplexed, partial_flush_timeout 1s) and %v (TTY, idle_timeout 3s) after the containers started; each bar in 2 partial records, the last line in 1, none twice",
		tMuxed.Round(100*time.Millisecond), tTTY.Round(100*time.Millisecond))
}
