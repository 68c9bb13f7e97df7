// Package parse turns a structured log line, a JSON object or logfmt
// key=value pairs, into a record's fields: its message becomes the body, its
// level the severity, the rest attributes. It is pure (no I/O, no state) and
// allocation-light: the fields refer to the line itself, and only strings
// with escapes are decoded, into a buffer the caller owns and reuses.
package parse

import (
	"fmt"
	"strings"

	"github.com/berthlog/berth/logs"
)

// Format is how a container's lines are parsed.
type Format uint8

// The formats.
const (
	None   Format = iota // lines are sent as they are
	JSON                 // each line is a JSON object
	Logfmt               // each line is key=value pairs
)

// The names of the formats, as the berth.parse label and parse.format
// setting write them.
const (
	NameNone   = "none"
	NameJSON   = "json"
	NameLogfmt = "logfmt"
)

// Names lists the format names, for error messages and documentation.
var Names = []string{NameJSON, NameLogfmt, NameNone}

// String returns the format's name.
func (f Format) String() string {
	switch f {
	case JSON:
		return NameJSON
	case Logfmt:
		return NameLogfmt
	}
	return NameNone
}

// FormatOf returns the format called name (json, logfmt or none; an empty
// name is none).
func FormatOf(name string) (Format, error) {
	switch name {
	case NameNone, "":
		return None, nil
	case NameJSON:
		return JSON, nil
	case NameLogfmt:
		return Logfmt, nil
	}
	return None, fmt.Errorf("%q is not a format; use %s", name, strings.Join(Names, ", "))
}

// Label is the container label that chooses its format.
const Label = "berth.parse"

// FromLabels returns the format a container's berth.parse label chooses,
// else def. A bad label value is an error naming the label, and def
// applies.
func FromLabels(labels map[string]string, def Format) (Format, error) {
	v, ok := labels[Label]
	if !ok {
		return def, nil
	}
	f, err := FormatOf(v)
	if err != nil || v == "" {
		if err == nil {
			err = fmt.Errorf("%q is not a format; use %s", v, strings.Join(Names, ", "))
		}
		return def, fmt.Errorf("%s: %w; the configured format applies", Label, err)
	}
	return f, nil
}

// Body says what becomes the body of a parsed line.
type Body uint8

// The bodies.
const (
	// BodyMessage: the message field is the body, the other fields are
	// attributes; a line without a message field keeps the line as body.
	BodyMessage Body = iota
	// BodyMap: the whole object (every field, the message and level
	// included) is the body, a map.
	BodyMap
)

// The names of the bodies, as parse.body writes them.
const (
	NameBodyMessage = "message"
	NameBodyMap     = "map"
)

// BodyOf returns the body called name (message or map).
func BodyOf(name string) (Body, error) {
	switch name {
	case NameBodyMessage:
		return BodyMessage, nil
	case NameBodyMap:
		return BodyMap, nil
	}
	return BodyMessage, fmt.Errorf("%q is not allowed; use %s or %s", name, NameBodyMessage, NameBodyMap)
}

// MessageKeys are the fields that hold a line's message, in the order they
// are looked for.
var MessageKeys = []string{"msg", "message"}

// LevelKeys are the fields that hold a line's level, in the order they are
// looked for.
var LevelKeys = []string{"level", "severity", "lvl", "log.level"}

// Fields appends the fields of line, in format f, to fields, and the bytes
// of strings it decodes to buf. ok is false if the line is not in the
// format (or f is None): fields and buf are then returned as they came. The
// keys and values refer to line or to buf: a buf with room for len(line)
// more bytes is never grown (decoding never lengthens a string), so values
// decoded earlier into it stay where they are.
func Fields(f Format, line, buf []byte, fields []logs.Attr) ([]byte, []logs.Attr, bool) {
	switch f {
	case JSON:
		return jsonFields(line, buf, fields)
	case Logfmt:
		return logfmtFields(line, buf, fields)
	}
	return buf, fields, false
}

// Structure sets r's body, severity and attributes from fields, the fields
// of r's line (as Fields returns them; r.Body is the line). With
// BodyMessage the message field becomes the body and the level field the
// severity, and neither is an attribute; with BodyMap every field stays, as
// the body, and the level sets the severity too. fields is reordered.
func Structure(r *logs.Record, fields []logs.Attr, body Body) {
	lvl := find(fields, LevelKeys)
	if lvl >= 0 {
		r.SeverityText = fields[lvl].Value
		r.Severity = SeverityOf(fields[lvl].Value, fields[lvl].Kind)
	}
	if body == BodyMap {
		r.Attrs, r.BodyMap = fields, true
		return
	}
	if lvl >= 0 {
		fields = remove(fields, lvl)
	}
	if msg := find(fields, MessageKeys); msg >= 0 {
		r.Body = fields[msg].Value
		fields = remove(fields, msg)
	}
	r.Attrs = fields
}

// find returns the index of the first field whose key is the first of keys
// present; -1 if none is.
func find(fields []logs.Attr, keys []string) int {
	for _, k := range keys {
		for i := range fields {
			if string(fields[i].Key) == k {
				return i
			}
		}
	}
	return -1
}

// remove deletes fields[i], keeping the others' order.
func remove(fields []logs.Attr, i int) []logs.Attr {
	copy(fields[i:], fields[i+1:])
	return fields[:len(fields)-1]
}

// EncodedBound bounds what an OTLP export request holds of a parsed
// record's body, severity text and fields beyond the frame of a plain
// record: per field 64 bytes besides its key and value (9 for a number, a
// boolean or null), a nested object or array 18 times the length of its
// text (each of its elements takes at least 2 of its bytes and costs at
// most 33 more). The collector sends a line whose bound exceeds
// max_line_bytes as it is, so that a parsed record, like a plain line of
// max_line_bytes, fits in an export request.
func EncodedBound(r *logs.Record) int {
	n := len(r.SeverityText)
	if !r.BodyMap {
		n += len(r.Body)
	}
	for i := range r.Attrs {
		a := &r.Attrs[i]
		n += 64 + len(a.Key)
		if a.Kind == logs.KindJSON {
			n += 18 * len(a.Value)
		} else {
			n += len(a.Value) + 9
		}
	}
	return n
}
