package export

import (
	"bytes"
	"encoding/json"
	"maps"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/berthlog/berth/logs"
	"google.golang.org/protobuf/encoding/protowire"
)

// The fields a parsed line's record adds (see package parse): its severity,
// and its fields as attributes or as a map body.
const (
	fieldRecordSeverity     = 2 // LogRecord.severity_number (enum)
	fieldRecordSeverityText = 3 // LogRecord.severity_text
	fieldAnyInt             = 3 // AnyValue.int_value
	fieldAnyDouble          = 4 // AnyValue.double_value (fixed64)
	fieldAnyKVList          = 6 // AnyValue.kvlist_value
	fieldKVListValues       = 1 // KeyValueList.values
)

// appendParsedRecord appends a parsed line's record as a ScopeLogs.log_records
// field: what appendOTLPRecord writes for any record, and its severity and
// fields. Its length is known only once it is written: the record is written
// after room for the largest length a record can have, then moved up to its
// length's real size (a copy of the record, no allocation).
func appendParsedRecord(b []byte, r *logs.Record) []byte {
	b = protowire.AppendTag(b, fieldScopeLogsRecords, protowire.BytesType)
	lenAt := len(b)
	b = append(b, 0, 0, 0, 0, 0) // a record is < 4 GiB: 5 bytes of varint at most
	start := len(b)
	if ts := unixNano(r.Timestamp); ts != 0 {
		b = protowire.AppendFixed64(protowire.AppendTag(b, fieldRecordTime, protowire.Fixed64Type), ts)
	}
	if r.Severity != 0 {
		b = protowire.AppendVarint(protowire.AppendTag(b, fieldRecordSeverity, protowire.VarintType), uint64(r.Severity))
	}
	if len(r.SeverityText) > 0 {
		b = protowire.AppendBytes(protowire.AppendTag(b, fieldRecordSeverityText, protowire.BytesType), r.SeverityText)
	}
	b = protowire.AppendTag(b, fieldRecordBody, protowire.BytesType)
	switch {
	case r.BodyMap:
		b = appendLen(b, func(b []byte) []byte {
			return appendLen(protowire.AppendTag(b, fieldAnyKVList, protowire.BytesType), func(b []byte) []byte {
				return appendMapFields(b, r.Attrs)
			})
		})
	case utf8.Valid(r.Body):
		b = protowire.AppendVarint(b, uint64(fieldSize(len(r.Body))))
		b = protowire.AppendBytes(protowire.AppendTag(b, fieldAnyString, protowire.BytesType), r.Body)
	default:
		b = protowire.AppendVarint(b, uint64(fieldSize(len(r.Body))))
		b = protowire.AppendBytes(protowire.AppendTag(b, fieldAnyBytes, protowire.BytesType), r.Body)
	}
	if r.Stream == logs.Stderr {
		b = append(b, attrStderr...)
	} else {
		b = append(b, attrStdout...)
	}
	if r.Truncated {
		b = append(b, attrTruncated...)
	}
	if r.Partial {
		b = append(b, attrPartial...)
	}
	if !r.BodyMap {
		b = appendOTLPFields(b, fieldRecordAttrs, r.Attrs)
	}
	if obs := unixNano(r.Observed); obs != 0 {
		b = protowire.AppendFixed64(protowire.AppendTag(b, fieldRecordObserved, protowire.Fixed64Type), obs)
	}
	return closeLen(b, lenAt, start)
}

// appendLen appends what content appends, as a length-delimited value.
func appendLen(b []byte, content func([]byte) []byte) []byte {
	lenAt := len(b)
	b = append(b, 0, 0, 0, 0, 0)
	start := len(b)
	b = content(b)
	return closeLen(b, lenAt, start)
}

// closeLen writes the length of b[start:] as a varint at lenAt, where five
// bytes were kept for it, and moves the content up behind it.
func closeLen(b []byte, lenAt, start int) []byte {
	n := len(b) - start
	var tmp [5]byte
	l := protowire.AppendVarint(tmp[:0], uint64(n))
	copy(b[lenAt+len(l):], b[start:])
	copy(b[lenAt:], l)
	return b[:lenAt+len(l)+n]
}

