package export

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/berthlog/berth/logs"
)

// timeFormat is RFC 3339 with all nine digits of nanoseconds, so that lines
// sort as text and every timestamp has the same width.
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// JSONSink writes one JSON object per record, one per line:
//
//	{"timestamp":"...","observed_timestamp":"...","body":"...",
//	 "attributes":{"log.iostream":"stdout"},
//	 "resource":{"container.id":"...","container.name":"...",...,
//	   "container.label.<key>":"..."}}
//
// A body that is not valid UTF-8 is written as the base64 of its exact bytes,
// with the attribute "log.body.encoding":"base64", so nothing is replaced.
// A parsed line (see package parse) adds "severity_number" and
// "severity_text" when it has a level, and its fields to "attributes", each
// with its JSON type; with parse.body map the body is the object of its
// fields.
// Each batch is written with one Write: lines of concurrent bursts never
// interleave.
type JSONSink struct {
	mu        sync.Mutex
	w         io.Writer
	buf       []byte
	resources map[*logs.Meta][]byte // encoded resource of each published Meta
	times     timeFormatter
	acker     logs.Acker
}

var _ logs.Sink = (*JSONSink)(nil)

// NewJSONSink returns a sink writing to w (berth uses stdout). A written
// batch is delivered: it is acknowledged to acker at once, if acker is not
// nil.
func NewJSONSink(w io.Writer, acker logs.Acker) *JSONSink {
	return &JSONSink{w: w, resources: make(map[*logs.Meta][]byte), acker: acker}
}

// maxCachedResources bounds the resource cache; it is rebuilt when full.
const maxCachedResources = 4096

// Consume writes the batch and acknowledges it.
func (s *JSONSink) Consume(_ context.Context, b *logs.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	res, ok := s.resources[b.Meta]
	if !ok {
		if len(s.resources) >= maxCachedResources {
			clear(s.resources)
		}
		res = appendResource(nil, b.Meta)
		s.resources[b.Meta] = res
	}
	buf := s.buf[:0]
	for i := range b.Records {
		buf = appendRecord(buf, &b.Records[i], res, &s.times)
	}
	s.buf = buf
	if _, err := s.w.Write(buf); err != nil {
		return fmt.Errorf("write records: %w", err)
	}
	if s.acker != nil && b.Meta != nil {
		s.acker.Ack(b.Meta.ID, b.Cursor)
	}
	return nil
}

func appendRecord(buf []byte, r *logs.Record, resource []byte, tf *timeFormatter) []byte {
	buf = append(buf, `{"timestamp":"`...)
	buf = tf.append(buf, r.Timestamp)
	buf = append(buf, `","observed_timestamp":"`...)
	buf = tf.append(buf, r.Observed)
	buf = append(buf, `","body":`...)
	valid := r.BodyMap || utf8.Valid(r.Body)
	switch {
	case r.BodyMap:
		buf = append(buf, '{')
		buf = appendFields(buf, r.Attrs, false)
		buf = append(buf, '}')
	case valid:
		buf = appendString(buf, r.Body)
	default:
		buf = append(buf, '"')
		buf = base64.StdEncoding.AppendEncode(buf, r.Body)
		buf = append(buf, '"')
	}
	if r.Severity != 0 || r.SeverityText != nil {
		buf = appendSeverity(buf, r)
	}
	buf = append(buf, `,"attributes":{"log.iostream":"`...)
	buf = append(buf, r.Stream.String()...)
	buf = append(buf, '"')
	if !r.BodyMap && len(r.Attrs) > 0 {
		buf = appendFields(buf, r.Attrs, true)
	}
	if r.Truncated {
		buf = append(buf, `,"log.truncated":true`...)
	}
	if r.Partial {
		buf = append(buf, `,"log.partial":true`...)
	}
	if !valid {
		buf = append(buf, `,"log.body.encoding":"base64"`...)
	}
	buf = append(buf, `},"resource":`...)
	buf = append(buf, resource...)
	return append(buf, "}\n"...)
}

// appendSeverity appends a parsed record's severity_number and
// severity_text.
func appendSeverity(buf []byte, r *logs.Record) []byte {
	buf = append(buf, `,"severity_number":`...)
	buf = strconv.AppendUint(buf, uint64(r.Severity), 10)
	if r.SeverityText != nil {
		buf = append(buf, `,"severity_text":`...)
		buf = appendString(buf, r.SeverityText)
	}
	return buf
}

