package export

import (
	"cmp"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
	"google.golang.org/protobuf/encoding/protowire"
)

// berth encodes the OTLP protobuf form of its records itself, from
// logs.Record, with protowire: each record once, when Consume queues it, into
// its batch's buffer; each container's resource once per logs.Meta; the
// scope once per sink. A request is then those bytes put together with a
// few tags and lengths (see requestEncoder), so its size is known exactly
// before it is built, and nothing is converted or copied per record on the
// way out.
//
// The field numbers are those of opentelemetry/proto/collector/logs/v1 and
// opentelemetry/proto/logs/v1 (TestEncodingMatchesGolden decodes the bytes
// with the generated types).
const (
	fieldRequestResourceLogs = 1 // ExportLogsServiceRequest.resource_logs
	fieldResourceLogsRes     = 1 // ResourceLogs.resource
	fieldResourceLogsScope   = 2 // ResourceLogs.scope_logs
	fieldScopeLogsScope      = 1 // ScopeLogs.scope
	fieldScopeLogsRecords    = 2 // ScopeLogs.log_records
	fieldScopeName           = 1 // InstrumentationScope.name
	fieldScopeVersion        = 2 // InstrumentationScope.version
	fieldResourceAttrs       = 1 // Resource.attributes
	fieldRecordTime          = 1 // LogRecord.time_unix_nano (fixed64)
	fieldRecordBody          = 5 // LogRecord.body
	fieldRecordAttrs         = 6 // LogRecord.attributes
	fieldRecordObserved      = 11
	fieldKeyValueKey         = 1 // KeyValue.key
	fieldKeyValueValue       = 2 // KeyValue.value
	fieldAnyString           = 1 // AnyValue.string_value
	fieldAnyBool             = 2 // AnyValue.bool_value
	fieldAnyArray            = 5 // AnyValue.array_value
	fieldAnyBytes            = 7 // AnyValue.bytes_value
	fieldArrayValues         = 1 // ArrayValue.values
	fieldPartialSuccess      = 1 // ExportLogsServiceResponse.partial_success
	fieldPartialRejected     = 1 // ExportLogsPartialSuccess.rejected_log_records
	fieldPartialMessage      = 2 // ExportLogsPartialSuccess.error_message
)

// runtimeName is the container.runtime.name of every record (semantic
// conventions 1.37 and later). The deprecated container.runtime it replaces
// is sent too, with the same value, for one release, so that queries on it
// keep working while they move; the release after drops it.
const runtimeName = "docker"

// labelAttributePrefix starts the resource attribute of each selected
// container label: container.label.<key>.
const labelAttributePrefix = "container.label."

// The attributes berth sets on a record, encoded once as LogRecord fields.
var (
	attrStdout    = appendKeyValueField(nil, fieldRecordAttrs, "log.iostream", stringValue("stdout"))
	attrStderr    = appendKeyValueField(nil, fieldRecordAttrs, "log.iostream", stringValue("stderr"))
	attrTruncated = appendKeyValueField(nil, fieldRecordAttrs, "log.truncated", boolValue(true))
	attrPartial   = appendKeyValueField(nil, fieldRecordAttrs, "log.partial", boolValue(true))
)

// anyValue is an AnyValue's encoded content.
type anyValue []byte

func stringValue(s string) anyValue {
	return protowire.AppendString(protowire.AppendTag(nil, fieldAnyString, protowire.BytesType), s)
}

func boolValue(b bool) anyValue {
	return protowire.AppendVarint(protowire.AppendTag(nil, fieldAnyBool, protowire.VarintType), protowire.EncodeBool(b))
}

func stringArrayValue(ss []string) anyValue {
	var arr []byte
	for _, s := range ss {
		arr = protowire.AppendTag(arr, fieldArrayValues, protowire.BytesType)
		arr = protowire.AppendBytes(arr, stringValue(s))
	}
	return protowire.AppendBytes(protowire.AppendTag(nil, fieldAnyArray, protowire.BytesType), arr)
}

// appendKeyValueField appends a KeyValue as field num of its parent.
func appendKeyValueField(b []byte, num protowire.Number, key string, v anyValue) []byte {
	kv := protowire.AppendString(protowire.AppendTag(nil, fieldKeyValueKey, protowire.BytesType), key)
	kv = protowire.AppendBytes(protowire.AppendTag(kv, fieldKeyValueValue, protowire.BytesType), v)
	return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), kv)
}

