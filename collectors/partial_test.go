package collectors

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
)

// partialBursts is testBursts with partial_flush_timeout set.
func partialBursts(timeout time.Duration) config.Bursts {
	cfg := testBursts(1024, 10)
	cfg.PartialFlushTimeout = timeout
	return cfg
}

// partialMarks is "p" for each partial record, "-" for each other.
func partialMarks(s *memSink) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, r := range s.records {
		if r.Partial {
			b.WriteByte('p')
		} else {
			b.WriteByte('-')
		}
	}
	return b.String()
}

// TestPartialFlushAfterTimeout: a line without its newline (a progress bar)
// is sent marked partial once its stream has brought nothing for
// partial_flush_timeout, not before; the cursor moves past it; the rest of
// the line, when it comes, is a record of its own.
func TestPartialFlushAfterTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pr, pw := io.Pipe()
		sink := &memSink{}
		progress := &BurstProgress{}
		c := newCollector(t, &pipeSource{r: pr}, sink, partialBursts(5*time.Second), telemetry.NopSettings())
		done := make(chan BurstResult, 1)
		sp := spec(logs.BeginningCursor(), true)
		sp.Progress = progress
		go func() { done <- c.Burst(context.Background(), sp) }()
		write := func(ms ...fakeMsg) {
			t.Helper()
			var buf bytes.Buffer
			for _, m := range ms {
				writeMsg(&buf, m, false)
			}
			if _, err := pw.Write(buf.Bytes()); err != nil {
				t.Fatal(err)
			}
		}
		first := time.Now()
		write(fakeMsg{logs.Stdout, first, "before\n"}, fakeMsg{logs.Stdout, first.Add(time.Microsecond), "progress 10%\r"})
		time.Sleep(time.Second)
		write(fakeMsg{logs.Stdout, time.Now(), "progress 20%\r"})
		time.Sleep(5*time.Second - time.Millisecond)
		synctest.Wait()
		if got := sink.bodies(); len(got) != 1 {
			t.Fatalf("before the timeout: %q, want only the whole line", got)
		}
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		want := []string{"stdout:before", "stdout:progress 10%\rprogress 20%\r"}
		if got := sink.bodies(); strings.Join(got, "|") != strings.Join(want, "|") || partialMarks(sink) != "-p" {
			t.Fatalf("after the timeout: %q (%s), want %q (-p)", got, partialMarks(sink), want)
		}
		if progress.Lines.Load() != 2 {
			t.Fatalf("progress %d records, want 2", progress.Lines.Load())
		}
		rest := time.Now()
		write(fakeMsg{logs.Stdout, rest, "progress 30%\rdone\n"})
		_ = pw.Close()
		res := <-done
		if res.Lines != 3 || res.End != EndEOF || !res.Cursor.Streams[0].Time.Equal(rest) {
			t.Fatalf("result %+v, want 3 records, the end of the stream, the cursor at the last line", res)
		}
		if got := sink.bodies(); len(got) != 3 || got[2] != "stdout:progress 30%\rdone" || partialMarks(sink) != "-p-" {
			t.Fatalf("at the end: %q (%s)", got, partialMarks(sink))
		}
	})
}

// TestPartialLastLineAtEnd: a container's last output without a newline is
// sent, marked partial, when its log ends: a read to the end, or a follow
// stream whose container stopped; not when the container still runs (its
// line may go on). A re-attach does not send it again.
func TestPartialLastLineAtEnd(t *testing.T) {
	for _, tc := range []struct {
		name    string
		follow  bool
		running bool
		tty     bool
		want    string
	}{
		{"read to the end", false, false, false, "-p"},
		{"follow, stopped", true, false, false, "-p"},
		{"follow, tty, stopped", true, false, true, "-p"},
		{"follow, still running", true, true, false, "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &fakeDaemon{log: []fakeMsg{{logs.Stdout, at(1), "a\n"}, {logs.Stdout, at(2), "last without newline"}}, running: tc.running, tty: tc.tty}
			sink := &memSink{}
			c := newCollector(t, d, sink, partialBursts(5*time.Second), telemetry.NopSettings())
			res := c.Burst(context.Background(), spec(logs.BeginningCursor(), tc.follow))
			if res.End != EndEOF || res.Err != nil || partialMarks(sink) != tc.want {
				t.Fatalf("end %v err %v records %q (%s), want %s", res.End, res.Err, sink.bodies(), partialMarks(sink), tc.want)
			}
			if tc.want == "-p" && sink.bodies()[1] != "stdout:last without newline" {
				t.Fatalf("records %q", sink.bodies())
			}
			d.running = false
			res = c.Burst(context.Background(), spec(res.Cursor, false))
			if got := strings.Join(sink.bodies(), "|"); got != "stdout:a|stdout:last without newline" || res.Err != nil {
				t.Fatalf("after a re-attach: %q (err %v), want each line once", got, res.Err)
			}
		})
	}
}

