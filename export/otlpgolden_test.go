package export

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/parse"
	"github.com/berthlog/berth/telemetry"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/otlp_golden.json from the current encoder")

// goldenCases are batches of every shape berth makes, exported together as
// one request each.
func goldenCases() []struct {
	name    string
	batches []*logs.Batch
} {
	labelled := &logs.Meta{ID: strings.Repeat("a", 64), Name: "web-1", ImageName: "registry.example.com/team/app", ImageTags: []string{"1.0", "latest"},
		ServiceName: "web", HostName: "host-1", SelectedLabels: []logs.Label{{Key: "team", Value: "payments"}, {Key: "com.example.tier", Value: strings.Repeat("e", 300)}, {Key: "a", Value: ""}}}
	plain := &logs.Meta{ID: strings.Repeat("b", 64), Name: "db"}
	long := strings.Repeat("x", 20000)
	mixed := batchOf(labelled, 1, "a\xff", long, "", "héllo ✓", "\x00ctl")
	mixed.Records[0].Stream = logs.Stderr
	mixed.Records[1].Truncated = true
	mixed.Records[2].Stream = logs.Stderr
	mixed.Records[2].Truncated = true
	full := &logs.Meta{ID: strings.Repeat("c", 64), Name: "api", ImageName: "app", ImageTags: []string{"latest"}, ImageID: "sha256:" + strings.Repeat("d", 64),
		ImageRepoDigests: []string{"app@sha256:" + strings.Repeat("e", 64), "mirror/app@sha256:" + strings.Repeat("f", 64)}, ServiceName: "api",
		ServiceNamespace: "shop", HostName: "h", Static: []logs.Label{{Key: "deployment.environment", Value: "prod"}, {Key: "team", Value: "payments"}},
		SelectedLabels: []logs.Label{{Key: "tier", Value: "web"}}}
	parsed := &logs.Batch{Meta: full}
	structure := func(f parse.Format, body parse.Body, line string) logs.Record {
		r := logs.Record{Observed: time.Unix(1714558831, 0), Body: []byte(line)}
		_, fields, ok := parse.Fields(f, r.Body, nil, nil)
		if !ok {
			panic("golden case does not parse: " + line)
		}
		parse.Structure(&r, fields, body)
		return r
	}
	for _, line := range []string{structuredLine, `{"a":1,"b":-2,"c":3.25,"d":true,"e":null,"f":"x","level":"info"}`,
		`{"nested":[[[[1]]],{"k":{"k":{"k":"v"}}},"s",2.5,-7,false,null],"msg":"m","big":-123456789012345678901,"e":1e400}`,
		`{"severity":"WARNING","message":"w\u00e9","x":"\ud83d\ude00"}`, `{"level":50,"msg":"n"}`, `{"lvl":"bogus","msg":"b"}`, `{"msg":"no level"}`} {
		for _, body := range []parse.Body{parse.BodyMessage, parse.BodyMap} {
			parsed.Records = append(parsed.Records, structure(parse.JSON, body, line))
		}
	}
	for _, line := range []string{`k=v l= m="a \"q\" b" level=error`, `lvl=debug msg=hi n=3`} {
		for _, body := range []parse.Body{parse.BodyMessage, parse.BodyMap} {
			parsed.Records = append(parsed.Records, structure(parse.Logfmt, body, line))
		}
	}
	for i := range parsed.Records {
		parsed.Records[i].Timestamp = time.Unix(1714558830, int64(i))
		parsed.Records[i].Stream = logs.Stream(i % 2)
	}
	return []struct {
		name    string
		batches []*logs.Batch
	}{
		{"one tiny record", []*logs.Batch{batchOf(plain, 1, "a")}},
		{"empty bodies", []*logs.Batch{batchOf(plain, 1, "", "", "")}},
		{"invalid UTF-8, truncated, stderr", []*logs.Batch{mixed}},
		{"two containers", []*logs.Batch{batchOf(labelled, 1, "a", "b"), batchOf(plain, 2, "c"), batchOf(labelled, 3, "d")}},
		{"lengths at varint steps", []*logs.Batch{batchOf(labelled, 1, long[:127], long[:128], long[:16383], long[:16384])}},
		{"parsed lines, a full resource", []*logs.Batch{parsed}},
	}
}

