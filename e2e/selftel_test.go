//go:build e2e

package e2e

// TestSelfTelemetry: berth's own traces and metrics arrive at a real
// OpenTelemetry Collector over OTLP/HTTP, next to the records.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthlog/berth/e2e/internal/otelcolrun"
)

func TestSelfTelemetry(t *testing.T) {
	needDocker(t)
	const n = 50

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	col, err := otelcolrun.Start(ctx, otelcolrun.Options{Dir: testDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := col.Stop(0); err != nil {
			t.Errorf("stopping the collector: %v", err)
		}
		if t.Failed() {
			t.Logf("collector log (%s):\n%s", col.LogPath, tailString(col.Log(), 3000))
		}
	})
	t.Logf("collector pid %d, OTLP/HTTP %s, output %s", col.PID(), col.HTTPEndpoint(), col.OutputPath)

	b := startBerth(t, BerthConfig{Extra: []string{
		"otlp:",
		"  endpoint: " + quote(col.HTTPEndpoint()),
		"metrics_interval: 1s",
	}})
	// Records go to the collector, not stdout: readiness is /readyz (events
	// stream subscribed and reconciled), so a container started afterwards
	// is read from its first line.
	waitFor(t, "berth's /readyz to answer 200", 30*time.Second, func() (bool, string) {
		b.checkAlive(t)
		code, body := b.httpGet("/readyz")
		return code == 200, fmt.Sprintf("%d %s", code, body)
	})

	c := runContainer(t, ContainerSpec{Args: []string{"-n", fmt.Sprint(n), "-stderr-every", "5"}})
	c.waitExited(t, time.Minute)

	// The container's records arrive (the pipeline works), then berth's own
	// spans and metrics: a berth.burst span of the container (its burst
	// ended at EOF when the container exited), a berth.export span, and
	// metric points of go.goroutine.count and berth.records.read that
	// count the container's lines.
	var tel *otlpTelemetry
	var recs int
	waitFor(t, "the container's records and berth's spans and metrics in the collector's output", 60*time.Second, func() (bool, string) {
		b.checkAlive(t)
		select {
		case <-col.Exited():
			t.Fatalf("the collector exited:\n%s", tailString(col.Log(), 3000))
		default:
		}
		all, err := col.Records()
		if err != nil {
			t.Fatalf("reading the collector's records: %v", err)
		}
		recs = 0
		for _, r := range all {
			if r.Resource["container.id"] == c.ID {
				recs++
			}
		}
		tel, err = readOTLPTelemetry(col.OutputPath)
		if err != nil {
			t.Fatalf("reading the collector's spans and metrics: %v", err)
		}
		var missing []string
		if recs < n {
			missing = append(missing, fmt.Sprintf("records %d/%d", recs, n))
		}
		if len(tel.spansNamed("berth.burst", "container.id", c.ID)) == 0 {
			missing = append(missing, "berth.burst span of the container")
		}
		if len(tel.spansNamed("berth.export", "", "")) == 0 {
			missing = append(missing, "berth.export span")
		}
		if len(tel.spansNamed("berth.events.connect", "", "")) == 0 {
			missing = append(missing, "berth.events.connect span")
		}
		if len(tel.pointsNamed("go.goroutine.count")) == 0 {
			missing = append(missing, "go.goroutine.count")
		}
		if readSum(tel.pointsNamed("berth.records.read")) < n {
			missing = append(missing, fmt.Sprintf("berth.records.read >= %d (latest sum %v)", n, readSum(tel.pointsNamed("berth.records.read"))))
		}
		return len(missing) == 0, fmt.Sprintf("missing: %s; seen: %s", strings.Join(missing, ", "), tel.summary())
	})
	t.Logf("%d records of the container; berth's telemetry in the collector: %s", recs, tel.summary())

	for _, s := range tel.spans {
		if s.Resource["service.name"] != "berth" {
			t.Errorf("span %s has resource service.name %v, want berth (resource %v)", s.Name, s.Resource["service.name"], s.Resource)
		}
	}
	for _, p := range tel.points {
		if p.Resource["service.name"] != "berth" {
			t.Errorf("metric %s has resource service.name %v, want berth (resource %v)", p.Name, p.Resource["service.name"], p.Resource)
			break
		}
	}

	burst := tel.spansNamed("berth.burst", "container.id", c.ID)[0]
	t.Logf("berth.burst span of the container: scope %s, %v long, attributes %v", burst.Scope, burst.Duration().Round(time.Millisecond), burst.Attributes)
	if burst.Attributes["container.name"] != c.Name {
		t.Errorf("berth.burst container.name = %v, want %s", burst.Attributes["container.name"], c.Name)
	}
	if burst.TraceID == "" || burst.SpanID == "" {
		t.Errorf("berth.burst span without trace or span id: %+v", burst)
	}
	var lines int64
	for _, s := range tel.spansNamed("berth.burst", "container.id", c.ID) {
		l, _ := s.Attributes["lines"].(int64)
		lines += l
	}
	if lines != n {
		t.Errorf("the container's berth.burst spans count %d lines, want %d", lines, n)
	}
	for _, s := range tel.spansNamed("berth.burst", "", "") {
		switch s.Attributes["end_reason"] {
		case "eof", "idle_deadline", "max_burst", "error", "shutdown":
		default:
			t.Errorf("berth.burst span with end_reason %v, want eof, idle_deadline, max_burst, error or shutdown (attributes %v)", s.Attributes["end_reason"], s.Attributes)
		}
	}
	var exported int64
	for _, s := range tel.spansNamed("berth.export", "", "") {
		if s.Attributes["outcome"] == "ok" {
			r, _ := s.Attributes["records"].(int64)
			exported += r
		}
	}
	exp := tel.spansNamed("berth.export", "", "")[0]
	t.Logf("a berth.export span: %v long, attributes %v; %d records in berth.export spans with outcome ok", exp.Duration().Round(time.Millisecond), exp.Attributes, exported)
	if exported == 0 {
		t.Errorf("no berth.export span with outcome ok and records > 0")
	}
	conn := tel.spansNamed("berth.events.connect", "", "")[0]
	t.Logf("berth.events.connect span: attributes %v", conn.Attributes)

	g := tel.pointsNamed("go.goroutine.count")
	last := g[len(g)-1]
	t.Logf("go.goroutine.count: %d points, kind %s, unit %q, last value %v", len(g), last.Kind, last.Unit, last.Value)
	if last.Value <= 0 {
		t.Errorf("go.goroutine.count = %v, want > 0", last.Value)
	}
	byStream := map[any]float64{}
	for _, p := range latestPoints(tel.pointsNamed("berth.records.read")) {
		byStream[p.Attributes["log.iostream"]] += p.Value
		if p.Kind != "sum" || !p.Monotonic {
			t.Errorf("berth.records.read is a %s (monotonic %v), want a monotonic sum", p.Kind, p.Monotonic)
		}
	}
	t.Logf("berth.records.read by log.iostream: %v (the container wrote %d on stdout, %d on stderr)", byStream, n-n/5, n/5)
	if byStream["stdout"] < n-n/5 || byStream["stderr"] < n/5 {
		t.Errorf("berth.records.read by log.iostream = %v, want at least stdout %d, stderr %d", byStream, n-n/5, n/5)
	}
	b.stop(t)
}

