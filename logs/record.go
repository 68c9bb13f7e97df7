// Package logs holds berth's domain types, which every stage of the data flow
// shares and which import nothing of berth: a container's log line (Record)
// and the container it came from (Meta), a Batch of them handed to a Sink,
// the Cursor that says how far a container's log has been read, and the
// Acker that learns how far it has been delivered.
package logs

import (
	"context"
	"slices"
	"strings"
	"time"
)

// Stream says which standard stream of a container a line came from.
type Stream uint8

// The streams a container log carries. The values are Docker's stdcopy stream
// numbers, so a multiplexed frame header maps to a Stream without a table.
const (
	Stdout Stream = 1
	Stderr Stream = 2
)

// String returns the value of the log.iostream attribute for the stream.
func (s Stream) String() string {
	switch s {
	case Stdout:
		return "stdout"
	case Stderr:
		return "stderr"
	}
	return "unknown"
}

// Meta describes the container a record came from: the resource of every
// record it produced. A Meta is immutable once published; a rename publishes a
// new one.
type Meta struct {
	ID          string
	Name        string // without Docker's leading slash
	ImageName   string // the image reference without its tag or digest
	ImageTags   []string
	ServiceName string // compose service label, else the container name
	// ServiceNamespace is the compose project label; "" if none.
	ServiceNamespace string
	// ImageID is the ID of the container's image (sha256:...), if known.
	ImageID string
	// ImageRepoDigests are the image's repo digests (name@sha256:...), as
	// the daemon's image inspect gives them; none for a local build.
	ImageRepoDigests []string
	HostName         string
	Labels           map[string]string // every label of the container
	TTY              bool              // raw stream instead of stdcopy frames
	Running          bool              // the container's state when it was inspected
	// AutoRemove says the daemon removes the container, and deletes its
	// log, as soon as it stops (docker run --rm). A logs request for it
	// once it has stopped makes Docker re-create its log file, which can
	// make that removal fail ("directory not empty"): berth sends none.
	AutoRemove bool
	StartedAt  time.Time // when its current (or last) run started

	// SelectedLabels are the labels the operator chose to export (the
	// labels setting), sorted by key: each is the resource attribute
	// container.label.<Key>. A sorted slice rather than a map, so that the
	// output's order is deterministic and the sinks, which encode a Meta's
	// resource once, walk it without sorting.
	SelectedLabels []Label
	// Static are the resource attributes every container's records carry
	// (the resource_attributes setting), sorted by key.
	Static []Label
}

// The compose labels a Meta's service is named from.
const (
	LabelComposeService = "com.docker.compose.service"
	LabelComposeProject = "com.docker.compose.project"
)

// SetService names m's service from its compose labels: service.name is
// the compose service (else the container's name), service.namespace the
// compose project.
func (m *Meta) SetService() {
	m.ServiceName = m.Name
	if s := m.Labels[LabelComposeService]; s != "" {
		m.ServiceName = s
	}
	m.ServiceNamespace = m.Labels[LabelComposeProject]
}

// Renamed returns a copy of m named name; a service name that was the
// container's name follows it (a compose service label does not change).
func (m *Meta) Renamed(name string) *Meta {
	r := *m
	if r.ServiceName == r.Name {
		r.ServiceName = name
	}
	r.Name = name
	return &r
}

// Label is one container label: the key and value Docker reports.
type Label struct {
	Key, Value string
}

