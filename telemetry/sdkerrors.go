package telemetry

import (
	"log/slog"

	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel"
)

// RouteSDKErrors sends the OpenTelemetry SDK's own errors and log messages
// (a failed export, a dropped span, a conflicting instrument) to log, where
// they would otherwise be printed by Go's standard logger as bare lines on
// stderr. Errors passed to otel.Handle are logged at warn level; the SDK's
// internal logger (otel.SetLogger) writes through log's handler, its
// verbosity levels mapping to slog levels below info.
//
// The error handler and the logger are process-global in the OpenTelemetry
// API, so this changes global state: call it once, from main, before
// telemetry is set up.
func RouteSDKErrors(log *slog.Logger) {
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("OpenTelemetry SDK error", "err", err)
	}))
	otel.SetLogger(logr.FromSlogHandler(log.Handler()))
}
