package export

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
	"go.opentelemetry.io/otel/attribute"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
)

// captureKey carries the slice a capture processor appends to.
type captureKey struct{}

// captureProcessor hands the SDK's finished record (resource and scope set
// by its provider) back to the Consume that emitted it.
type captureProcessor struct{}

var _ sdklog.Processor = captureProcessor{}

func (captureProcessor) OnEmit(ctx context.Context, r *sdklog.Record) error {
	if dst, ok := ctx.Value(captureKey{}).(*[]sdklog.Record); ok {
		*dst = append(*dst, r.Clone())
	}
	return nil
}
func (captureProcessor) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }
func (captureProcessor) Shutdown(context.Context) error                         { return nil }
func (captureProcessor) ForceFlush(context.Context) error                       { return nil }

// maxProviders bounds the per-container provider cache.
const maxProviders = 4096

// logger returns the logger whose resource describes the container.
func (s *OTLPSink) logger(m *logs.Meta) otellog.Logger {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.providers[m]; ok {
		return l
	}
	if len(s.providers) >= maxProviders {
		clear(s.providers)
	}
	lp := sdklog.NewLoggerProvider(
		sdklog.WithResource(containerResource(m)),
		sdklog.WithProcessor(captureProcessor{}),
	)
	l := lp.Logger(telemetry.ScopeName, otellog.WithInstrumentationVersion(s.version))
	s.providers[m] = l
	return l
}

// containerResource is the resource of a container's records, in
// OpenTelemetry semantic conventions, with each selected label as
// container.label.<key>. It is built once per Meta (see logger), never per
// record.
func containerResource(m *logs.Meta) *resource.Resource {
	attrs := make([]attribute.KeyValue, 0, 11+len(m.Static)+len(m.SelectedLabels))
	attrs = append(attrs,
		attribute.String("container.id", m.ID),
		attribute.String("container.name", m.Name),
		attribute.String("container.image.name", m.ImageName),
		attribute.String("container.runtime.name", runtimeName),
		attribute.String("container.runtime", runtimeName), // deprecated; see runtimeName
		attribute.String("service.name", m.ServiceName),
		attribute.String("host.name", m.HostName),
	)
	if len(m.ImageTags) > 0 {
		attrs = append(attrs, attribute.StringSlice("container.image.tags", m.ImageTags))
	}
	if m.ImageID != "" {
		attrs = append(attrs, attribute.String("container.image.id", m.ImageID))
	}
	if len(m.ImageRepoDigests) > 0 {
		attrs = append(attrs, attribute.StringSlice("container.image.repo_digests", m.ImageRepoDigests))
	}
	if m.ServiceNamespace != "" {
		attrs = append(attrs, attribute.String("service.namespace", m.ServiceNamespace))
	}
	for _, l := range m.Static {
		attrs = append(attrs, attribute.String(l.Key, l.Value))
	}
	for _, l := range m.SelectedLabels {
		attrs = append(attrs, attribute.String(labelAttributePrefix+l.Key, l.Value))
	}
	return resource.NewSchemaless(attrs...)
}

// runtimeName is the container.runtime.name of every record (semantic
// conventions 1.37 and later). The deprecated container.runtime it replaces
// is sent too, with the same value, for one release, so that queries on it
// keep working while they move; the release after drops it.
const runtimeName = "docker"

// labelAttributePrefix starts the resource attribute of each selected
// container label: container.label.<key>.
const labelAttributePrefix = "container.label."

var (
	attrStdout    = attribute.String("log.iostream", "stdout")
	attrStderr    = attribute.String("log.iostream", "stderr")
	attrTruncated = attribute.Bool("log.truncated", true)
)

// convert turns a batch into SDK records. A body that is valid UTF-8 is a
// string; any other is sent as bytes, exactly.
func (s *OTLPSink) convert(b *logs.Batch) []sdklog.Record {
	out := make([]sdklog.Record, 0, len(b.Records))
	ctx := context.WithValue(context.Background(), captureKey{}, &out)
	l := s.logger(b.Meta)
	for i := range b.Records {
		r := &b.Records[i]
		var lr otellog.Record
		lr.SetTimestamp(r.Timestamp)
		lr.SetObservedTimestamp(r.Observed)
		switch {
		case r.BodyMap:
			lr.SetBody(attribute.MapValue(fieldValues(r.Attrs)...))
		case utf8.Valid(r.Body):
			lr.SetBody(attribute.StringValue(string(r.Body)))
		default:
			lr.SetBody(attribute.ByteSliceValue(append([]byte(nil), r.Body...)))
		}
		if r.Severity != 0 || r.SeverityText != nil {
			lr.SetSeverity(otellog.Severity(r.Severity))
			lr.SetSeverityText(string(r.SeverityText))
		}
		if r.Stream == logs.Stderr {
			lr.AddAttributes(attrStderr)
		} else {
			lr.AddAttributes(attrStdout)
		}
		if r.Truncated {
			lr.AddAttributes(attrTruncated)
		}
		if !r.BodyMap && len(r.Attrs) > 0 {
			lr.AddAttributes(fieldValues(r.Attrs)...)
		}
		l.Emit(ctx, lr)
	}
	return out
}

// fieldValues converts a parsed line's fields (logs.Attr) to attributes,
// each of its JSON type: an integer that does not fit in 64 bits is a
// double, a nested object a map, an array a slice, null an empty value.
func fieldValues(attrs []logs.Attr) []attribute.KeyValue {
	out := make([]attribute.KeyValue, len(attrs))
	for i := range attrs {
		out[i] = attribute.KeyValue{Key: attribute.Key(attrs[i].Key), Value: fieldValue(&attrs[i])}
	}
	return out
}

func fieldValue(a *logs.Attr) attribute.Value {
	switch a.Kind {
	case logs.KindString:
		return attribute.StringValue(string(a.Value))
	case logs.KindInt:
		if n, err := strconv.ParseInt(string(a.Value), 10, 64); err == nil {
			return attribute.Int64Value(n)
		}
		fallthrough
	case logs.KindDouble:
		f, _ := strconv.ParseFloat(string(a.Value), 64) // valid JSON: out of range is ±Inf
		return attribute.Float64Value(f)
	case logs.KindBool:
		return attribute.BoolValue(string(a.Value) == "true")
	case logs.KindJSON:
		d := json.NewDecoder(bytes.NewReader(a.Value))
		d.UseNumber()
		var v any
		if d.Decode(&v) == nil {
			return jsonValue(v)
		}
		return attribute.StringValue(string(a.Value))
	}
	return attribute.Value{} // null
}

// jsonValue converts a value encoding/json decoded (with UseNumber).
func jsonValue(v any) attribute.Value {
	switch v := v.(type) {
	case string:
		return attribute.StringValue(v)
	case bool:
		return attribute.BoolValue(v)
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return attribute.Int64Value(n)
		}
		f, _ := v.Float64()
		return attribute.Float64Value(f)
	case []any:
		vals := make([]attribute.Value, len(v))
		for i, e := range v {
			vals[i] = jsonValue(e)
		}
		return attribute.SliceValue(vals...)
	case map[string]any:
		kvs := make([]attribute.KeyValue, 0, len(v))
		for _, k := range slices.Sorted(maps.Keys(v)) {
			kvs = append(kvs, attribute.KeyValue{Key: attribute.Key(k), Value: jsonValue(v[k])})
		}
		return attribute.MapValue(kvs...)
	}
	return attribute.Value{}
}