// SelectLabels returns the labels that one of the selectors selects, sorted
// by key; nil if none. A selector ending in * selects every key that starts
// with what comes before the * (a lone * selects every label); any other
// selects the key equal to it.
func SelectLabels(labels map[string]string, selectors []string) []Label {
	if len(selectors) == 0 {
		return nil
	}
	var out []Label
	for k, v := range labels {
		if selected(k, selectors) {
			out = append(out, Label{Key: k, Value: v})
		}
	}
	slices.SortFunc(out, func(a, b Label) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// selected reports whether one of the selectors selects the label key.
func selected(key string, selectors []string) bool {
	for _, s := range selectors {
		if prefix, ok := strings.CutSuffix(s, "*"); ok {
			if strings.HasPrefix(key, prefix) {
				return true
			}
		} else if key == s {
			return true
		}
	}
	return false
}

// Record is one log line. Its fields are ordered so that the flags share
// one word (128 bytes in all): a batch holds up to 1024 records.
type Record struct {
	Timestamp time.Time // Docker's timestamp of the line's first chunk
	Observed  time.Time // when berth read it
	// Body is the line without its newline, or, of a parsed line, its
	// message field (see package parse); valid only during Sink.Consume.
	Body []byte

	// SeverityText and Attrs, like Severity and BodyMap below, are set
	// only for a line parsed as JSON or logfmt (the berth.parse label or
	// the parse.format setting); their bytes are valid only during
	// Sink.Consume, like Body's.

	// SeverityText is the level field's value as written; nil if none.
	SeverityText []byte
	// Attrs are the line's other fields, in the order written. With
	// BodyMap they are every field of the line, and are the body.
	Attrs []Attr

	Stream    Stream
	Truncated bool // the line was longer than max_line_bytes and was cut
	// Partial says the line had not ended (no newline) when berth sent it:
	// it went quiet for partial_flush_timeout (a progress bar), or the
	// container's stream ended without a last newline. Its rest, if any
	// arrives later, is a record of its own.
	Partial bool
	// Severity is the SeverityNumber the line's level field maps to; 0 if
	// it has none, or one berth does not know.
	Severity Severity
	// BodyMap says that the record's body is the map of Attrs (the whole
	// object; Body then holds the line as written).
	BodyMap bool
	// Unparsed says that the line was to be parsed and is not in the
	// format (or its fields would not fit in an export request): it is
	// sent as it is.
	Unparsed bool
}

// Severity is a SeverityNumber of the OpenTelemetry log data model: 1-4
// TRACE, 5-8 DEBUG, 9-12 INFO, 13-16 WARN, 17-20 ERROR, 21-24 FATAL; 0 is
// unspecified.
type Severity uint8

// The first SeverityNumber of each range.
const (
	SeverityTrace Severity = 1
	SeverityDebug Severity = 5
	SeverityInfo  Severity = 9
	SeverityWarn  Severity = 13
	SeverityError Severity = 17
	SeverityFatal Severity = 21
)

// Kind says what a field's value is, and how its bytes are written.
type Kind uint8

// The kinds of a field's value.
const (
	KindString Kind = iota // Value is the string, decoded (UTF-8)
	KindInt                // Value is a JSON integer as written (it may not fit in 64 bits)
	KindDouble             // Value is a JSON number with a fraction or exponent, as written
	KindBool               // Value is true or false
	KindNull               // Value is null
	KindJSON               // Value is a JSON object or array, as written (valid JSON)
)

// Attr is one field of a parsed line: its key and its value.
type Attr struct {
	Key   []byte
	Value []byte
	Kind  Kind
}

// Batch is a run of records of one container, handed to a Sink.
type Batch struct {
	Meta    *Meta
	Records []Record
	// Cursor is the container's position just after the batch's last record.
	// A sink reports it to its Acker once the batch is delivered; it is the
	// sink's to keep.
	Cursor Cursor
}

// Sink takes batches of records. Consume returns once the batch is accepted
// (copied, or written); the burst then reads on from the batch's cursor.
// Delivery is acknowledged separately, through an Acker, so that checkpoints
// advance only past records the backend has. A Sink must not retain the
// batch's records or their bodies after Consume returns: their memory is
// reused for the next batch. Consume may block: that is backpressure, and the
// burst stops reading while it does.
type Sink interface {
	Consume(ctx context.Context, b *Batch) error
}

// Acker learns that every record of a container up to cursor was delivered.
// Acknowledgements of one container arrive in order.
type Acker interface {
	Ack(containerID string, cursor Cursor)
}
