package collectors

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// attrsOf writes a record's attributes as key=value (kind) pairs.
func attrsOf(r logs.Record) string {
	var parts []string
	for _, a := range r.Attrs {
		parts = append(parts, fmt.Sprintf("%s=%s(%d)", a.Key, a.Value, a.Kind))
	}
	return strings.Join(parts, " ")
}

// TestBurstParsesByLabel: a container labelled berth.parse=json has its
// JSON lines structured (message as body, level as severity, the rest as
// attributes, escapes decoded), lines that are not JSON sent as they are
// and counted; logfmt likewise; the configured format applies without a
// label, and a bad label falls back to it.
func TestBurstParsesByLabel(t *testing.T) {
	jsonLog := []fakeMsg{
		{logs.Stdout, at(1), `{"level":"warn","msg":"disk \"low\"","free_mb":12,"ok":false}` + "\n"},
		{logs.Stderr, at(2), "plain text, not JSON\n"},
		{logs.Stdout, at(3), `{"severity":50,"message":"boom","err":{"code":7}}` + "\n"},
		{logs.Stdout, at(4), `{"msg":"cut` + strings.Repeat("x", 2000) + `"}` + "\n"}, // truncated: no longer JSON
	}
	logfmtLog := []fakeMsg{
		{logs.Stdout, at(1), `level=info msg="user logged in" user=alice` + "\n"},
		{logs.Stdout, at(2), "hello world\n"},
	}
	type rec struct{ body, sev, text, attrs string }
	cut := `{"msg":"cut` + strings.Repeat("x", 1024-len(`{"msg":"cut`))
	for _, tc := range []struct {
		name     string
		labels   map[string]string
		def      string
		log      []fakeMsg
		want     []rec
		unparsed int64
	}{
		{"json by label", map[string]string{"berth.parse": "json"}, "none", jsonLog, []rec{
			{`disk "low"`, "13", "warn", "free_mb=12(1) ok=false(3)"},
			{"plain text, not JSON", "0", "", ""},
			{"boom", "17", "50", `err={"code":7}(5)`},
			{cut, "0", "", ""},
		}, 2},
		{"logfmt by label over json configured", map[string]string{"berth.parse": "logfmt"}, "json", logfmtLog, []rec{
			{"user logged in", "9", "info", "user=alice(0)"},
			{"hello world", "0", "", ""},
		}, 1},
		{"configured format", nil, "logfmt", logfmtLog[:1], []rec{{"user logged in", "9", "info", "user=alice(0)"}}, 0},
		{"a bad label: the configured format", map[string]string{"berth.parse": "yaml"}, "none", logfmtLog[:1], []rec{
			{`level=info msg="user logged in" user=alice`, "0", "", ""}}, 0},
		{"none by label", map[string]string{"berth.parse": "none"}, "json", jsonLog[:1], []rec{
			{`{"level":"warn","msg":"disk \"low\"","free_mb":12,"ok":false}`, "0", "", ""}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &fakeDaemon{log: tc.log, labels: tc.labels}
			sink := &memSink{}
			cfg := testBursts(1024, 10)
			cfg.Parse = config.Parse{Format: tc.def, Body: "message"}
			c := newCollector(t, d, sink, cfg, telemetry.NopSettings())
			res := c.Burst(context.Background(), spec(logs.BeginningCursor(), false))
			if res.End != EndEOF || res.Err != nil {
				t.Fatalf("end %v err %v", res.End, res.Err)
			}
			var got []rec
			for _, r := range sink.records {
				got = append(got, rec{string(r.Body), fmt.Sprint(r.Severity), string(r.SeverityText), attrsOf(r)})
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("records\n%q\nwant\n%q", got, tc.want)
			}
			if res.Unparsed != tc.unparsed || res.Lines != int64(len(tc.log)) {
				t.Errorf("lines %d unparsed %d, want %d and %d", res.Lines, res.Unparsed, len(tc.log), tc.unparsed)
			}
		})
	}
}

