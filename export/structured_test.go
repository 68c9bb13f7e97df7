package export

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/parse"
	"github.com/berthlog/berth/telemetry"
	"go.opentelemetry.io/otel/attribute"
)

// parsedRecord is a record of line structured as the collector does it.
func parsedRecord(t testing.TB, f parse.Format, body parse.Body, line string) logs.Record {
	t.Helper()
	r := logs.Record{Timestamp: time.Unix(1714558830, 5), Observed: time.Unix(1714558831, 0), Body: []byte(line), Stream: logs.Stdout}
	_, fields, ok := parse.Fields(f, r.Body, nil, nil)
	if !ok {
		t.Fatalf("%q does not parse", line)
	}
	parse.Structure(&r, fields, body)
	return r
}

const structuredLine = `{"level":"warn","msg":"disk \"low\"","free_mb":12,"ratio":0.5,"ok":false,"none":null,"big":123456789012345678901,"ctx":{"path":"/x","ids":[1,"b"]}}`

// TestJSONSinkParsedRecord: a parsed line's message is the body, its level
// severity_number and severity_text, its other fields attributes of their
// JSON types; with a map body, the object of every field is the body.
func TestJSONSinkParsedRecord(t *testing.T) {
	meta := &logs.Meta{ID: "abc", Name: "web-1", ServiceName: "web", ServiceNamespace: "shop", ImageID: "sha256:1",
		ImageRepoDigests: []string{"app@sha256:2"}, Static: []logs.Label{{Key: "deployment.environment", Value: "prod"}}}
	for _, tc := range []struct {
		name      string
		body      parse.Body
		wantBody  any
		wantAttrs map[string]any
	}{
		{"message", parse.BodyMessage, `disk "low"`, map[string]any{"log.iostream": "stdout", "free_mb": 12.0, "ratio": 0.5, "ok": false, "none": nil,
			"big": 123456789012345678901.0, "ctx": map[string]any{"path": "/x", "ids": []any{1.0, "b"}}}},
		{"map", parse.BodyMap, map[string]any{"level": "warn", "msg": `disk "low"`, "free_mb": 12.0, "ratio": 0.5, "ok": false, "none": nil,
			"big": 123456789012345678901.0, "ctx": map[string]any{"path": "/x", "ids": []any{1.0, "b"}}}, map[string]any{"log.iostream": "stdout"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			s := NewJSONSink(&out, nil)
			r := parsedRecord(t, parse.JSON, tc.body, structuredLine)
			if err := s.Consume(t.Context(), &logs.Batch{Meta: meta, Records: []logs.Record{r}}); err != nil {
				t.Fatal(err)
			}
			var rec struct {
				Body       any            `json:"body"`
				Number     int            `json:"severity_number"`
				Text       string         `json:"severity_text"`
				Attributes map[string]any `json:"attributes"`
				Resource   map[string]any `json:"resource"`
			}
			if err := json.Unmarshal(out.Bytes(), &rec); err != nil {
				t.Fatalf("%s: %v", out.Bytes(), err)
			}
			if !reflect.DeepEqual(rec.Body, tc.wantBody) || rec.Number != 13 || rec.Text != "warn" || !reflect.DeepEqual(rec.Attributes, tc.wantAttrs) {
				t.Errorf("body %v severity %d %q attributes %v\nwant body %v severity 13 \"warn\" attributes %v", rec.Body, rec.Number, rec.Text, rec.Attributes, tc.wantBody, tc.wantAttrs)
			}
			for k, v := range map[string]any{"service.namespace": "shop", "container.image.id": "sha256:1", "container.image.repo_digests": []any{"app@sha256:2"},
				"deployment.environment": "prod", "container.runtime.name": "docker"} {
				if !reflect.DeepEqual(rec.Resource[k], v) {
					t.Errorf("resource %s = %v, want %v", k, rec.Resource[k], v)
				}
			}
		})
	}
}

