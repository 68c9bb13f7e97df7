// Package telemetry sets up berth's own telemetry: the meter provider (read
// by Prometheus on /metrics, and pushed over OTLP when an endpoint is set),
// the tracer provider (batched OTLP export, sampled by trace_sampling), the Go
// runtime metrics and the process metrics (open file descriptors, resident
// memory). It hands every component one Settings value, from which the
// component builds its own tracer and instruments, and routes the
// OpenTelemetry SDK's own errors to berth's logger.
//
// berth's records are exported by package export, not here.
package telemetry
