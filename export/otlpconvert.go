package export

import (
	"context"
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
	attrs := make([]attribute.KeyValue, 0, 7+len(m.SelectedLabels))
	attrs = append(attrs,
		attribute.String("container.id", m.ID),
		attribute.String("container.name", m.Name),
		attribute.String("container.image.name", m.ImageName),
		attribute.String("container.runtime", "docker"),
		attribute.String("service.name", m.ServiceName),
		attribute.String("host.name", m.HostName),
	)
	if len(m.ImageTags) > 0 {
		attrs = append(attrs, attribute.StringSlice("container.image.tags", m.ImageTags))
	}
	for _, l := range m.SelectedLabels {
		attrs = append(attrs, attribute.String(labelAttributePrefix+l.Key, l.Value))
	}
	return resource.NewSchemaless(attrs...)
}

// labelAttributePrefix starts the resource attribute of each selected
// container label: container.label.<key>.
const labelAttributePrefix = "container.label."

var (
	attrStdout    = attribute.String("log.iostream", "stdout")
	attrStderr    = attribute.String("log.iostream", "stderr")
	attrTruncated = attribute.Bool("log.truncated", true)
	attrPartial   = attribute.Bool("log.partial", true)
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
		if utf8.Valid(r.Body) {
			lr.SetBody(attribute.StringValue(string(r.Body)))
		} else {
			lr.SetBody(attribute.ByteSliceValue(append([]byte(nil), r.Body...)))
		}
		if r.Stream == logs.Stderr {
			lr.AddAttributes(attrStderr)
		} else {
			lr.AddAttributes(attrStdout)
		}
		if r.Truncated {
			lr.AddAttributes(attrTruncated)
		}
		if r.Partial {
			lr.AddAttributes(attrPartial)
		}
		l.Emit(ctx, lr)
	}
	return out
}