// TestConvertParsedRecord: the OTLP record of a parsed line has its
// severity, and its fields as attributes (or map body) of their types:
// integers, doubles (an integer too large for 64 bits too), booleans, an
// empty value for null, nested maps and slices.
func TestConvertParsedRecord(t *testing.T) {
	s := newTestSink(t, &fakeExporter{}, nil, telemetry.NopSettings())
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	meta := &logs.Meta{ID: "c1", Name: "web", ServiceNamespace: "shop", ImageID: "sha256:1", ImageRepoDigests: []string{"app@sha256:2"},
		Static: []logs.Label{{Key: "deployment.environment", Value: "prod"}}}
	want := map[string]string{
		"free_mb": "12", "ratio": "0.5", "ok": "false", "none": "", "big": "1.2345678901234568e+20",
		"ctx": `{"ids":[1,"b"],"path":"/x"}`,
	}
	for _, body := range []parse.Body{parse.BodyMessage, parse.BodyMap} {
		recs := s.convert(&logs.Batch{Meta: meta, Records: []logs.Record{parsedRecord(t, parse.JSON, body, structuredLine)}})
		r := recs[0]
		if r.Severity() != 13 || r.SeverityText() != "warn" {
			t.Errorf("severity %d %q, want 13 warn", r.Severity(), r.SeverityText())
		}
		got := map[string]string{}
		var kinds = map[string]attribute.Type{}
		collect := func(kv attribute.KeyValue) bool {
			got[string(kv.Key)] = kv.Value.Emit()
			kinds[string(kv.Key)] = kv.Value.Type()
			return true
		}
		if body == parse.BodyMap {
			if r.Body().Type() != attribute.MAP {
				t.Fatalf("body is a %v, want a map", r.Body().Type())
			}
			for _, kv := range r.Body().AsMap() {
				collect(kv)
			}
			want["level"], want["msg"] = "warn", `disk "low"`
		} else {
			if r.Body().AsString() != `disk "low"` {
				t.Errorf("body %q", r.Body().AsString())
			}
			r.WalkAttributes(collect)
			want["log.iostream"] = "stdout"
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%v body: %s = %q, want %q (all %v)", body, k, got[k], v, got)
			}
		}
		for k, typ := range map[string]attribute.Type{"free_mb": attribute.INT64, "ratio": attribute.FLOAT64, "ok": attribute.BOOL, "big": attribute.FLOAT64, "ctx": attribute.MAP} {
			if kinds[k] != typ {
				t.Errorf("%s is a %v, want %v", k, kinds[k], typ)
			}
		}
		delete(want, "level")
		delete(want, "msg")
		delete(want, "log.iostream")
		res := map[string]string{}
		for _, kv := range r.Resource().Attributes() {
			res[string(kv.Key)] = kv.Value.Emit()
		}
		for k, v := range map[string]string{"service.namespace": "shop", "container.image.id": "sha256:1", "container.image.repo_digests": `["app@sha256:2"]`,
			"deployment.environment": "prod", "container.runtime.name": "docker", "container.runtime": "docker"} {
			if res[k] != v {
				t.Errorf("resource %s = %q, want %q", k, res[k], v)
			}
		}
		// The size estimate bounds the record with its fields.
		if n := recordSize(&r); n < int64(len(structuredLine)) {
			t.Errorf("recordSize %d is below the line's %d bytes", n, len(structuredLine))
		}
	}
}