// canonicalRequest merges the resource logs of equal resources (keeping the
// records' order) and sorts them by resource, so that requests that group
// the same records differently compare equal.
func canonicalRequest(t testing.TB, body []byte) *collogspb.ExportLogsServiceRequest {
	t.Helper()
	var req collogspb.ExportLogsServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		t.Fatalf("decode the request: %v", err)
	}
	var out []*logspb.ResourceLogs
	for _, rl := range req.GetResourceLogs() {
		i := slices.IndexFunc(out, func(o *logspb.ResourceLogs) bool {
			return proto.Equal(o.GetResource(), rl.GetResource()) && o.GetSchemaUrl() == rl.GetSchemaUrl()
		})
		if i < 0 {
			out = append(out, &logspb.ResourceLogs{Resource: rl.GetResource(), SchemaUrl: rl.GetSchemaUrl()})
			i = len(out) - 1
		}
		for _, sl := range rl.GetScopeLogs() {
			j := slices.IndexFunc(out[i].ScopeLogs, func(o *logspb.ScopeLogs) bool {
				return proto.Equal(o.GetScope(), sl.GetScope()) && o.GetSchemaUrl() == sl.GetSchemaUrl()
			})
			if j < 0 {
				out[i].ScopeLogs = append(out[i].ScopeLogs, &logspb.ScopeLogs{Scope: sl.GetScope(), SchemaUrl: sl.GetSchemaUrl()})
				j = len(out[i].ScopeLogs) - 1
			}
			out[i].ScopeLogs[j].LogRecords = append(out[i].ScopeLogs[j].LogRecords, sl.GetLogRecords()...)
		}
	}
	key := func(rl *logspb.ResourceLogs) string {
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(rl.GetResource())
		return string(b)
	}
	slices.SortFunc(out, func(a, b *logspb.ResourceLogs) int { return cmp.Compare(key(a), key(b)) })
	return &collogspb.ExportLogsServiceRequest{ResourceLogs: out}
}

// compareGolden checks each case's request (encode returns its body) against
// testdata/otlp_golden.json, or rewrites the file with -update-golden.
func compareGolden(t *testing.T, encode func(t *testing.T, batches []*logs.Batch) []byte) {
	const path = "testdata/otlp_golden.json"
	golden := map[string]json.RawMessage{}
	if !*updateGolden {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &golden); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			got := canonicalRequest(t, encode(t, tc.batches))
			if *updateGolden {
				js, err := protojson.MarshalOptions{Multiline: true}.Marshal(got)
				if err != nil {
					t.Fatal(err)
				}
				golden[tc.name] = js
				return
			}
			var want collogspb.ExportLogsServiceRequest
			if err := protojson.Unmarshal(golden[tc.name], &want); err != nil {
				t.Fatalf("golden %q: %v", tc.name, err)
			}
			if !proto.Equal(got, &want) {
				js, _ := protojson.MarshalOptions{Multiline: true}.Marshal(got)
				t.Fatalf("request differs from the golden one\ngot:  %s\nwant: %s", js, golden[tc.name])
			}
		})
	}
	if *updateGolden {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		if err := enc.Encode(golden); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEncodingMatchesGolden: the requests berth encodes decode, with the OTLP
// proto types, to the same resources, scope and records as the golden ones,
// which the OpenTelemetry SDK's exporter encoded from the same records.
func TestEncodingMatchesGolden(t *testing.T) {
	compareGolden(t, func(t *testing.T, batches []*logs.Batch) []byte {
		exp := &fakeExporter{}
		s := newTestSink(t, exp, nil, telemetry.NopSettings())
		var req []segment
		for _, b := range batches {
			it := s.encode(b, 0)
			req = append(req, segment{it, 0, it.records()})
		}
		if err := s.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		return s.encodeRequest(req) // the exporter goroutine has ended
	})
}

// TestEncodingMarksPartial: a record sent before its line ended carries
// log.partial=true (with log.truncated beside it when both hold); others
// carry neither.
func TestEncodingMarksPartial(t *testing.T) {
	m := &logs.Meta{ID: strings.Repeat("c", 64), Name: "bar"}
	b := batchOf(m, 1, "progress 10%", "done", "cut")
	b.Records[0].Partial = true
	b.Records[2].Partial, b.Records[2].Truncated = true, true
	exp := &fakeExporter{}
	s := newTestSink(t, exp, nil, telemetry.NopSettings())
	it := s.encode(b, 0)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	req := canonicalRequest(t, s.encodeRequest([]segment{{it, 0, it.records()}}))
	recs := req.GetResourceLogs()[0].GetScopeLogs()[0].GetLogRecords()
	if len(recs) != 3 {
		t.Fatalf("decoded %d records, want 3", len(recs))
	}
	want := []map[string]bool{{"log.partial": true}, {}, {"log.partial": true, "log.truncated": true}}
	for i, r := range recs {
		got := map[string]bool{}
		for _, kv := range r.GetAttributes() {
			if kv.GetKey() == "log.partial" || kv.GetKey() == "log.truncated" {
				got[kv.GetKey()] = kv.GetValue().GetBoolValue()
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want[i]) {
			t.Errorf("record %d (%q): attributes %v, want %v", i, r.GetBody().GetStringValue(), got, want[i])
		}
	}
}
