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
	"github.com/berthlog/berth/multiline"
	"github.com/berthlog/berth/telemetry"
)

// multilineBursts is testBursts with a multiline rule.
func multilineBursts(maxLine int, m config.Multiline) config.Bursts {
	cfg := testBursts(maxLine, 10)
	if m.Timeout == 0 {
		m.Timeout = time.Second
	}
	if m.MaxLines == 0 {
		m.MaxLines = 500
	}
	cfg.Multiline = m
	return cfg
}

// lines is one message per line of text, on stream s, 1 µs apart from
// start.
func lines(s logs.Stream, start time.Time, text string) []fakeMsg {
	var out []fakeMsg
	for i, l := range strings.Split(text, "\n") {
		out = append(out, fakeMsg{s, start.Add(time.Duration(i) * time.Microsecond), l + "\n"})
	}
	return out
}

const javaTrace = "Exception in thread \"main\" java.lang.IllegalStateException: boom\n" +
	"\tat com.example.App.run(App.java:42)\n" +
	"Caused by: java.lang.NullPointerException\n" +
	"\t... 1 more"

// TestBurstJoinsPerStream: a trace on stdout is one record stamped with its
// first line's time, while stderr's lines, interleaved, are joined (or not)
// on their own; a trace line that came in two chunks is one line of it; the
// cursor ends at the last line read.
func TestBurstJoinsPerStream(t *testing.T) {
	var log []fakeMsg
	log = append(log, fakeMsg{logs.Stdout, at(1000), "before\n"})
	tr := lines(logs.Stdout, at(2000), javaTrace)
	// The second trace line arrives in two chunks.
	long := "\tat com.example.Very" + strings.Repeat("x", 40) + ".long(App.java:1)"
	log = append(log, tr[0],
		fakeMsg{logs.Stdout, tr[1].ts, long[:20]}, fakeMsg{logs.Stdout, tr[1].ts, long[20:] + "\n"},
		fakeMsg{logs.Stderr, at(2500), "err one\n"}, // between the trace's lines, on the other stream
		tr[2], tr[3],
		fakeMsg{logs.Stderr, at(9000), "\tat not.a.Continuation(of the other stream)\n"},
		fakeMsg{logs.Stdout, at(10000), "after\n"})
	d := &fakeDaemon{log: log}
	sink := &memSink{}
	c := newCollector(t, d, sink, multilineBursts(1024, config.Multiline{Preset: "java"}), telemetry.NopSettings())
	res := c.Burst(context.Background(), spec(logs.BeginningCursor(), false))
	if res.End != EndEOF || res.Err != nil {
		t.Fatalf("end %v err %v", res.End, res.Err)
	}
	wantTrace := strings.Replace(javaTrace, "\tat com.example.App.run(App.java:42)", long, 1)
	// stderr's record is held until the end: within the timeout of its
	// last line, nothing closes it.
	want := []string{"stdout:before", "stdout:" + wantTrace, "stdout:after", "stderr:err one\n\tat not.a.Continuation(of the other stream)"}
	got := sink.bodies()
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	for _, r := range sink.records {
		if strings.HasPrefix(string(r.Body), "Exception") && !r.Timestamp.Equal(at(2000)) {
			t.Errorf("the trace is stamped %v, want its first line's %v", r.Timestamp, at(2000))
		}
	}
	if res.Lines != 4 || !res.Cursor.Streams[0].Time.Equal(at(10000)) || !res.Cursor.Streams[1].Time.Equal(at(9000)) {
		t.Fatalf("lines %d, cursor %+v", res.Lines, res.Cursor)
	}
}

// TestBurstHeldRecordStaysOutOfTheCursor: a burst that ends in the middle of
// a trace (an error, or max_burst) sends none of it and commits the cursor
// only up to the line before it; the next burst sends the trace whole, once,
// and nothing twice.
func TestBurstHeldRecordStaysOutOfTheCursor(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(d *fakeDaemon, cfg *config.Bursts)
		want EndReason
	}{
		{"error", func(d *fakeDaemon, _ *config.Bursts) { d.trailer = []byte{9, 0, 0, 0, 0, 0, 0, 1, 'x'} }, EndError},
		{"max_burst", func(d *fakeDaemon, cfg *config.Bursts) { d.cutAfter = []int{4}; cfg.MaxBurst = time.Nanosecond }, EndMaxBurst},
	} {
		t.Run(tc.name, func(t *testing.T) {
			full := append([]fakeMsg{{logs.Stdout, at(1000), "a\n"}, {logs.Stdout, at(1500), "b\n"}}, lines(logs.Stdout, at(2000), javaTrace)...)
			full = append(full, fakeMsg{logs.Stdout, at(9000), "c\n"})
			d := &fakeDaemon{log: full, visible: []int{5}} // the first burst sees half the trace
			cfg := multilineBursts(1024, config.Multiline{Preset: "java"})
			tc.end(d, &cfg)
			sink := &memSink{}
			c := newCollector(t, d, sink, cfg, telemetry.NopSettings())
			res := c.Burst(context.Background(), spec(logs.BeginningCursor(), false))
			if res.End != tc.want {
				t.Fatalf("end %v (%v), want %v", res.End, res.Err, tc.want)
			}
			if got := sink.bodies(); strings.Join(got, "|") != "stdout:a|stdout:b" {
				t.Fatalf("first burst sent %q, want a and b only", got)
			}
			if !res.Cursor.Streams[0].Time.Equal(at(1500)) {
				t.Fatalf("cursor at %v, want at b (%v): the held trace's lines must not be committed", res.Cursor.Streams[0].Time, at(1500))
			}
			d.trailer, d.cutAfter = nil, nil
			c = newCollector(t, d, sink, multilineBursts(1024, config.Multiline{Preset: "java"}), telemetry.NopSettings())
			res = c.Burst(context.Background(), spec(res.Cursor, false))
			want := []string{"stdout:a", "stdout:b", "stdout:" + javaTrace, "stdout:c"}
			if got := sink.bodies(); strings.Join(got, "|") != strings.Join(want, "|") {
				t.Fatalf("after the re-attach: %q\nwant %q (end %v, err %v)", got, want, res.End, res.Err)
			}
		})
	}
}