// FuzzJSONSinkParsed: a line parsed as JSON (or logfmt), with either body,
// is written by the sink as one line of valid JSON whose body, severity
// text and attributes are the parsed ones (numbers, nested objects and
// arrays copied as written must stay valid JSON).
func FuzzJSONSinkParsed(f *testing.F) {
	for _, s := range []string{structuredLine, `{"msg":"a\nb","level":"\u0041"}`, `{"x":[{"y":-1.5e-3}],"message":"m"}`,
		`level=info msg="q \"x\"" k=v`, "{\"a\":\"\\u2028\",\"msg\":\"\\ud83d\\ude00\"}"} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, line []byte, asMap bool) {
		body := parse.BodyMessage
		if asMap {
			body = parse.BodyMap
		}
		for _, format := range []parse.Format{parse.JSON, parse.Logfmt} {
			r := logs.Record{Body: line, Stream: logs.Stdout}
			_, fields, ok := parse.Fields(format, line, nil, nil)
			if !ok {
				continue
			}
			parse.Structure(&r, fields, body)
			var tf timeFormatter
			out := appendRecord(nil, &r, appendResource(nil, &logs.Meta{ID: "c"}), &tf)
			if bytes.IndexByte(out, '\n') != len(out)-1 {
				t.Fatalf("%q: the record is not one line: %q", line, out)
			}
			var rec struct {
				Body       json.RawMessage `json:"body"`
				Text       *string         `json:"severity_text"`
				Attributes map[string]any  `json:"attributes"`
			}
			if err := json.Unmarshal(out, &rec); err != nil {
				t.Fatalf("%q: the record is not JSON (%v): %s", line, err, out)
			}
			if asMap {
				var m map[string]any
				if err := json.Unmarshal(rec.Body, &m); err != nil {
					t.Fatalf("%q: a map body is not an object (%v): %s", line, err, rec.Body)
				}
				continue
			}
			var b string
			if err := json.Unmarshal(rec.Body, &b); err != nil || b != string(r.Body) {
				t.Fatalf("%q: body %s, want %q (%v)", line, rec.Body, r.Body, err)
			}
			if (rec.Text == nil) != (r.SeverityText == nil) || (rec.Text != nil && *rec.Text != string(r.SeverityText)) {
				t.Fatalf("%q: severity_text %v, want %q", line, rec.Text, r.SeverityText)
			}
			for _, a := range r.Attrs {
				if _, ok := rec.Attributes[string(a.Key)]; !ok {
					t.Fatalf("%q: attribute %q missing from %s", line, a.Key, out)
				}
			}
		}
	})
}

// plainFrame bounds the estimate of a record besides its body: the record's
// frame, log.iostream and log.truncated.
const plainFrame = recordFrame + (attrFrame + len("log.iostream") + len("stdout")) + (attrFrame + len("log.truncated") + 9)

// FuzzParsedRecordSize: the export's estimate of a parsed record is at most
// a plain record's frame plus parse.EncodedBound, the bound the collector
// holds each parsed record to (max_line_bytes): a parsed record fits in an
// export request wherever a line of max_line_bytes does.
func FuzzParsedRecordSize(f *testing.F) {
	for _, s := range []string{structuredLine, `{"a":[1,1,1,1,[],{},[[[[1]]]]],"":{"":{"":null}}}`, `{"a":1,"b":1,"c":1,"d":1}`, `a= b= c=`,
		`{"level":"` + strings.Repeat("x", 100) + `","msg":""}`} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	s := newTestSink(f, &fakeExporter{}, nil, telemetry.NopSettings())
	f.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	meta := &logs.Meta{ID: "c"}
	f.Fuzz(func(t *testing.T, line []byte, asMap bool) {
		body := parse.BodyMessage
		if asMap {
			body = parse.BodyMap
		}
		for _, format := range []parse.Format{parse.JSON, parse.Logfmt} {
			r := logs.Record{Body: line, Stream: logs.Stdout, Truncated: true}
			_, fields, ok := parse.Fields(format, line, nil, nil)
			if !ok {
				continue
			}
			parse.Structure(&r, fields, body)
			recs := s.convert(&logs.Batch{Meta: meta, Records: []logs.Record{r}})
			if est, bound := recordSize(&recs[0]), int64(plainFrame+parse.EncodedBound(&r)); est > bound {
				t.Fatalf("%q: estimated %d bytes, more than the frame and parse.EncodedBound (%d)", line, est, bound)
			}
		}
	})
}