// appendOTLPFields appends a parsed line's fields as KeyValue fields num, each
// of its JSON type: an integer that does not fit in 64 bits is a double, a
// nested object a map (its keys sorted), an array a list, null an empty
// value; a logfmt value is a string.
func appendOTLPFields(b []byte, num protowire.Number, attrs []logs.Attr) []byte {
	for i := range attrs {
		a := &attrs[i]
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = appendLen(b, func(b []byte) []byte {
			b = protowire.AppendBytes(protowire.AppendTag(b, fieldKeyValueKey, protowire.BytesType), a.Key)
			b = protowire.AppendTag(b, fieldKeyValueValue, protowire.BytesType)
			return appendLen(b, func(b []byte) []byte { return appendFieldValue(b, a) })
		})
	}
	return b
}

// appendMapFields appends a parsed line's fields as a map body's
// KeyValueList values: sorted by key, the last of equal keys kept, as an
// OpenTelemetry map value is.
func appendMapFields(b []byte, attrs []logs.Attr) []byte {
	var small [32]int
	idx := small[:0]
	for i := range attrs {
		idx = append(idx, i)
	}
	slices.SortStableFunc(idx, func(i, j int) int { return bytes.Compare(attrs[i].Key, attrs[j].Key) })
	for n, i := range idx {
		if n+1 < len(idx) && bytes.Equal(attrs[idx[n+1]].Key, attrs[i].Key) {
			continue // the last of equal keys wins
		}
		b = appendOTLPFields(b, fieldKVListValues, attrs[i:i+1])
	}
	return b
}

// appendFieldValue appends the AnyValue content of one field.
func appendFieldValue(b []byte, a *logs.Attr) []byte {
	switch a.Kind {
	case logs.KindString:
		return protowire.AppendBytes(protowire.AppendTag(b, fieldAnyString, protowire.BytesType), a.Value)
	case logs.KindInt:
		if n, err := strconv.ParseInt(string(a.Value), 10, 64); err == nil {
			return protowire.AppendVarint(protowire.AppendTag(b, fieldAnyInt, protowire.VarintType), uint64(n))
		}
		fallthrough
	case logs.KindDouble:
		f, _ := strconv.ParseFloat(string(a.Value), 64) // valid JSON: out of range is ±Inf
		return appendDouble(b, f)
	case logs.KindBool:
		return protowire.AppendVarint(protowire.AppendTag(b, fieldAnyBool, protowire.VarintType), protowire.EncodeBool(string(a.Value) == "true"))
	case logs.KindJSON:
		d := json.NewDecoder(bytes.NewReader(a.Value))
		d.UseNumber()
		var v any
		if d.Decode(&v) == nil {
			return appendJSONValue(b, v)
		}
		return protowire.AppendBytes(protowire.AppendTag(b, fieldAnyString, protowire.BytesType), a.Value)
	}
	return b // null: an empty AnyValue
}

func appendDouble(b []byte, f float64) []byte {
	return protowire.AppendFixed64(protowire.AppendTag(b, fieldAnyDouble, protowire.Fixed64Type), math.Float64bits(f))
}

// appendJSONValue appends the AnyValue content of a value encoding/json
// decoded (with UseNumber): a nested object or array of a parsed line.
func appendJSONValue(b []byte, v any) []byte {
	switch v := v.(type) {
	case string:
		return protowire.AppendString(protowire.AppendTag(b, fieldAnyString, protowire.BytesType), v)
	case bool:
		return protowire.AppendVarint(protowire.AppendTag(b, fieldAnyBool, protowire.VarintType), protowire.EncodeBool(v))
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return protowire.AppendVarint(protowire.AppendTag(b, fieldAnyInt, protowire.VarintType), uint64(n))
		}
		f, _ := v.Float64()
		return appendDouble(b, f)
	case []any:
		return appendLen(protowire.AppendTag(b, fieldAnyArray, protowire.BytesType), func(b []byte) []byte {
			for _, e := range v {
				b = protowire.AppendTag(b, fieldArrayValues, protowire.BytesType)
				b = appendLen(b, func(b []byte) []byte { return appendJSONValue(b, e) })
			}
			return b
		})
	case map[string]any:
		return appendLen(protowire.AppendTag(b, fieldAnyKVList, protowire.BytesType), func(b []byte) []byte {
			for _, k := range slices.Sorted(maps.Keys(v)) {
				b = protowire.AppendTag(b, fieldKVListValues, protowire.BytesType)
				b = appendLen(b, func(b []byte) []byte {
					b = protowire.AppendString(protowire.AppendTag(b, fieldKeyValueKey, protowire.BytesType), k)
					b = protowire.AppendTag(b, fieldKeyValueValue, protowire.BytesType)
					return appendLen(b, func(b []byte) []byte { return appendJSONValue(b, v[k]) })
				})
			}
			return b
		})
	}
	return b // null
}
