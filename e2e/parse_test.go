//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berthlog/berth/e2e/internal/lines"
	"github.com/berthlog/berth/e2e/internal/otlprecv"
)

// parsedWant is what one line of lines.Structured becomes: its body, its
// severity, and its attributes (log.iostream aside) with their OTLP types.
type parsedWant struct {
	body     string
	number   int
	text     string
	attrs    map[string]any
	unparsed bool
}

var parsedWants = map[string][]parsedWant{
	"json": {
		{"user logged in", 9, "info", map[string]any{"time": "2026-11-30T01:02:03Z", "user": "alice", "attempt": int64(1)}, false},
		{`disk "low"é`, 13, "WARNING", map[string]any{"free_mb": 12.5, "ok": false}, false},
		{"boom", 17, "50", map[string]any{"err": map[string]any{"code": int64(7), "tags": []any{"a", "b"}}}, false},
		{"not JSON {at all", 0, "", map[string]any{}, true},
		{"last", 5, "debug", map[string]any{"n": int64(3)}, false},
	},
	"logfmt": {
		{"user logged in", 9, "info", map[string]any{"user": "alice"}, false},
		{"boom", 17, "error", map[string]any{"code": "7"}, false},
		{"plain text, not logfmt", 0, "", map[string]any{}, true},
		{`a "quoted" word`, 13, "warn", map[string]any{"empty": ""}, false},
	},
}

// TestParse: a container labelled berth.parse=json and one labelled
// berth.parse=logfmt write structured lines with levels, and a line that is
// not in their format. At the OTLP receiver, and in the JSON lines on
// stdout, each structured line has its message as the body, its level as
// SeverityNumber and SeverityText, its other fields as attributes of their
// types; the other line arrives as it is, once, and /status counts it. The
// resource carries the compose project and service, the image ID, the
// runtime name and the static resource_attributes.
func TestParse(t *testing.T) {
	needDocker(t)
	r := startReceiver(t)
	b := startBerthOTLP(t, BerthConfig{Extra: append(otlpYAML(r.GRPCEndpoint(), "grpc"), `stdout: "true"`, "trace_sampling: 0",
		"resource_attributes:", "  deployment.environment: e2e")}, otlpRun{})
	v := recvView(r)
	waitReadyOTLP(t, b, v)
	ctrs := map[string]*Ctr{
		"json": runSel(t, uniqueName(t, "json"), map[string]string{"berth.parse": "json",
			"com.docker.compose.project": "shop", "com.docker.compose.service": "api"}, "-structured", "json"),
		"logfmt": runSel(t, uniqueName(t, "logfmt"), map[string]string{"berth.parse": "logfmt"}, "-structured", "logfmt"),
	}
	for format, c := range ctrs {
		c.waitExited(t, time.Minute)
		n := len(lines.Structured[format])
		waitFor(t, fmt.Sprintf("the %d records of %s at the receiver", n, c.Name), time.Minute, func() (bool, string) {
			v.poll(t)
			b.checkAlive(t)
			return v.count(c.Name) >= n, fmt.Sprintf("%d records", v.count(c.Name))
		})
		b.waitRecords(t, c.Name, n, time.Minute)
	}
	waitQuiet(t, b, r)
	st := b.otlpStatus(t)
	for format, c := range ctrs {
		var unparsed int64 = -1
		for _, s := range st.Containers {
			if s.Name == c.Name {
				unparsed = s.Unparsed
			}
		}
		if unparsed != 1 {
			t.Errorf("%s: /status unparsed_lines %d, want 1", format, unparsed)
		}
	}
	all := r.Records()
	b.stop(t)

	for format, c := range ctrs {
		wants := parsedWants[format]
		// At the receiver, with OTLP types.
		var got []otlprecv.Record
		for _, x := range all {
			if x.Resource["container.name"] == c.Name {
				got = append(got, x)
			}
		}
		if len(got) != len(wants) {
			t.Fatalf("%s: %d records at the receiver, want %d (each line once)", format, len(got), len(wants))
		}
		for i, w := range wants {
			x := got[i]
			attrs := map[string]any{}
			for k, v := range x.Attributes {
				if k != "log.iostream" {
					attrs[k] = v
				}
			}
			if x.Body != w.body || x.BodyKind != "string" || int(x.SeverityNumber) != w.number || x.SeverityText != w.text || !reflect.DeepEqual(attrs, w.attrs) {
				t.Errorf("%s record %d at the receiver: body %q (%s), severity %d %q, attributes %v\nwant body %q, severity %d %q, attributes %v",
					format, i, x.Body, x.BodyKind, x.SeverityNumber, x.SeverityText, attrs, w.body, w.number, w.text, w.attrs)
			}
			if w.unparsed && x.Body != lines.Structured[format][i] {
				t.Errorf("%s: the line that does not parse arrived as %q, want it as written", format, x.Body)
			}
		}
		// On stdout, with JSON types.
		recs := b.out.records(c.Name)
		if len(recs) != len(wants) {
			t.Fatalf("%s: %d records on stdout, want %d", format, len(recs), len(wants))
		}
		for i, w := range wants {
			rec := recs[i]
			attrs := map[string]any{}
			for k, v := range rec.Attributes {
				if k != "log.iostream" {
					attrs[k] = v
				}
			}
			if rec.Body != w.body || rec.SeverityNumber != w.number || rec.SeverityText != w.text || !reflect.DeepEqual(attrs, jsonTyped(t, w.attrs)) {
				t.Errorf("%s record %d on stdout: body %q, severity %d %q, attributes %v\nwant body %q, severity %d %q, attributes %v",
					format, i, rec.Body, rec.SeverityNumber, rec.SeverityText, attrs, w.body, w.number, w.text, w.attrs)
			}
		}
		for _, rec := range recs {
			checkParsedResource(t, format, c, rec)
		}
	}
	checkRecordMeta(t, ctrs["logfmt"], b.out.records(ctrs["logfmt"].Name))
}

// checkParsedResource checks the resource attributes TestParse's
// containers add to the usual ones.
func checkParsedResource(t *testing.T, format string, c *Ctr, rec Record) {
	t.Helper()
	want := map[string]string{"deployment.environment": "e2e", "container.runtime.name": "docker", "container.runtime": "docker",
		"service.name": c.Name, "service.namespace": ""}
	if format == "json" {
		want["service.name"], want["service.namespace"] = "api", "shop"
	}
	for k, v := range want {
		if got := rec.res(k); got != v {
			t.Errorf("%s: resource %s = %q, want %q", format, k, got, v)
		}
	}
	if id := rec.res("container.image.id"); !strings.HasPrefix(id, "sha256:") {
		t.Errorf("%s: container.image.id %q, want the image's sha256:... ID", format, id)
	}
}

// jsonTyped is v as encoding/json gives it back (numbers as float64).
func jsonTyped(t *testing.T, v map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