// TestBurstMultilineBounds: a record is cut at max_line_bytes and marked,
// and closed at max_lines, marked, the rest of the lines starting the next.
func TestBurstMultilineBounds(t *testing.T) {
	d := &fakeDaemon{log: lines(logs.Stdout, at(1000), "x1\n  2\n  3\n  4\nx5 "+strings.Repeat("y", 2000)+"\n  6")}
	sink := &memSink{}
	c := newCollector(t, d, sink, multilineBursts(1024, config.Multiline{Start: "^x", MaxLines: 3}), telemetry.NopSettings())
	c.Burst(context.Background(), spec(logs.BeginningCursor(), false))
	if len(sink.records) != 3 {
		t.Fatalf("got %q, want 3 records", sink.bodies())
	}
	r := sink.records
	if string(r[0].Body) != "x1\n  2\n  3" || !r[0].Truncated {
		t.Errorf("record 0: %q truncated=%v, want the first 3 lines, marked", r[0].Body, r[0].Truncated)
	}
	if string(r[1].Body) != "  4" || r[1].Truncated {
		t.Errorf("record 1: %q truncated=%v", r[1].Body, r[1].Truncated)
	}
	if len(r[2].Body) != 1024 || !r[2].Truncated || !strings.HasPrefix(string(r[2].Body), "x5 yyy") {
		t.Errorf("record 2: %d bytes truncated=%v, want 1024, marked", len(r[2].Body), r[2].Truncated)
	}
}

// TestBurstMultilineLabels: a container's labels override the configured
// rule; a bad label leaves the configured rule in force.
func TestBurstMultilineLabels(t *testing.T) {
	log := lines(logs.Stdout, at(1000), "Traceback (most recent call last):\n  File \"a.py\", line 1, in <module>\nValueError: x\nnext")
	for _, tc := range []struct {
		name   string
		cfg    config.Multiline
		labels map[string]string
		want   int
	}{
		{"no rule", config.Multiline{}, nil, 4},
		{"label python", config.Multiline{}, map[string]string{multiline.LabelPreset: "python"}, 2},
		{"label none over config", config.Multiline{Preset: "python"}, map[string]string{multiline.LabelPreset: "none"}, 4},
		{"label start over config", config.Multiline{Preset: "python"}, map[string]string{multiline.LabelStart: "^(Traceback|ValueError|next)"}, 3},
		{"bad label: the config applies", config.Multiline{Preset: "python"}, map[string]string{multiline.LabelPreset: "cobol"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &fakeDaemon{log: log, labels: tc.labels}
			sink := &memSink{}
			c := newCollector(t, d, sink, multilineBursts(1024, tc.cfg), telemetry.NopSettings())
			c.Burst(context.Background(), spec(logs.BeginningCursor(), false))
			if len(sink.records) != tc.want {
				t.Fatalf("got %q, want %d records", sink.bodies(), tc.want)
			}
		})
	}
}

// pipeSource serves one logs response that the test writes as it goes.
type pipeSource struct {
	r *io.PipeReader
}

func (p *pipeSource) Inspect(context.Context, string) (*logs.Meta, error) {
	return &logs.Meta{ID: "c1", Name: "web", Running: true}, nil
}

func (p *pipeSource) Logs(context.Context, string, LogRequest) (io.ReadCloser, error) {
	return p.r, nil
}

