//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/berthlog/berth/e2e/internal/lines"
)

// traceRecords checks the records of a loggen -trace container: the plain
// lines seq 0 to 2*lines.TracePlain-1 each exactly once, as records of
// their own, and the trace exactly once, whole, as one record on stdout.
func traceRecords(t *testing.T, name, trace string, recs []Record) {
	t.Helper()
	seen := map[int]int{}
	traces := 0
	for _, r := range recs {
		if r.Stream() != "stdout" {
			t.Errorf("%s: record %q on %s, want stdout", name, r.Body, r.Stream())
		}
		if r.Body == trace {
			traces++
			continue
		}
		p, ok := lines.Parse(r.Body)
		if !ok || strings.Contains(r.Body, "\n") {
			t.Errorf("%s: record %q is neither the whole trace nor one plain line (a trace cut in pieces, or lines joined wrongly)", name, r.Body)
			continue
		}
		seen[p.Seq]++
	}
	if traces != 1 {
		t.Errorf("%s: the trace arrived %d times as one record, want exactly once", name, traces)
	}
	for i := range 2 * lines.TracePlain {
		if seen[i] != 1 {
			t.Errorf("%s: plain line seq=%d arrived %d times, want once", name, i, seen[i])
		}
	}
	if len(seen) != 2*lines.TracePlain {
		t.Errorf("%s: %d distinct plain lines, want %d", name, len(seen), 2*lines.TracePlain)
	}
}

// TestMultiline: three containers, labelled berth.multiline.preset java,
// python and go, each write numbered plain lines, a real-looking stack
// trace of that runtime, and more plain lines, then exit: each trace
// arrives as one record (stamped with its first line's time, as the daemon
// stamped it), each plain line as one record, no gap, no duplicate.
func TestMultiline(t *testing.T) {
	needDocker(t)
	b := startBerth(t, BerthConfig{})
	b.waitReady(t)
	ctrs := map[string]*Ctr{}
	for _, preset := range []string{"java", "python", "go"} {
		ctrs[preset] = runSel(t, uniqueName(t, preset), map[string]string{"berth.multiline.preset": preset}, "-trace", preset)
	}
	for _, c := range ctrs {
		c.waitExited(t, time.Minute)
		b.waitRecords(t, c.Name, 2*lines.TracePlain+1, time.Minute)
	}
	b.stop(t)
	for preset, c := range ctrs {
		recs := b.out.records(c.Name)
		traceRecords(t, c.Name, lines.Traces[preset], recs)
		first := strings.SplitN(lines.Traces[preset], "\n", 2)[0]
		ts := firstLineTime(t, c, first)
		for _, r := range recs {
			if r.Body != lines.Traces[preset] {
				continue
			}
			if got, err := time.Parse(time.RFC3339Nano, r.Timestamp); err != nil || !got.Equal(ts) {
				t.Errorf("%s: the trace is stamped %s, want its first line's time %s", c.Name, r.Timestamp, ts.Format(time.RFC3339Nano))
			}
		}
	}
}

// firstLineTime is the daemon's timestamp of the first stdout line of c's
// log equal to line.
func firstLineTime(t *testing.T, c *Ctr, line string) time.Time {
	t.Helper()
	ctx, cancel := dctx(time.Minute)
	defer cancel()
	rc, err := suite.docker.ContainerLogs(ctx, c.ID, container.LogsOptions{ShowStdout: true, Timestamps: true})
	if err != nil {
		t.Fatalf("docker logs %s: %v", c.Name, err)
	}
	defer rc.Close()
	var so bytes.Buffer
	if _, err := stdcopy.StdCopy(&so, io.Discard, rc); err != nil {
		t.Fatalf("reading docker logs %s: %v", c.Name, err)
	}
	for _, l := range splitLines(so.Bytes()) {
		ts, body, _ := strings.Cut(l, " ")
		if body == line {
			tm, err := time.Parse(time.RFC3339Nano, ts)
			if err != nil {
				t.Fatalf("parsing the timestamp of %q: %v", l, err)
			}
			return tm
		}
	}
	t.Fatalf("%s: the daemon's log has no line %q", c.Name, line)
	return time.Time{}
}

// TestMultilineRestart: berth is stopped with SIGTERM while a container is
// in the middle of writing a Java stack trace (its first lines written, the
// rest after a pause), and started again on the same state dir: the trace
// arrives once, whole, from the second berth; the first sent none of it;
// every plain line arrives exactly once across both.
func TestMultilineRestart(t *testing.T) {
	needDocker(t)
	const pause = 10 * time.Second
	dir := testDir(t)
	state := filepath.Join(dir, "state") // berth creates it
	// The timeout is longer than the pause: only the restart can cut the trace.
	cfg := BerthConfig{Extra: []string{"multiline:", "  timeout: 30s", "checkpoint_interval: 200ms"}, IdleTimeout: "40s"}
	proc := func(name string) berthProc {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return berthProc{Dir: d, StateDir: state}
	}
	b1 := startBerthProc(t, cfg, proc("b1"))
	b1.waitReady(t)
	c := runSel(t, uniqueName(t, "java"), map[string]string{"berth.multiline.preset": "java"},
		"-trace", "java", "-trace-pause", pause.String())
	started := time.Now()
	// With the java preset a plain line is sent when the next line shows it
	// is not continued: the last plain line before the trace arrives once
	// berth has read the trace's first line.
	waitFor(t, fmt.Sprintf("plain line seq=%d, sent once berth read the trace's first line", lines.TracePlain-1), 30*time.Second, func() (bool, string) {
		b1.poll(t)
		for _, r := range b1.out.records(c.Name) {
			if p, ok := lines.Parse(r.Body); ok && p.Seq == lines.TracePlain-1 {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d records", len(b1.out.records(c.Name)))
	})
	b1.stop(t)
	if since := time.Since(started); since > pause {
		t.Fatalf("berth stopped %v after the container started, after its %v pause: not in the middle of the trace", since, pause)
	}
	recs1 := b1.out.records(c.Name)
	for _, r := range recs1 {
		if strings.Contains(r.Body, "Exception") || strings.Contains(r.Body, "\tat ") {
			t.Fatalf("the first berth sent part of the trace before it was complete: %q", r.Body)
		}
	}
	if len(recs1) != lines.TracePlain {
		t.Fatalf("the first berth sent %d records, want the %d plain lines before the trace", len(recs1), lines.TracePlain)
	}
	b2 := startBerthProc(t, cfg, proc("b2"))
	c.waitExited(t, time.Minute)
	all := func() []Record { return append(append([]Record{}, recs1...), b2.out.records(c.Name)...) }
	waitFor(t, "the trace and every plain line", time.Minute, func() (bool, string) {
		b2.poll(t)
		n := len(all())
		return n >= 2*lines.TracePlain+1, fmt.Sprintf("%d records", n)
	})
	b2.stop(t)
	traceRecords(t, c.Name, lines.Traces["java"], all())
	if !t.Failed() {
		t.Logf("figure: berth stopped mid-trace: %d records from the first berth (no part of the trace), %d from the second (the whole trace once); 0 lost, 0 duplicated",
			len(recs1), len(b2.out.records(c.Name)))
	}
}
