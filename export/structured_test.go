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
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/protobuf/proto"
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
		rec := parsedRecord(t, parse.JSON, body, structuredLine)
		r := encodeOne(t, s, &logs.Batch{Meta: meta, Records: []logs.Record{rec}})
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
		// The encoded record holds every field.
		if n := len(appendOTLPRecord(nil, &rec)); n < len(structuredLine)-40 {
			t.Errorf("the encoded record is %d bytes, too few for the line's %d", n, len(structuredLine))
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

// plainFrame is the encoded size of a record besides its body and fields:
// its timestamps, log.iostream, log.truncated and log.partial, and room for
// its length's and its body's length's varints to grow to five bytes.
var plainFrame = len(appendOTLPRecord(nil, &logs.Record{Timestamp: time.Unix(1714558830, 5), Observed: time.Unix(1714558831, 0),
	Stream: logs.Stdout, Truncated: true, Partial: true})) + 8

// FuzzParsedRecordSize: a parsed record's encoded size is at most a plain
// record's frame plus parse.EncodedBound, the bound the collector holds each
// parsed record to (max_line_bytes): a parsed record fits in an export
// request wherever a line of max_line_bytes does. It also decodes, with the
// OTLP proto types, to its fields.
func FuzzParsedRecordSize(f *testing.F) {
	for _, s := range []string{structuredLine, `{"a":[1,1,1,1,[],{},[[[[1]]]]],"":{"":{"":null}}}`, `{"a":1,"b":1,"c":1,"d":1}`, `a= b= c=`,
		`{"level":"` + strings.Repeat("x", 100) + `","msg":""}`} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, line []byte, asMap bool) {
		body := parse.BodyMessage
		if asMap {
			body = parse.BodyMap
		}
		for _, format := range []parse.Format{parse.JSON, parse.Logfmt} {
			r := logs.Record{Timestamp: time.Unix(1714558830, 5), Observed: time.Unix(1714558831, 0), Body: line, Stream: logs.Stdout, Truncated: true, Partial: true}
			_, fields, ok := parse.Fields(format, line, nil, nil)
			if !ok {
				continue
			}
			parse.Structure(&r, fields, body)
			enc := appendOTLPRecord(nil, &r)
			if n, bound := len(enc), plainFrame+parse.EncodedBound(&r); n > bound {
				t.Fatalf("%q: encoded %d bytes, more than the frame and parse.EncodedBound (%d)", line, n, bound)
			}
			var sl logspb.ScopeLogs
			if err := proto.Unmarshal(enc, &sl); err != nil || len(sl.GetLogRecords()) != 1 {
				t.Fatalf("%q: the record does not decode as one log record (%v)", line, err)
			}
			got := sl.GetLogRecords()[0]
			if int32(got.GetSeverityNumber()) != int32(r.Severity) || got.GetSeverityText() != string(r.SeverityText) {
				t.Fatalf("%q: severity %d %q, want %d %q", line, got.GetSeverityNumber(), got.GetSeverityText(), r.Severity, r.SeverityText)
			}
			if !asMap && len(got.GetAttributes()) != 3+len(r.Attrs) {
				t.Fatalf("%q: %d attributes, want %d", line, len(got.GetAttributes()), 3+len(r.Attrs))
			}
		}
	})
}

// encodeOne encodes b as the sink does, alone in a request, and decodes its
// one record with the OTLP proto types.
func encodeOne(t *testing.T, s *OTLPSink, b *logs.Batch) exportedRecord {
	t.Helper()
	it := s.encode(b, 0)
	recs, err := decodeRecords(s.encodeRequest([]segment{{it, 0, it.records()}}))
	if err != nil || len(recs) != 1 {
		t.Fatalf("decoding the request: %d records, %v", len(recs), err)
	}
	return recs[0]
}
