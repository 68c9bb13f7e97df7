package multiline

import (
	"strings"
	"testing"
	"time"

	"github.com/berthlog/berth/logs"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type rec struct {
	ts    time.Time
	body  string
	trunc bool
}

// join drives a Joiner as the collector does and returns the records,
// the last one closed at the end (the container stopped). Line i is stamped
// t0 + i ms, unless gaps says otherwise.
func join(t testing.TB, r *Rules, maxBytes int, lines []string, gaps map[int]time.Duration) []rec {
	t.Helper()
	var j Joiner
	j.Reset(r, maxBytes)
	var out []rec
	take := func() {
		if j.Held() {
			ts, b, tr := j.Take()
			out = append(out, rec{ts, string(b), tr})
		}
	}
	ts := t0
	for i, l := range lines {
		ts = ts.Add(time.Millisecond + gaps[i])
		if j.Expired(ts) {
			take()
		}
		switch j.Step([]byte(l)) {
		case Begin:
			take()
			j.Begin(ts, []byte(l), false)
		case Continue:
			j.Append(ts, []byte(l), false)
		case End:
			j.Append(ts, []byte(l), false)
			take()
		case Single:
			take()
			out = append(out, rec{ts, l, false})
		default:
			t.Fatalf("line %d: no action", i)
		}
	}
	take()
	return out
}

func mustNew(t testing.TB, s Spec) *Rules {
	t.Helper()
	r, err := New(s, time.Second, 500)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

const javaTrace = `Exception in thread "main" java.lang.IllegalStateException: outer
	at com.example.App.run(App.java:42)
	at com.example.App.main(App.java:10)
Caused by: java.lang.NullPointerException: inner
	at com.example.Dao.load(Dao.java:7)
	... 2 more
	Suppressed: java.io.IOException: close
		at com.example.Dao.close(Dao.java:9)`

const pythonTrace = `Traceback (most recent call last):
  File "/app/main.py", line 10, in <module>
    main()
  File "/app/main.py", line 6, in main
    raise ValueError("boom")
ValueError: boom`

const goPanic = `panic: runtime error: index out of range [5] with length 3

goroutine 1 [running]:
main.(*Server).handle(0xc000012345, {0x4b5b18, 0x3})
	/app/server.go:42 +0x1d
main.main()
	/app/main.go:12 +0x25

goroutine 18 [chan receive]:
main.worker(0xc00001c0c0)
	/app/worker.go:8 +0x3c
created by main.main in goroutine 1
	/app/main.go:10 +0x1a`

func TestJoin(t *testing.T) {
	lines := func(s ...string) []string {
		var out []string
		for _, x := range s {
			out = append(out, strings.Split(x, "\n")...)
		}
		return out
	}
	bodies := func(rs []rec) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.body)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		spec Spec
		in   []string
		gaps map[int]time.Duration
		want []string
	}{
		{"java trace among lines", Spec{Preset: "java"}, lines("a", javaTrace, "b", "c"),
			nil, []string{"a", javaTrace, "b", "c"}},
		{"java trace after a log line joins it", Spec{Preset: "java"}, lines("ERROR failed", "\tat x.Y.z(Y.java:1)", "ok"),
			nil, []string{"ERROR failed\n\tat x.Y.z(Y.java:1)", "ok"}},
		{"java indented line that is no frame", Spec{Preset: "java"}, lines("a", "  b"),
			nil, []string{"a", "  b"}},
		{"python traceback among lines", Spec{Preset: "python"}, lines("a", pythonTrace, "b"),
			nil, []string{"a", pythonTrace, "b"}},
		{"python two tracebacks in a row", Spec{Preset: "python"}, lines(pythonTrace, pythonTrace),
			nil, []string{pythonTrace, pythonTrace}},
		{"python indented line outside a traceback", Spec{Preset: "python"}, lines("a", "  b"),
			nil, []string{"a", "  b"}},
		{"go panic among lines", Spec{Preset: "go"}, lines("a", goPanic, "b"),
			nil, []string{"a", goPanic, "b"}},
		{"go panic at the end, trailing blank dropped", Spec{Preset: "go"}, lines("a", goPanic, ""),
			nil, []string{"a", goPanic}},
		{"go fatal error", Spec{Preset: "go"}, lines("fatal error: all goroutines are asleep - deadlock!", "", "goroutine 1 [chan receive]:", "main.main()", "next log"),
			nil, []string{"fatal error: all goroutines are asleep - deadlock!\n\ngoroutine 1 [chan receive]:\nmain.main()", "next log"}},
		{"start pattern", Spec{Start: `^\d{4}-`}, lines("2026-01 a", "  more", "x", "2026-01 b", "2026-01 c"),
			nil, []string{"2026-01 a\n  more\nx", "2026-01 b", "2026-01 c"}},
		{"start pattern, continuation first", Spec{Start: `^\d{4}-`}, lines("orphan", "more", "2026-01 a"),
			nil, []string{"orphan\nmore", "2026-01 a"}},
		{"continue pattern", Spec{Continue: `^\s|^Caused by:`}, lines("a", " b", "Caused by: c", "d"),
			nil, []string{"a\n b\nCaused by: c", "d"}},
		{"timeout by the lines' stamps", Spec{Preset: "java"}, lines("a", "\tat x", "\tat y"),
			map[int]time.Duration{2: 2 * time.Second}, []string{"a\n\tat x", "\tat y"}},
		{"gap within the timeout", Spec{Preset: "java"}, lines("a", "\tat x", "\tat y"),
			map[int]time.Duration{2: 900 * time.Millisecond}, []string{"a\n\tat x\n\tat y"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := bodies(join(t, mustNew(t, tc.spec), 1<<20, tc.in, tc.gaps))
			if strings.Join(got, "\x00") != strings.Join(tc.want, "\x00") {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestJoinFirstTimestamp(t *testing.T) {
	got := join(t, mustNew(t, Spec{Preset: "java"}), 1<<20, strings.Split(javaTrace, "\n"), nil)
	if len(got) != 1 || !got[0].ts.Equal(t0.Add(time.Millisecond)) {
		t.Fatalf("got %+v, want one record stamped with the first line's time", got)
	}
}

func TestJoinBounds(t *testing.T) {
	t.Run("max lines", func(t *testing.T) {
		r, err := New(Spec{Preset: "java"}, time.Second, 3)
		if err != nil {
			t.Fatal(err)
		}
		got := join(t, r, 1<<20, []string{"a", "\tat 1", "\tat 2", "\tat 3", "\tat 4", "b"}, nil)
		want := []rec{{body: "a\n\tat 1\n\tat 2", trunc: true}, {body: "\tat 3\n\tat 4"}, {body: "b"}}
		if len(got) != len(want) {
			t.Fatalf("got %+v", got)
		}
		for i := range want {
			if got[i].body != want[i].body || got[i].trunc != want[i].trunc {
				t.Errorf("record %d: got %q truncated=%v, want %q truncated=%v", i, got[i].body, got[i].trunc, want[i].body, want[i].trunc)
			}
		}
	})
	t.Run("max bytes", func(t *testing.T) {
		got := join(t, mustNew(t, Spec{Preset: "java"}), 12, []string{"abcdef", "\tat 123456", "\tat 7", "b"}, nil)
		if len(got) != 2 || got[0].body != "abcdef\n\tat 1" || !got[0].trunc || got[1].body != "b" || got[1].trunc {
			t.Fatalf("got %+v, want the trace cut at 12 bytes and marked, then b", got)
		}
	})
	t.Run("max bytes keeps UTF-8 whole", func(t *testing.T) {
		got := join(t, mustNew(t, Spec{Start: "^x"}), 7, []string{"x", "aé€"}, nil)
		if len(got) != 1 || got[0].body != "x\naé" || !got[0].trunc {
			t.Fatalf("got %+v", got)
		}
	})
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		spec Spec
		want string
	}{
		{Spec{Preset: "ruby"}, `unknown preset "ruby"; use one of java, python, go, none`},
		{Spec{Start: "("}, `start "(" is not a regular expression`},
		{Spec{Continue: "["}, `continue "[" is not a regular expression`},
		{Spec{Preset: "go", Start: "x"}, "set only one of preset, start and continue"},
	} {
		_, err := New(tc.spec, time.Second, 10)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", tc.spec, err, tc.want)
		}
	}
	if r, err := New(Spec{}, time.Second, 10); r != nil || err != nil {
		t.Errorf("zero spec: got %v, %v, want nil rules", r, err)
	}
}

func TestFromLabels(t *testing.T) {
	def := Spec{Preset: "java"}
	for _, tc := range []struct {
		labels  map[string]string
		want    Spec
		wantErr string
	}{
		{nil, def, ""},
		{map[string]string{"other": "x"}, def, ""},
		{map[string]string{LabelPreset: "python"}, Spec{Preset: "python"}, ""},
		{map[string]string{LabelStart: `^\d`}, Spec{Start: `^\d`}, ""},
		{map[string]string{LabelContinue: `^\s`}, Spec{Continue: `^\s`}, ""},
		{map[string]string{LabelPreset: "none"}, Spec{Preset: "none"}, ""},
		{map[string]string{LabelPreset: "cobol"}, def, `berth.multiline.preset: unknown preset "cobol"`},
		{map[string]string{LabelStart: "(("}, def, `berth.multiline.start: start "((" is not a regular expression`},
		{map[string]string{LabelStart: "x", LabelPreset: "go"}, def, "berth.multiline.preset: set only one of"},
	} {
		got, err := FromLabels(tc.labels, def)
		if got != tc.want {
			t.Errorf("%v: got %+v, want %+v", tc.labels, got, tc.want)
		}
		if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%v: got error %v, want %q", tc.labels, err, tc.wantErr)
		}
	}
	if r, err := New(Spec{Preset: "none"}, time.Second, 2); r != nil || err != nil {
		t.Errorf("preset none: got %v, %v, want no rules", r, err)
	}
}

func TestJoinAllocs(t *testing.T) {
	r := mustNew(t, Spec{Start: `^\d{4}-`})
	var j Joiner
	j.Reset(r, 1<<20)
	line, cont := []byte("2026-01-02 a line"), []byte("  continued")
	ts := t0
	step := func(l []byte) {
		ts = ts.Add(time.Millisecond)
		if j.Expired(ts) {
			j.Take()
		}
		switch j.Step(l) {
		case Begin:
			j.Take()
			j.Begin(ts, l, false)
		case Continue:
			j.Append(ts, l, false)
		}
	}
	step(line)
	step(cont)
	if n := testing.AllocsPerRun(1000, func() { step(line); step(cont) }); n != 0 {
		t.Errorf("%v allocations per line pair, want 0", n)
	}
}

// FuzzJoin checks, for any lines and any rule, that no line's text is lost
// or invented (records are the lines, in order, joined by newlines, unless
// cut and marked), that no record exceeds the byte bound and that each has a
// line's timestamp.
func FuzzJoin(f *testing.F) {
	f.Add("java", "a\n\tat b\nCaused by: c\nd", 64, 0)
	f.Add("python", pythonTrace+"\nx", 1<<10, 1)
	f.Add("go", goPanic+"\n\n", 40, 2)
	f.Add("^x", "x\ny\nx\n\n", 8, 3)
	f.Fuzz(func(t *testing.T, rule, text string, maxBytes, maxLines int) {
		maxBytes = 1 + abs(maxBytes)%256
		maxLines = abs(maxLines) % 8
		spec := Spec{Preset: rule}
		if rule != "java" && rule != "python" && rule != "go" {
			spec = Spec{Start: rule}
		}
		r, err := New(spec, time.Second, maxLines)
		if err != nil || r == nil {
			return
		}
		lines := strings.Split(text, "\n")
		for i := range lines {
			lines[i], _ = clipString(lines[i], maxBytes)
		}
		gaps := map[int]time.Duration{len(lines) / 2: 3 * time.Second}
		recs := join(t, r, maxBytes, lines, gaps)
		joined := strings.Join(lines, "\n")
		var rebuilt []string
		for _, rc := range recs {
			if len(rc.body) > maxBytes {
				t.Fatalf("record of %d bytes over the bound %d", len(rc.body), maxBytes)
			}
			if rc.ts.Before(t0) {
				t.Fatalf("record without a line's timestamp: %+v", rc)
			}
			if !rc.trunc && !strings.Contains(joined, rc.body) {
				t.Fatalf("record %q is not made of the lines", rc.body)
			}
			rebuilt = append(rebuilt, rc.body)
		}
		if len(recs) > len(lines) {
			t.Fatalf("%d records from %d lines", len(recs), len(lines))
		}
		anyTrunc := false
		for _, rc := range recs {
			anyTrunc = anyTrunc || rc.trunc
		}
		// Blank lines at a record's end are dropped: compare the others.
		if !anyTrunc && nonBlank(strings.Join(rebuilt, "\n")) != nonBlank(joined) {
			t.Fatalf("records %q do not rebuild the lines %q", rebuilt, lines)
		}
	})
}

func nonBlank(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func clipString(s string, n int) (string, bool) {
	b, cut := logs.Clip([]byte(s), n)
	return string(b), cut
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// FuzzJavaContinues: the java preset's hand-written test agrees with its
// regular expression.
func FuzzJavaContinues(f *testing.F) {
	for _, l := range strings.Split(javaTrace, "\n") {
		f.Add(l)
	}
	for _, l := range []string{"\t... 12 common frames omitted", "  at ", "\tat  x", "\f... 1 morex", "...  1 more", " Caused by:", "\rSuppressed: x", "at x"} {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if got, want := javaContinues([]byte(line)), javaContinue.MatchString(line); got != want {
			t.Fatalf("javaContinues(%q) = %v, the regular expression says %v", line, got, want)
		}
	})
}