// TestBurstParsesMapBody: with parse.body map, every field stays, as the
// body; the level sets the severity too.
func TestBurstParsesMapBody(t *testing.T) {
	d := &fakeDaemon{log: []fakeMsg{{logs.Stdout, at(1), `{"level":"error","msg":"m","n":1}` + "\n"}}}
	sink := &memSink{}
	cfg := testBursts(1024, 10)
	cfg.Parse = config.Parse{Format: "json", Body: "map"}
	res := newCollector(t, d, sink, cfg, telemetry.NopSettings()).Burst(context.Background(), spec(logs.BeginningCursor(), false))
	if res.Err != nil || len(sink.records) != 1 {
		t.Fatalf("err %v, %d records", res.Err, len(sink.records))
	}
	r := sink.records[0]
	if !r.BodyMap || r.Severity != logs.SeverityError || attrsOf(r) != "level=error(0) msg=m(0) n=1(1)" {
		t.Errorf("map %v severity %d attrs %s", r.BodyMap, r.Severity, attrsOf(r))
	}
}

// TestBurstParsesAcrossBatches: fields of records in batches cut by size,
// their strings decoded into the arena, are intact when the sink gets them
// (the arena never moves under a record's fields).
func TestBurstParsesAcrossBatches(t *testing.T) {
	var log []fakeMsg
	const n = 3000
	for i := range n {
		log = append(log, fakeMsg{logs.Stdout, at(i + 1), fmt.Sprintf(`{"msg":"line\t%d","seq":%d,"pad":"%s\u00e9"}`+"\n", i, i, strings.Repeat("p", i%900))})
	}
	d := &fakeDaemon{log: log, labels: map[string]string{"berth.parse": "json"}}
	sink := &memSink{}
	res := newCollector(t, d, sink, testBursts(4096, 10), telemetry.NopSettings()).Burst(context.Background(), spec(logs.BeginningCursor(), false))
	if res.Err != nil || len(sink.records) != n || res.Unparsed != 0 {
		t.Fatalf("err %v, %d records, %d unparsed", res.Err, len(sink.records), res.Unparsed)
	}
	for i, r := range sink.records {
		want := fmt.Sprintf("seq=%d(1) pad=%sé(0)", i, strings.Repeat("p", i%900))
		if string(r.Body) != fmt.Sprintf("line\t%d", i) || attrsOf(r) != want {
			t.Fatalf("record %d: body %q attrs %s", i, r.Body, attrsOf(r))
		}
	}
}

// BenchmarkBurstJSON is BenchmarkBurst with every line a JSON object of
// five fields, parsed (berth.parse=json): the cost of parsing per line is
// its ns/line less BenchmarkBurst's.
func BenchmarkBurstJSON(b *testing.B) {
	benchParsed(b, "json", func(i int) string {
		return fmt.Sprintf(`{"time":"2026-11-30T01:02:03Z","level":"info","msg":"request done","seq":%d,"user":"alice"}`, i)
	})
}

// BenchmarkBurstLogfmt: the same fields as logfmt.
func BenchmarkBurstLogfmt(b *testing.B) {
	benchParsed(b, "logfmt", func(i int) string {
		return fmt.Sprintf(`time=2026-11-30T01:02:03Z level=info msg="request done" seq=%08d user=alice`, i)
	})
}

