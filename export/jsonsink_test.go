package export

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/berthlog/berth/logs"
)

type wireRecord struct {
	Timestamp         string         `json:"timestamp"`
	ObservedTimestamp string         `json:"observed_timestamp"`
	Body              string         `json:"body"`
	Attributes        map[string]any `json:"attributes"`
	Resource          map[string]any `json:"resource"`
}

func TestJSONSinkSchema(t *testing.T) {
	var out bytes.Buffer
	s := NewJSONSink(&out, nil)
	meta := &logs.Meta{ID: "abc", Name: "web-1", ImageName: "registry:5000/app", ImageTags: []string{"1.2"}, ServiceName: "web", HostName: "h1"}
	ts := time.Date(2024, 5, 1, 10, 20, 30, 1000, time.UTC)
	bodies := []string{"plain", "", "quote \" backslash \\ tab \t ctrl \x01 cr \r", "ünïcödé ✓", "\xff\xfe invalid"}
	var recs []logs.Record
	for i, b := range bodies {
		recs = append(recs, logs.Record{Timestamp: ts, Observed: ts.Add(time.Second), Body: []byte(b), Stream: logs.Stream(1 + i%2), Truncated: i == 1, Partial: i == 2})
	}
	if err := s.Consume(context.Background(), &logs.Batch{Meta: meta, Records: recs}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != len(bodies) {
		t.Fatalf("%d lines for %d records", len(lines), len(bodies))
	}
	for i, line := range lines {
		var r wireRecord
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("line %d is not the schema: %v: %s", i, err, line)
		}
		if r.Timestamp != "2024-05-01T10:20:30.000001000Z" || r.ObservedTimestamp != "2024-05-01T10:20:31.000001000Z" {
			t.Fatalf("timestamps %q %q", r.Timestamp, r.ObservedTimestamp)
		}
		body := r.Body
		if r.Attributes["log.body.encoding"] == "base64" {
			raw, err := base64.StdEncoding.DecodeString(body)
			if err != nil {
				t.Fatal(err)
			}
			body = string(raw)
		}
		if body != bodies[i] {
			t.Fatalf("line %d body %q, want %q", i, body, bodies[i])
		}
		if want := []string{"stdout", "stderr"}[i%2]; r.Attributes["log.iostream"] != want {
			t.Fatalf("iostream %v, want %s", r.Attributes["log.iostream"], want)
		}
		if (r.Attributes["log.truncated"] == true) != (i == 1) {
			t.Fatalf("line %d truncated attribute %v", i, r.Attributes["log.truncated"])
		}
		if (r.Attributes["log.partial"] == true) != (i == 2) {
			t.Fatalf("line %d partial attribute %v", i, r.Attributes["log.partial"])
		}
		want := map[string]any{
			"container.id": "abc", "container.name": "web-1", "container.image.name": "registry:5000/app",
			"container.image.tags": []any{"1.2"}, "container.runtime.name": "docker", "container.runtime": "docker", "service.name": "web", "host.name": "h1",
		}
		if got, _ := json.Marshal(r.Resource); string(got) != mustJSON(want) {
			t.Fatalf("resource %s, want %s", got, mustJSON(want))
		}
	}
	if strings.Contains(lines[4], "\\ufffd") {
		t.Fatal("invalid UTF-8 must not be replaced")
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestJSONSinkReportsWriteErrors(t *testing.T) {
	s := NewJSONSink(failWriter{}, nil)
	err := s.Consume(context.Background(), &logs.Batch{Meta: &logs.Meta{}, Records: []logs.Record{{Body: []byte("x"), Stream: logs.Stdout}}})
	if err == nil || !strings.Contains(err.Error(), "broken pipe") {
		t.Fatalf("err = %v", err)
	}
}

func BenchmarkJSONSink(b *testing.B) {
	s := NewJSONSink(discard{}, nil)
	meta := &logs.Meta{ID: strings.Repeat("a", 64), Name: "bench", ImageName: "app", ServiceName: "bench", HostName: "h"}
	recs := make([]logs.Record, 1024)
	for i := range recs {
		recs[i] = logs.Record{Timestamp: time.Now(), Observed: time.Now(), Body: []byte("seq=00000001 " + strings.Repeat("x", 80)), Stream: logs.Stdout}
	}
	batch := &logs.Batch{Meta: meta, Records: recs}
	b.ReportAllocs()
	for range b.N {
		_ = s.Consume(context.Background(), batch)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/line")
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestTimeFormatterMatchesTimeFormat(t *testing.T) {
	var f timeFormatter
	base := time.Date(2024, 12, 31, 23, 59, 58, 999999999, time.UTC)
	for _, d := range []time.Duration{0, 1, time.Second, 2 * time.Second, 25 * time.Hour, -48 * time.Hour, 400 * 24 * time.Hour} {
		ts := base.Add(d)
		for _, in := range []time.Time{ts, ts.In(time.FixedZone("x", 3600))} {
			if got, want := string(f.append(nil, in)), ts.UTC().Format(timeFormat); got != want {
				t.Fatalf("%v: got %s, want %s", in, got, want)
			}
		}
	}
}

// TestJSONSinkLabels: the selected labels follow host.name in the resource,
// as "container.label.<key>", in key order; a Meta without selected labels
// has none, whatever labels its container carries.
func TestJSONSinkLabels(t *testing.T) {
	base := logs.Meta{ID: "abc", Name: "web-1", ImageName: "app", ServiceName: "web", HostName: "h1",
		Labels: map[string]string{"team": "payments", "com.example.tier": "edge", "secret": "s", "q": `a "quoted" \ value`}}
	const head = `"resource":{"container.id":"abc","container.name":"web-1","container.image.name":"app","container.image.tags":[],"container.runtime.name":"docker","container.runtime":"docker","service.name":"web","host.name":"h1"`
	for _, tc := range []struct {
		name     string
		selected []logs.Label
		want     string // the resource's end, after host.name
	}{
		{"none selected", nil, `}}`},
		{"one", []logs.Label{{Key: "team", Value: "payments"}}, `,"container.label.team":"payments"}}`},
		{"several, escaped", []logs.Label{{Key: "com.example.tier", Value: "edge"}, {Key: "q", Value: `a "quoted" \ value`}, {Key: "team", Value: ""}},
			`,"container.label.com.example.tier":"edge","container.label.q":"a \"quoted\" \\ value","container.label.team":""}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			meta := base
			meta.SelectedLabels = tc.selected
			var out bytes.Buffer
			s := NewJSONSink(&out, nil)
			recs := []logs.Record{{Body: []byte("one"), Stream: logs.Stdout}, {Body: []byte("two"), Stream: logs.Stderr}}
			if err := s.Consume(context.Background(), &logs.Batch{Meta: &meta, Records: recs}); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if len(lines) != 2 {
				t.Fatalf("%d lines for 2 records", len(lines))
			}
			for i, line := range lines {
				_, res, ok := strings.Cut(line, `,"resource":`)
				if !ok || `"resource":`+res != head+tc.want {
					t.Errorf("line %d: %s\nwant the resource %s", i, line, head+tc.want)
				}
				var r wireRecord
				if err := json.Unmarshal([]byte(line), &r); err != nil {
					t.Fatalf("line %d is not JSON: %v: %s", i, err, line)
				}
				n := 0
				for k := range r.Resource {
					if strings.HasPrefix(k, "container.label.") {
						n++
					}
				}
				if n != len(tc.selected) {
					t.Errorf("line %d has %d label attributes, want %d", i, n, len(tc.selected))
				}
				for _, l := range tc.selected {
					if r.Resource["container.label."+l.Key] != l.Value {
						t.Errorf("line %d: container.label.%s = %v, want %q", i, l.Key, r.Resource["container.label."+l.Key], l.Value)
					}
				}
			}
		})
	}
}

// TestJSONSinkLabelsCostNothingPerRecord: the labels are encoded once per
// Meta; writing a batch then allocates nothing.
func TestJSONSinkLabelsCostNothingPerRecord(t *testing.T) {
	s := NewJSONSink(discard{}, nil)
	meta := &logs.Meta{ID: "abc", Name: "web", SelectedLabels: []logs.Label{{Key: "team", Value: "payments"}, {Key: "tier", Value: "edge"}}}
	recs := make([]logs.Record, 64)
	for i := range recs {
		recs[i] = logs.Record{Timestamp: time.Unix(1, 0), Observed: time.Unix(2, 0), Body: []byte("a line"), Stream: logs.Stdout}
	}
	batch := &logs.Batch{Meta: meta, Records: recs}
	if allocs := testing.AllocsPerRun(20, func() { _ = s.Consume(context.Background(), batch) }); allocs != 0 {
		t.Errorf("Consume of a labelled batch allocates %v times, want 0", allocs)
	}
}
