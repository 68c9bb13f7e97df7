// Package logrecord holds Record, one OTLP log record flattened for tests: the
// form in which both in-test OTLP backends, the receiver (otlprecv) and the
// real collector's file output (otelcolrun), hand back what berth exported.
package logrecord

// Record is one OTLP log record, flattened.
type Record struct {
	Resource   map[string]any // resource attributes
	Scope      string         // instrumentation scope name
	Attributes map[string]any // record attributes

	// Body is the body when it is a string. For other non-bytes bodies it is
	// a Go rendering of the value (fmt %v of the value as otlprecv.Value
	// converts it); see BodyKind.
	Body string
	// BodyBytes is the body when it is bytes, else nil.
	BodyBytes []byte
	// BodyKind is "string", "bytes", "int", "double", "bool", "array",
	// "kvlist" or "" (no body).
	BodyKind string

	TimeUnixNano         uint64
	ObservedTimeUnixNano uint64
	SeverityNumber       int32
	SeverityText         string
	EventName            string
	TraceID, SpanID      string // hex, "" when unset
}