// TestBurstMultilineTimeout: while the container writes nothing, a held
// record is sent after multiline.timeout (not at the end of the burst), and
// committed; a line within the timeout is still joined.
func TestBurstMultilineTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pr, pw := io.Pipe()
		sink := &memSink{}
		progress := &BurstProgress{}
		c := newCollector(t, &pipeSource{r: pr}, sink, multilineBursts(1024, config.Multiline{Preset: "java", Timeout: time.Second}), telemetry.NopSettings())
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
		write(lines(logs.Stdout, time.Now(), "Exception: one\n\tat a.B(B.java:1)")...)
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		if n := len(sink.bodies()); n != 0 {
			t.Fatalf("sent %q before the timeout", sink.bodies())
		}
		write(fakeMsg{logs.Stdout, time.Now(), "\tat c.D(D.java:2)\n"})
		time.Sleep(999 * time.Millisecond)
		synctest.Wait()
		if n := len(sink.bodies()); n != 0 {
			t.Fatalf("sent %q before the timeout", sink.bodies())
		}
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		want := "stdout:Exception: one\n\tat a.B(B.java:1)\n\tat c.D(D.java:2)"
		if got := sink.bodies(); len(got) != 1 || got[0] != want {
			t.Fatalf("after the timeout: %q, want %q", got, want)
		}
		if progress.Lines.Load() != 1 {
			t.Fatalf("progress %d records, want 1", progress.Lines.Load())
		}
		plain := time.Now()
		write(fakeMsg{logs.Stdout, plain, "plain\n"})
		_ = pw.Close()
		res := <-done
		if res.Lines != 2 || res.End != EndEOF || !res.Cursor.Streams[0].Time.Equal(plain) {
			t.Fatalf("result %+v, want 2 records, the end of the stream, the cursor at the last line", res)
		}
		if got := sink.bodies(); len(got) != 2 || got[1] != "stdout:plain" {
			t.Fatalf("at the end: %q", got)
		}
	})
}

// FuzzBurstMultilineResume: a burst ended at any message (as max_burst ends
// it, keeping what it holds out of the cursor) and a second burst from the
// cursor it returned together send exactly the records one burst over the
// whole log sends: no record lost, none twice, none cut in two. Lines
// starting with "a" start a record (fuzzLog's contents: "a", "ab" start;
// "", "b", "é", "€x", "x", "ok" continue).
func FuzzBurstMultilineResume(f *testing.F) {
	f.Add([]byte{0x08, 0x30, 0x31, 0x19, 0x20, 0x09, 0x38}, false, uint8(3), uint8(2))
	f.Add([]byte{0xc8, 0xf0, 0x08, 0x09, 0xd1, 0x10, 0x30}, false, uint8(4), uint8(0))
	f.Add([]byte{0x08, 0x10, 0x18, 0x20, 0x28, 0x30, 0x38}, true, uint8(2), uint8(1))
	f.Fuzz(func(t *testing.T, script []byte, tty bool, cut, tail uint8) {
		log, _ := fuzzLog(script, tty)
		cfg := multilineBursts(1024, config.Multiline{Start: "^a"})
		// A re-attach's tail window must reach back to the first line
		// held when the burst ended. It does when it starts at a line
		// of the held stream (one not read: the tail is widened), not
		// always when it starts at a line of the other stream that was
		// committed after the held lines (a known limit: the cursor does
		// not record that lines were held). A window as long as the log
		// keeps this test to the joiner's own guarantee.
		cfg.ReattachTail = len(log) + int(tail%8)

		ref := &memSink{}
		d := &fakeDaemon{log: log, tty: tty}
		res := newCollector(t, d, ref, cfg, telemetry.NopSettings()).Burst(context.Background(), spec(logs.BeginningCursor(), true))
		if res.End != EndEOF || res.Err != nil {
			t.Fatalf("reference burst ended %v (%v)", res.End, res.Err)
		}

		k := 1 + int(cut)%max(1, len(log))
		cutCfg := cfg
		cutCfg.MaxBurst = time.Nanosecond
		sink := &memSink{}
		d = &fakeDaemon{log: log, tty: tty, cutAfter: []int{k}}
		res = newCollector(t, d, sink, cutCfg, telemetry.NopSettings()).Burst(context.Background(), spec(logs.BeginningCursor(), true))
		if k < len(log) && res.End != EndMaxBurst {
			t.Fatalf("cut burst ended %v (%v), want max_burst", res.End, res.Err)
		}
		d = &fakeDaemon{log: log, tty: tty}
		res2 := newCollector(t, d, sink, cfg, telemetry.NopSettings()).Burst(context.Background(), spec(res.Cursor, true))
		if res2.Err != nil {
			t.Fatalf("second burst: %v", res2.Err)
		}
		for s := logs.Stdout; s <= logs.Stderr; s++ {
			want, got := streamBodies(ref.bodies(), s), streamBodies(sink.bodies(), s)
			if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
				t.Fatalf("%v, cut after %d messages: got %q\nwant %q", s, k, got, want)
			}
		}
	})
}

// streamBodies keeps the bodies (as memSink.bodies gives them) of stream s.
func streamBodies(all []string, s logs.Stream) []string {
	var out []string
	for _, b := range all {
		if rest, ok := strings.CutPrefix(b, s.String()+":"); ok {
			out = append(out, rest)
		}
	}
	return out
}
