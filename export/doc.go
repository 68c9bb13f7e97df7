// Package export delivers collected log records: the sinks at the end of
// berth's data flow (logs.Sink implementations).
//
// OTLPSink sends records to an OpenTelemetry backend, encoding the OTLP
// protobuf requests itself from the records and sending them over OTLP/HTTP
// or gRPC (NewOTLPExporter builds the transport from config.OTLP and the
// OTEL_EXPORTER_OTLP_* variables), bounded by the bytes
// in flight and acknowledging each container's batches to a logs.Acker only
// once the backend has them; JSONSink writes them to a writer (stdout) as
// JSON lines; Tee hands each batch to several sinks. berth's own telemetry
// lives in package telemetry, not here.
package export
