package export

import (
	"fmt"
	"testing"

	"time"

	"github.com/berthlog/berth/logs"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"
)

// exportedRecord is a record of an encoded request, decoded with the OTLP
// proto types, with its resource and scope.
type exportedRecord struct {
	rec   *logspb.LogRecord
	res   *resourcepb.Resource
	scope *commonpb.InstrumentationScope
}

// decodeRecords decodes an ExportLogsServiceRequest's records; it fails if
// body is not one, or not as long as the message it holds says.
func decodeRecords(body []byte) ([]exportedRecord, error) {
	var req collogspb.ExportLogsServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("decode the request: %w", err)
	}
	if n := proto.Size(&req); n != len(body) {
		return nil, fmt.Errorf("a request of %d bytes decodes to a message of %d", len(body), n)
	}
	var out []exportedRecord
	for _, rl := range req.GetResourceLogs() {
		for _, sl := range rl.GetScopeLogs() {
			for _, r := range sl.GetLogRecords() {
				out = append(out, exportedRecord{rec: r, res: rl.GetResource(), scope: sl.GetScope()})
			}
		}
	}
	return out, nil
}

func anyValue2attr(v *commonpb.AnyValue) attribute.Value {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return attribute.StringValue(x.StringValue)
	case *commonpb.AnyValue_BytesValue:
		return attribute.ByteSliceValue(x.BytesValue)
	case *commonpb.AnyValue_BoolValue:
		return attribute.BoolValue(x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		return attribute.Int64Value(x.IntValue)
	case *commonpb.AnyValue_DoubleValue:
		return attribute.Float64Value(x.DoubleValue)
	case *commonpb.AnyValue_ArrayValue:
		var ss []string
		vals := make([]attribute.Value, 0, len(x.ArrayValue.GetValues()))
		strs := true
		for _, e := range x.ArrayValue.GetValues() {
			_, isStr := e.GetValue().(*commonpb.AnyValue_StringValue)
			strs = strs && isStr
			ss = append(ss, e.GetStringValue())
			vals = append(vals, anyValue2attr(e))
		}
		if strs {
			return attribute.StringSliceValue(ss)
		}
		return attribute.SliceValue(vals...)
	case *commonpb.AnyValue_KvlistValue:
		return attribute.MapValue(kvs2attrs(x.KvlistValue.GetValues())...)
	}
	return attribute.Value{}
}

// Severity and SeverityText are the record's severity_number and
// severity_text.
func (r exportedRecord) Severity() int32      { return int32(r.rec.GetSeverityNumber()) }
func (r exportedRecord) SeverityText() string { return r.rec.GetSeverityText() }

func kvs2attrs(kvs []*commonpb.KeyValue) []attribute.KeyValue {
	out := make([]attribute.KeyValue, 0, len(kvs))
	for _, kv := range kvs {
		out = append(out, attribute.KeyValue{Key: attribute.Key(kv.GetKey()), Value: anyValue2attr(kv.GetValue())})
	}
	return out
}

func (r exportedRecord) Body() attribute.Value { return anyValue2attr(r.rec.GetBody()) }
func (r exportedRecord) Timestamp() time.Time  { return time.Unix(0, int64(r.rec.GetTimeUnixNano())) }
func (r exportedRecord) ObservedTimestamp() time.Time {
	return time.Unix(0, int64(r.rec.GetObservedTimeUnixNano()))
}
func (r exportedRecord) Clone() exportedRecord { return r }

func (r exportedRecord) WalkAttributes(f func(attribute.KeyValue) bool) {
	for _, kv := range kvs2attrs(r.rec.GetAttributes()) {
		if !f(kv) {
			return
		}
	}
}

func (r exportedRecord) InstrumentationScope() instrumentation.Scope {
	return instrumentation.Scope{Name: r.scope.GetName(), Version: r.scope.GetVersion()}
}

func (r exportedRecord) Resource() *resource.Resource {
	return resource.NewSchemaless(kvs2attrs(r.res.GetAttributes())...)
}

// bodyLen is the length of a body as berth sets it: a string, or bytes.
func bodyLen(v attribute.Value) int {
	if v.Type() == attribute.BYTESLICE {
		return len(v.AsByteSlice())
	}
	return len(v.AsString())
}

// decodedResource is the resource berth encodes for m, decoded.
func decodedResource(t testing.TB, m *logs.Meta) *resource.Resource {
	t.Helper()
	var rl logspb.ResourceLogs
	if err := proto.Unmarshal(encodeResource(m), &rl); err != nil {
		t.Fatal(err)
	}
	return exportedRecord{res: rl.GetResource()}.Resource()
}
