package otelcolrun

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Two lines as the collector's file exporter writes them (OTLP/JSON), a
// traces line, and then a partially written line.
const sample = `{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"web"}},{"key":"container.image.tags","value":{"arrayValue":{"values":[{"stringValue":"1.2"},{"stringValue":"latest"}]}}},{"key":"host.pid","value":{"intValue":"4242"}}]},"scopeLogs":[{"scope":{"name":"berth"},"logRecords":[{"timeUnixNano":"1700000000000000042","observedTimeUnixNano":"1700000001000000042","body":{"stringValue":"hello"},"attributes":[{"key":"log.iostream","value":{"stringValue":"stdout"}},{"key":"log.truncated","value":{"boolValue":true}},{"key":"ratio","value":{"doubleValue":0.5}},{"key":"m","value":{"kvlistValue":{"values":[{"key":"k","value":{"intValue":"1"}}]}}}],"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708"},{"timeUnixNano":"1700000000000000043","body":{"bytesValue":"/wA="}}]}]}]}
{"resourceSpans":[{"resource":{},"scopeSpans":[]}]}
{"resourceLogs":[{"resource":{},"scopeLogs":[{"scope":{},"logRecords":[{"timeUnixNano":1700000000000000044,"body":{"intValue":"7"}},{}]}]}]}
{"resourceLogs":[{"resource":{},"scopeLogs":[{"scope":{},"logRec`

func TestParse(t *testing.T) {
	recs, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 {
		t.Fatalf("%d records, want 4: %+v", len(recs), recs)
	}
	r := recs[0]
	if r.Body != "hello" || r.BodyKind != "string" || r.Scope != "berth" ||
		r.TimeUnixNano != 1700000000000000042 || r.ObservedTimeUnixNano != 1700000001000000042 ||
		r.TraceID != "0102030405060708090a0b0c0d0e0f10" || r.SpanID != "0102030405060708" {
		t.Errorf("record 0: %+v", r)
	}
	if got := fmt.Sprintf("%#v", r.Resource); got != `map[string]interface {}{"container.image.tags":[]interface {}{"1.2", "latest"}, "host.pid":4242, "service.name":"web"}` {
		t.Errorf("resource %s", got)
	}
	if got := fmt.Sprintf("%#v", r.Attributes); got != `map[string]interface {}{"log.iostream":"stdout", "log.truncated":true, "m":map[string]interface {}{"k":1}, "ratio":0.5}` {
		t.Errorf("attributes %s", got)
	}
	if r.Attributes["host.pid"] != nil || r.Resource["host.pid"] != int64(4242) {
		t.Errorf("host.pid %T", r.Resource["host.pid"])
	}
	if r := recs[1]; !bytes.Equal(r.BodyBytes, []byte{0xff, 0}) || r.BodyKind != "bytes" || r.ObservedTimeUnixNano != 0 {
		t.Errorf("record 1: %+v", r)
	}
	if r := recs[2]; r.Body != "7" || r.BodyKind != "int" || r.TimeUnixNano != 1700000000000000044 {
		t.Errorf("record 2: %+v", r)
	}
	if r := recs[3]; r.BodyKind != "" || r.Body != "" || len(r.Attributes) != 0 {
		t.Errorf("record 3: %+v", r)
	}

	// A bad line that is complete is an error.
	bad := strings.Replace(sample, `{"resourceSpans"`, `{"resourceSpans" x`, 1)
	if _, err := Parse([]byte(bad)); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad complete line: %v", err)
	}
	// A complete last line without its newline is read.
	last := sample[:strings.LastIndex(sample, "\n")]
	if recs, err := Parse([]byte(last)); err != nil || len(recs) != 4 {
		t.Errorf("unterminated complete last line: %d records, %v", len(recs), err)
	}
}

func TestReadFileMissing(t *testing.T) {
	recs, err := ReadFile(filepath.Join(t.TempDir(), "none.jsonl"))
	if err != nil || recs != nil {
		t.Errorf("missing file: %v %v", recs, err)
	}
	p := filepath.Join(t.TempDir(), "out.jsonl")
	if err := os.WriteFile(p, []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	if recs, err := ReadFile(p); err != nil || len(recs) != 4 {
		t.Errorf("ReadFile: %d records, %v", len(recs), err)
	}
}

func TestConfig(t *testing.T) {
	c := &Collector{GRPCAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2", OutputPath: `/tmp/a "b"/out.jsonl`}
	got := config(c, Options{Batch: true, Debug: true})
	for _, want := range []string{
		`endpoint: "127.0.0.1:1"`, `endpoint: "127.0.0.1:2"`, `path: "/tmp/a \"b\"/out.jsonl"`,
		"level: none", "    logs:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [file, debug]\n",
		"    traces:\n", "    metrics:\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("config lacks %q:\n%s", want, got)
		}
	}
}