func benchParsed(b *testing.B, format string, line func(int) string) {
	var body bytes.Buffer
	for i := range benchLines {
		writeMsg(&body, fakeMsg{logs.Stdout, t0.Add(time.Duration(i) * time.Microsecond), line(i) + "\n"}, false)
	}
	src := &benchSource{body: body.Bytes()}
	sink := &countSink{}
	c := newCollector(b, src, sink, testBursts(1<<20, 100), telemetry.NopSettings())
	meta := new(atomic.Pointer[logs.Meta])
	meta.Store(&logs.Meta{ID: "c", Labels: map[string]string{"berth.parse": format}})
	b.SetBytes(int64(len(src.body)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		res := c.Burst(context.Background(), BurstSpec{ID: "c", Cursor: logs.BeginningCursor(), Meta: meta})
		if res.Lines != benchLines || res.Unparsed != 0 {
			b.Fatalf("read %d lines, %d unparsed: %v", res.Lines, res.Unparsed, res.Err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchLines), "ns/line")
}

// TestUnparsedMetric: berth.records.unparsed counts the lines sent as they
// are because they were not in the container's format.
func TestUnparsedMetric(t *testing.T) {
	set, reader := metricSettings(t)
	d := &fakeDaemon{log: []fakeMsg{
		{logs.Stdout, at(1), `{"msg":"ok"}` + "\n"}, {logs.Stdout, at(2), "not json\n"}, {logs.Stderr, at(3), "{broken\n"},
	}, labels: map[string]string{"berth.parse": "json"}}
	res := newCollector(t, d, &memSink{}, testBursts(1024, 10), set).Burst(context.Background(), spec(logs.BeginningCursor(), false))
	if res.Err != nil || res.Unparsed != 2 {
		t.Fatalf("err %v, unparsed %d, want 2", res.Err, res.Unparsed)
	}
	got, _ := collectMetrics(t, reader)
	m, ok := got["berth.records.unparsed"]
	if !ok {
		t.Fatal("berth.records.unparsed not recorded")
	}
	sum, ok := m.Data.(metricdata.Sum[int64])
	if !ok || len(sum.DataPoints) != 1 || !sum.IsMonotonic {
		t.Fatalf("berth.records.unparsed is %+v, want one point of a monotonic int64 sum", m.Data)
	}
	if n := sum.DataPoints[0].Value; n != 2 || m.Unit != "{record}" {
		t.Errorf("berth.records.unparsed = %d %s, want 2 {record}", n, m.Unit)
	}
}

// TestBurstSendsOversizedFieldsAsLine: a JSON line whose fields would cost
// more than max_line_bytes in an export request (thousands of tiny fields,
// or a dense nested array) is sent as it is, counted as unparsed; a line
// of the same length with few fields is parsed.
func TestBurstSendsOversizedFieldsAsLine(t *testing.T) {
	var dense, nested strings.Builder
	dense.WriteString(`{"msg":"m"`)
	for i := range 150 {
		fmt.Fprintf(&dense, `,"k%d":1`, i)
	}
	dense.WriteString("}")
	nested.WriteString(`{"msg":"m","a":[1` + strings.Repeat(",1", 200) + `]}`)
	few := `{"msg":"` + strings.Repeat("x", 1000) + `","a":1}`
	d := &fakeDaemon{log: []fakeMsg{
		{logs.Stdout, at(1), dense.String() + "\n"}, {logs.Stdout, at(2), nested.String() + "\n"}, {logs.Stdout, at(3), few + "\n"},
	}, labels: map[string]string{"berth.parse": "json"}}
	sink := &memSink{}
	res := newCollector(t, d, sink, testBursts(2048, 10), telemetry.NopSettings()).Burst(context.Background(), spec(logs.BeginningCursor(), false))
	if res.Err != nil || len(sink.records) != 3 || res.Unparsed != 2 {
		t.Fatalf("err %v, %d records, %d unparsed; want 3 and 2", res.Err, len(sink.records), res.Unparsed)
	}
	for i, want := range []string{dense.String(), nested.String()} {
		if r := sink.records[i]; string(r.Body) != want || len(r.Attrs) != 0 || r.Severity != 0 || !r.Unparsed {
			t.Errorf("record %d: body %.40q attrs %d unparsed %v, want the line as it is", i, r.Body, len(r.Attrs), r.Unparsed)
		}
	}
	if r := sink.records[2]; len(r.Body) != 1000 || attrsOf(r) != "a=1(1)" || r.Unparsed {
		t.Errorf("the line with few fields: body of %d bytes, attrs %s, unparsed %v", len(r.Body), attrsOf(r), r.Unparsed)
	}
}
