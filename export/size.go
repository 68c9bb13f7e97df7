package export

import (
	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
	"go.opentelemetry.io/otel/attribute"
	sdklog "go.opentelemetry.io/otel/sdk/log"
)

// An export request's encoded size is estimated from above, without encoding
// it: the exporters encode the OTLP protobuf form internally and do not say
// its size, and encoding every record twice (once to measure) would cost an
// allocation per line. A protobuf field costs its content plus a tag and a
// length (at most 1 + 5 bytes); the bounds below add up those costs with room
// to spare (TestEncodedSizeIsAnUpperBound measures them against the OTLP/HTTP
// exporter's real request bodies).
const (
	// recordFrame is a log record's encoding besides its body and
	// attributes: its two timestamps (9 bytes each), its body's AnyValue
	// wrapping (at most 12), its own tag and length in the scope's list (at
	// most 6), and room for a severity and flags.
	recordFrame = 64
	// attrFrame bounds one of the attributes berth sets on a record
	// (log.iostream=stderr: 26 bytes, log.truncated=true: 21).
	attrFrame = 48
	// keyValueFrame is a resource attribute's encoding besides its key and
	// value: the KeyValue's, the key's, the AnyValue's and the string's
	// tags and lengths.
	keyValueFrame = 24
	// resourceFrame is the ResourceLogs and ScopeLogs wrapping a container's
	// records and the request's own, besides the attributes and the scope's
	// name and version.
	resourceFrame = 96
)

// recordSize bounds the encoded size of one record, its resource excepted.
// A parsed line's fields (attributes, or a map body) are measured: the
// frame of each is keyValueFrame beside its key and value.
func recordSize(r *sdklog.Record) int64 {
	n := valueSize(r.Body()) + recordFrame + len(r.SeverityText())
	r.WalkAttributes(func(kv attribute.KeyValue) bool {
		n += attrFrame + len(kv.Key) + valueSize(kv.Value)
		return true
	})
	return int64(n)
}

// valueSize bounds the encoded size of a value besides its frame: a
// string's or bytes' length, a number's 9 bytes, each element of a slice
// or map with its own frame.
func valueSize(v attribute.Value) int {
	switch v.Type() {
	case attribute.BYTESLICE:
		return len(v.AsByteSlice())
	case attribute.STRING:
		return len(v.AsString())
	case attribute.SLICE:
		n := 0
		for _, e := range v.AsSlice() {
			n += keyValueFrame + valueSize(e)
		}
		return n
	case attribute.MAP:
		n := 0
		for _, kv := range v.AsMap() {
			n += keyValueFrame + len(kv.Key) + valueSize(kv.Value)
		}
		return n
	}
	return 9
}

// resourceSize bounds the encoded size of a container's resource and scope
// (see containerResource), which a request carries once per container.
func resourceSize(m *logs.Meta, version string) int64 {
	n := resourceFrame + len(telemetry.ScopeName) + len(version)
	kv := func(k, v string) { n += keyValueFrame + len(k) + len(v) }
	kv("container.id", m.ID)
	kv("container.name", m.Name)
	kv("container.image.name", m.ImageName)
	kv("container.runtime.name", runtimeName)
	kv("container.runtime", runtimeName)
	kv("service.name", m.ServiceName)
	kv("service.namespace", m.ServiceNamespace)
	kv("host.name", m.HostName)
	kv("container.image.id", m.ImageID)
	list := func(k string, vs []string) {
		if len(vs) > 0 {
			kv(k, "")
			for _, v := range vs {
				n += keyValueFrame + len(v)
			}
		}
	}
	list("container.image.tags", m.ImageTags)
	list("container.image.repo_digests", m.ImageRepoDigests)
	for _, l := range m.Static {
		kv(l.Key, l.Value)
	}
	for _, l := range m.SelectedLabels {
		kv(labelAttributePrefix+l.Key, l.Value)
	}
	return int64(n)
}