// appendFields appends a parsed line's fields as JSON members (after a
// comma each if comma, else between commas): a string as a string, a
// number, boolean, null, object or array as written (the parser validated
// them, and every string is valid UTF-8).
func appendFields(buf []byte, attrs []logs.Attr, comma bool) []byte {
	for i := range attrs {
		a := &attrs[i]
		if comma || i > 0 {
			buf = append(buf, ',')
		}
		buf = appendString(buf, a.Key)
		buf = append(buf, ':')
		if a.Kind == logs.KindString {
			buf = appendString(buf, a.Value)
		} else {
			buf = append(buf, a.Value...)
		}
	}
	return buf
}

// appendResource encodes a container's resource attributes (OpenTelemetry
// semantic conventions), then its selected labels as container.label.<key>
// in key order. Consume encodes it once per Meta.
func appendResource(buf []byte, m *logs.Meta) []byte {
	kv := func(buf []byte, k, v string) []byte {
		buf = appendString(buf, []byte(k))
		buf = append(buf, ':')
		return appendString(buf, []byte(v))
	}
	buf = append(buf, '{')
	buf = kv(buf, "container.id", m.ID)
	buf = append(buf, ',')
	buf = kv(buf, "container.name", m.Name)
	buf = append(buf, ',')
	buf = kv(buf, "container.image.name", m.ImageName)
	buf = append(buf, `,"container.image.tags":[`...)
	for i, t := range m.ImageTags {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendString(buf, []byte(t))
	}
	buf = append(buf, ']')
	if m.ImageID != "" {
		buf = append(buf, ',')
		buf = kv(buf, "container.image.id", m.ImageID)
	}
	if len(m.ImageRepoDigests) > 0 {
		buf = append(buf, `,"container.image.repo_digests":[`...)
		for i, d := range m.ImageRepoDigests {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendString(buf, []byte(d))
		}
		buf = append(buf, ']')
	}
	buf = append(buf, ',')
	buf = kv(buf, "container.runtime.name", runtimeName)
	buf = append(buf, ',')
	buf = kv(buf, "container.runtime", runtimeName)
	buf = append(buf, ',')
	buf = kv(buf, "service.name", m.ServiceName)
	if m.ServiceNamespace != "" {
		buf = append(buf, ',')
		buf = kv(buf, "service.namespace", m.ServiceNamespace)
	}
	buf = append(buf, ',')
	buf = kv(buf, "host.name", m.HostName)
	for _, l := range m.Static {
		buf = append(buf, ',')
		buf = kv(buf, l.Key, l.Value)
	}
	for _, l := range m.SelectedLabels {
		buf = append(buf, ',')
		buf = kv(buf, labelAttributePrefix+l.Key, l.Value)
	}
	return append(buf, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s, valid UTF-8, as a JSON string.
func appendString(buf, s []byte) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		buf = append(buf, s[start:i]...)
		switch c {
		case '"', '\\':
			buf = append(buf, '\\', c)
		case '\n':
			buf = append(buf, '\\', 'n')
		case '\r':
			buf = append(buf, '\\', 'r')
		case '\t':
			buf = append(buf, '\\', 't')
		default:
			buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}

// timeFormatter writes times in timeFormat (UTC), remembering the last day's
// date so that a line costs a few divisions instead of a calendar
// computation.
type timeFormatter struct {
	dayStart int64 // Unix seconds of the cached day's midnight
	date     []byte
}

func (f *timeFormatter) append(buf []byte, t time.Time) []byte {
	sec := t.Unix()
	if f.date == nil || sec < f.dayStart || sec >= f.dayStart+86400 {
		u := t.UTC()
		y, m, d := u.Date()
		f.dayStart = time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix()
		f.date = u.AppendFormat(f.date[:0], "2006-01-02T")
	}
	buf = append(buf, f.date...)
	s := sec - f.dayStart
	buf = append2(buf, int(s/3600))
	buf = append(buf, ':')
	buf = append2(buf, int(s/60%60))
	buf = append(buf, ':')
	buf = append2(buf, int(s%60))
	buf = append(buf, '.')
	ns := t.Nanosecond()
	var frac [9]byte
	for i := 8; i >= 0; i-- {
		frac[i] = byte('0' + ns%10)
		ns /= 10
	}
	buf = append(buf, frac[:]...)
	return append(buf, 'Z')
}

func append2(buf []byte, v int) []byte { return append(buf, byte('0'+v/10), byte('0'+v%10)) }