// encodeResource is the ResourceLogs.resource field of a container's
// records: in OpenTelemetry semantic conventions, each selected label as
// container.label.<key>, sorted by key (a later duplicate key wins), as
// OpenTelemetry attribute sets are.
func encodeResource(m *logs.Meta) []byte {
	type kv struct {
		key string
		v   anyValue
	}
	attrs := make([]kv, 0, 11+len(m.Static)+len(m.SelectedLabels))
	attrs = append(attrs,
		kv{"container.id", stringValue(m.ID)},
		kv{"container.name", stringValue(m.Name)},
		kv{"container.image.name", stringValue(m.ImageName)},
		kv{"container.runtime.name", stringValue(runtimeName)},
		kv{"container.runtime", stringValue(runtimeName)}, // deprecated; see runtimeName
		kv{"service.name", stringValue(m.ServiceName)},
		kv{"host.name", stringValue(m.HostName)},
	)
	if len(m.ImageTags) > 0 {
		attrs = append(attrs, kv{"container.image.tags", stringArrayValue(m.ImageTags)})
	}
	if m.ImageID != "" {
		attrs = append(attrs, kv{"container.image.id", stringValue(m.ImageID)})
	}
	if len(m.ImageRepoDigests) > 0 {
		attrs = append(attrs, kv{"container.image.repo_digests", stringArrayValue(m.ImageRepoDigests)})
	}
	if m.ServiceNamespace != "" {
		attrs = append(attrs, kv{"service.namespace", stringValue(m.ServiceNamespace)})
	}
	for _, l := range m.Static {
		attrs = append(attrs, kv{l.Key, stringValue(l.Value)})
	}
	for _, l := range m.SelectedLabels {
		attrs = append(attrs, kv{labelAttributePrefix + l.Key, stringValue(l.Value)})
	}
	slices.SortStableFunc(attrs, func(a, b kv) int { return cmp.Compare(a.key, b.key) })
	var res []byte
	for i, a := range attrs {
		if i+1 < len(attrs) && attrs[i+1].key == a.key {
			continue // the last of equal keys wins
		}
		res = appendKeyValueField(res, fieldResourceAttrs, a.key, a.v)
	}
	return protowire.AppendBytes(protowire.AppendTag(nil, fieldResourceLogsRes, protowire.BytesType), res)
}

// encodeScope is the ScopeLogs.scope field of berth's records.
func encodeScope(version string) []byte {
	sc := protowire.AppendString(protowire.AppendTag(nil, fieldScopeName, protowire.BytesType), telemetry.ScopeName)
	if version != "" {
		sc = protowire.AppendString(protowire.AppendTag(sc, fieldScopeVersion, protowire.BytesType), version)
	}
	return protowire.AppendBytes(protowire.AppendTag(nil, fieldScopeLogsScope, protowire.BytesType), sc)
}

// maxResources bounds the per-container resource cache.
const maxResources = 4096

// resourceCache holds each container's encoded resource, built once per
// logs.Meta.
type resourceCache struct {
	mu  sync.Mutex
	res map[*logs.Meta][]byte
}

func (c *resourceCache) get(m *logs.Meta) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.res[m]; ok {
		return r
	}
	if c.res == nil || len(c.res) >= maxResources {
		c.res = make(map[*logs.Meta][]byte)
	}
	r := encodeResource(m)
	c.res[m] = r
	return r
}

// unixNano is a timestamp as OTLP carries it: 0 (absent) before 1970.
func unixNano(t time.Time) uint64 {
	if n := t.UnixNano(); n > 0 {
		return uint64(n)
	}
	return 0
}

// appendOTLPRecord appends r as a ScopeLogs.log_records field: its timestamps,
// its body (a string if it is valid UTF-8, else bytes, exactly) and its
// attributes (log.iostream, log.truncated, log.partial).
func appendOTLPRecord(b []byte, r *logs.Record) []byte {
	if r.BodyMap || len(r.Attrs) > 0 || r.Severity != 0 || r.SeverityText != nil {
		return appendParsedRecord(b, r)
	}
	ts, obs := unixNano(r.Timestamp), unixNano(r.Observed)
	bodyField := fieldAnyString
	if !utf8.Valid(r.Body) {
		bodyField = fieldAnyBytes
	}
	anyLen := 1 + protowire.SizeBytes(len(r.Body)) // one byte of tag: fields 1 and 7
	stream := attrStdout
	if r.Stream == logs.Stderr {
		stream = attrStderr
	}
	n := 1 + protowire.SizeBytes(anyLen) + len(stream)
	if ts != 0 {
		n += 1 + 8
	}
	if obs != 0 {
		n += 1 + 8
	}
	if r.Truncated {
		n += len(attrTruncated)
	}
	if r.Partial {
		n += len(attrPartial)
	}
	b = protowire.AppendTag(b, fieldScopeLogsRecords, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	if ts != 0 {
		b = protowire.AppendFixed64(protowire.AppendTag(b, fieldRecordTime, protowire.Fixed64Type), ts)
	}
	b = protowire.AppendTag(b, fieldRecordBody, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(anyLen))
	b = protowire.AppendTag(b, protowire.Number(bodyField), protowire.BytesType)
	b = protowire.AppendBytes(b, r.Body)
	b = append(b, stream...)
	if r.Truncated {
		b = append(b, attrTruncated...)
	}
	if r.Partial {
		b = append(b, attrPartial...)
	}
	if obs != 0 {
		b = protowire.AppendFixed64(protowire.AppendTag(b, fieldRecordObserved, protowire.Fixed64Type), obs)
	}
	return b
}

// fieldSize is the encoded size of a length-delimited field of n bytes
// whose number is below 16 (a one-byte tag).
func fieldSize(n int) int { return 1 + protowire.SizeBytes(n) }

// group is the records of one resource in a request: one ResourceLogs.
type group struct {
	res     []byte
	records int // the bytes of its ScopeLogs.log_records fields
}

// size is the encoded size of the group's ResourceLogs field in the
// request, its scope being scope bytes long.
func (g group) size(scope int) int {
	return fieldSize(len(g.res) + fieldSize(scope+g.records))
}

// appendGroupHeader appends the ResourceLogs field's tag and length, its
// resource, and its ScopeLogs field's tag, length and scope: the group's
// records follow.
func appendGroupHeader(b []byte, g group, scope []byte) []byte {
	sl := len(scope) + g.records
	b = protowire.AppendTag(b, fieldRequestResourceLogs, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(len(g.res)+fieldSize(sl)))
	b = append(b, g.res...)
	b = protowire.AppendTag(b, fieldResourceLogsScope, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(sl))
	return append(b, scope...)
}