// httpGet GETs a path of berth's HTTP server and returns the status and a
// bounded body ("" and -1 on a transport error).
func (b *Berth) httpGet(path string) (int, string) {
	resp, err := b.http.Get("http://" + b.httpAddr + path)
	if err != nil {
		return -1, err.Error()
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, strings.TrimSpace(buf.String())
}

func tailString(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// otlpTelemetry is the spans and metric points in a collector file
// exporter's output (OTLP/JSON, one document per line).
type otlpTelemetry struct {
	spans  []otlpSpan
	points []otlpPoint
}

type otlpSpan struct {
	Resource   map[string]any
	Scope      string
	Name       string
	TraceID    string
	SpanID     string
	Start, End uint64
	Attributes map[string]any
}

func (s otlpSpan) Duration() time.Duration { return time.Duration(s.End - s.Start) }

// otlpPoint is one data point of a gauge or sum (histograms: Value is the
// count).
type otlpPoint struct {
	Resource   map[string]any
	Scope      string
	Name, Unit string
	Kind       string // gauge, sum, histogram
	Monotonic  bool
	Time       uint64
	Value      float64
	Attributes map[string]any
}

// spansNamed returns the spans called name, with attribute key equal to
// value when key is not empty.
func (o *otlpTelemetry) spansNamed(name, key string, value any) []otlpSpan {
	var out []otlpSpan
	for _, s := range o.spans {
		if s.Name == name && (key == "" || s.Attributes[key] == value) {
			out = append(out, s)
		}
	}
	return out
}

// pointsNamed returns the points of metric name in file order.
func (o *otlpTelemetry) pointsNamed(name string) []otlpPoint {
	var out []otlpPoint
	for _, p := range o.points {
		if p.Name == name {
			out = append(out, p)
		}
	}
	return out
}

// latestPoints keeps the newest point of each attribute set.
func latestPoints(ps []otlpPoint) []otlpPoint {
	latest := map[string]otlpPoint{}
	for _, p := range ps {
		k := fmt.Sprint(p.Attributes)
		if q, ok := latest[k]; !ok || p.Time >= q.Time {
			latest[k] = p
		}
	}
	out := make([]otlpPoint, 0, len(latest))
	for _, p := range latest {
		out = append(out, p)
	}
	return out
}

// readSum is the sum over attribute sets of the newest points.
func readSum(ps []otlpPoint) float64 {
	var s float64
	for _, p := range latestPoints(ps) {
		s += p.Value
	}
	return s
}

func (o *otlpTelemetry) summary() string {
	spans := map[string]int{}
	for _, s := range o.spans {
		spans[s.Name]++
	}
	metrics := map[string]int{}
	for _, p := range o.points {
		metrics[p.Name]++
	}
	names := make([]string, 0, len(metrics))
	for k := range metrics {
		names = append(names, k)
	}
	sort.Strings(names)
	return fmt.Sprintf("spans %v; %d metrics: %s", spans, len(names), strings.Join(names, " "))
}

// readOTLPTelemetry reads the spans and metric points of a file exporter's
// output. A last line without its newline that does not parse is being
// written and is ignored. A missing file holds nothing.
func readOTLPTelemetry(path string) (*otlpTelemetry, error) {
	data, err := os.ReadFile(path)
	out := &otlpTelemetry{}
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	for lineNo := 1; len(data) > 0; lineNo++ {
		line, rest, complete := bytes.Cut(data, []byte("\n"))
		data = rest
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var doc otlpJSONDoc
		if err := json.Unmarshal(line, &doc); err != nil {
			if !complete {
				break
			}
			return nil, fmt.Errorf("line %d: %w", lineNo, err)
		}
		doc.flatten(out)
	}
	return out, nil
}

// OTLP/JSON (protojson: lowerCamelCase, 64-bit integers as strings).
type otlpJSONDoc struct {
	ResourceSpans []struct {
		Resource   otlpJSONResource `json:"resource"`
		ScopeSpans []struct {
			Scope otlpJSONScope `json:"scope"`
			Spans []struct {
				TraceID    string       `json:"traceId"`
				SpanID     string       `json:"spanId"`
				Name       string       `json:"name"`
				Start      otlpJSONUint `json:"startTimeUnixNano"`
				End        otlpJSONUint `json:"endTimeUnixNano"`
				Attributes []otlpJSONKV `json:"attributes"`
			} `json:"spans"`
		} `json:"scopeSpans"`
	} `json:"resourceSpans"`
	ResourceMetrics []struct {
		Resource     otlpJSONResource `json:"resource"`
		ScopeMetrics []struct {
			Scope   otlpJSONScope `json:"scope"`
			Metrics []struct {
				Name  string                                `json:"name"`
				Unit  string                                `json:"unit"`
				Gauge *struct{ DataPoints []otlpJSONPoint } `json:"gauge"`
				Sum   *struct {
					DataPoints  []otlpJSONPoint `json:"dataPoints"`
					IsMonotonic bool            `json:"isMonotonic"`
				} `json:"sum"`
				Histogram *struct{ DataPoints []otlpJSONPoint } `json:"histogram"`
			} `json:"metrics"`
		} `json:"scopeMetrics"`
	} `json:"resourceMetrics"`
}

type otlpJSONResource struct {
	Attributes []otlpJSONKV `json:"attributes"`
}

type otlpJSONScope struct {
	Name string `json:"name"`
}

type otlpJSONKV struct {
	Key   string `json:"key"`
	Value struct {
		StringValue *string         `json:"stringValue"`
		BoolValue   *bool           `json:"boolValue"`
		IntValue    *otlpJSONNumber `json:"intValue"`
		DoubleValue *float64        `json:"doubleValue"`
	} `json:"value"`
}

type otlpJSONPoint struct {
	Attributes []otlpJSONKV    `json:"attributes"`
	Time       otlpJSONUint    `json:"timeUnixNano"`
	AsInt      *otlpJSONNumber `json:"asInt"`
	AsDouble   *float64        `json:"asDouble"`
	Count      *otlpJSONNumber `json:"count"` // histograms
}

// otlpJSONNumber takes a JSON number or a string holding one.
type otlpJSONNumber float64

func (n *otlpJSONNumber) UnmarshalJSON(b []byte) error {
	var num json.Number
	if err := json.Unmarshal(b, &num); err != nil {
		return err
	}
	f, err := num.Float64()
	*n = otlpJSONNumber(f)
	return err
}

// otlpJSONUint takes a JSON number or a string holding one, exactly.
type otlpJSONUint uint64

func (n *otlpJSONUint) UnmarshalJSON(b []byte) error {
	var num json.Number
	if err := json.Unmarshal(b, &num); err != nil {
		return err
	}
	v, err := strconv.ParseUint(num.String(), 10, 64)
	*n = otlpJSONUint(v)
	return err
}

func otlpAttrs(kvs []otlpJSONKV) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		v := kv.Value
		switch {
		case v.StringValue != nil:
			m[kv.Key] = *v.StringValue
		case v.BoolValue != nil:
			m[kv.Key] = *v.BoolValue
		case v.IntValue != nil:
			m[kv.Key] = int64(*v.IntValue)
		case v.DoubleValue != nil:
			m[kv.Key] = *v.DoubleValue
		default:
			m[kv.Key] = nil
		}
	}
	return m
}