// TestPartialAtIdleEnd: a burst that ends idle sends the line that has not
// ended when idle_timeout is at least partial_flush_timeout, also a TTY's,
// whose last message the raw reader holds until it knows where it ends;
// with a longer partial_flush_timeout the line waits for the next burst.
func TestPartialAtIdleEnd(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tty     bool
		timeout time.Duration
		want    string
	}{
		{"multiplexed", false, 5 * time.Second, "-p-"},
		{"tty", true, 5 * time.Second, "-p-"},
		{"timeout beyond idle_timeout", false, 2 * time.Minute, "--"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A chunk of a progress bar as Docker writes it: 16 KiB.
			chunk := strings.Repeat("progress 10%\r", chunkSize/10)[:chunkSize]
			d := &fakeDaemon{tty: tc.tty, running: true, cutAfter: []int{2}, log: []fakeMsg{
				{logs.Stdout, at(1), "x\n"}, {logs.Stdout, at(2), chunk}, {logs.Stdout, at(3), "later\n"},
			}}
			sink := &memSink{}
			cfg := partialBursts(tc.timeout)
			cfg.MaxLineBytes = 64 << 10
			c := newCollector(t, d, sink, cfg, telemetry.NopSettings())
			res := c.Burst(context.Background(), spec(logs.BeginningCursor(), true))
			if res.End != EndIdle {
				t.Fatalf("first burst ended %v (%v), want idle", res.End, res.Err)
			}
			res = c.Burst(context.Background(), spec(res.Cursor, true))
			if res.Err != nil || partialMarks(sink) != tc.want {
				t.Fatalf("records %q (%s), want %s", sink.bodies(), partialMarks(sink), tc.want)
			}
			progress := "stdout:" + chunk
			want := []string{"stdout:x", progress, "stdout:later"}
			if tc.want == "--" {
				want = []string{"stdout:x", progress + "later"}
			}
			if got := sink.bodies(); strings.Join(got, "|") != strings.Join(want, "|") {
				t.Fatalf("records %q, want %q", got, want)
			}
		})
	}
}

// TestPartialTTYChunkThenEnd: a TTY's progress bar whose first 16 KiB chunk
// was sent partial at an idle end, and whose rest comes when the container
// stops. The raw stream brings the replayed chunk, the rest and the end
// together, and the end does not spare the cut between them: the chunk is
// known again by its own position and hash, and only the rest is sent.
// Two chunks held at an idle end are cut the same way.
func TestPartialTTYChunkThenEnd(t *testing.T) {
	chunk1 := strings.Repeat("progress 10%\r", chunkSize/10)[:chunkSize]
	chunk2 := strings.Repeat("progress 20%\r", chunkSize/10)[:chunkSize]
	for _, tc := range []struct {
		name   string
		chunks []string // the bar's 16 KiB chunks, all read before the first burst's idle end
		want   []string
	}{
		{"one chunk", []string{chunk1}, []string{"x", chunk1, "rest"}},
		{"two chunks at the idle end", []string{chunk1, chunk2}, []string{"x", chunk1 + chunk2, "rest"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := []fakeMsg{{logs.Stdout, at(1), "x\n"}}
			for i, c := range tc.chunks {
				log = append(log, fakeMsg{logs.Stdout, at(2 + i), c})
			}
			log = append(log, fakeMsg{logs.Stdout, at(2 + len(tc.chunks)), "rest"})
			d := &fakeDaemon{tty: true, running: true, cutAfter: []int{len(log) - 1}, log: log}
			sink := &memSink{}
			cfg := partialBursts(5 * time.Second)
			cfg.MaxLineBytes = 64 << 10
			c := newCollector(t, d, sink, cfg, telemetry.NopSettings())
			res := c.Burst(context.Background(), spec(logs.BeginningCursor(), true))
			if res.End != EndIdle || res.Err != nil || partialMarks(sink) != "-p" {
				t.Fatalf("first burst ended %v (%v) with %d records (%s), want idle, the line and a partial one", res.End, res.Err, len(sink.bodies()), partialMarks(sink))
			}
			d.mu.Lock()
			d.running = false
			d.mu.Unlock()
			res = c.Burst(context.Background(), spec(res.Cursor, false))
			if res.End != EndEOF || res.Err != nil {
				t.Fatalf("read to the end ended %v (%v)", res.End, res.Err)
			}
			got := sink.bodies()
			if len(got) != len(tc.want) || partialMarks(sink) != "-pp" {
				t.Fatalf("%d records (%s), want %d (-pp)", len(got), partialMarks(sink), len(tc.want))
			}
			for i, w := range tc.want {
				if got[i] != "stdout:"+w {
					t.Errorf("record %d: %d bytes (%.20q...), want %d (%.20q...)", i, len(got[i])-len("stdout:"), got[i], len(w), "stdout:"+w)
				}
			}
		})
	}
}