func (d *otlpJSONDoc) flatten(out *otlpTelemetry) {
	for _, rs := range d.ResourceSpans {
		res := otlpAttrs(rs.Resource.Attributes)
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				out.spans = append(out.spans, otlpSpan{
					Resource: res, Scope: ss.Scope.Name, Name: s.Name, TraceID: s.TraceID, SpanID: s.SpanID,
					Start: uint64(s.Start), End: uint64(s.End), Attributes: otlpAttrs(s.Attributes),
				})
			}
		}
	}
	for _, rm := range d.ResourceMetrics {
		res := otlpAttrs(rm.Resource.Attributes)
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				add := func(kind string, mono bool, dps []otlpJSONPoint) {
					for _, dp := range dps {
						p := otlpPoint{Resource: res, Scope: sm.Scope.Name, Name: m.Name, Unit: m.Unit, Kind: kind,
							Monotonic: mono, Time: uint64(dp.Time), Attributes: otlpAttrs(dp.Attributes)}
						switch {
						case dp.AsInt != nil:
							p.Value = float64(*dp.AsInt)
						case dp.AsDouble != nil:
							p.Value = *dp.AsDouble
						case dp.Count != nil:
							p.Value = float64(*dp.Count)
						}
						out.points = append(out.points, p)
					}
				}
				switch {
				case m.Gauge != nil:
					add("gauge", false, m.Gauge.DataPoints)
				case m.Sum != nil:
					add("sum", m.Sum.IsMonotonic, m.Sum.DataPoints)
				case m.Histogram != nil:
					add("histogram", false, m.Histogram.DataPoints)
				}
			}
		}
	}
}
