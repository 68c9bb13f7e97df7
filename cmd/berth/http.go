package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"time"

	"github.com/berthlog/berth/events"
	"github.com/berthlog/berth/export"
	"github.com/berthlog/berth/telemetry"
)

// statusDoc is the JSON of /status, read by `berth status`.
type statusDoc struct {
	Version         string            `json:"version"`
	UptimeSeconds   float64           `json:"uptime_seconds"`
	Goroutines      int               `json:"goroutines"`
	OpenFDs         int               `json:"open_fds"`
	RSSBytes        int64             `json:"rss_bytes"`
	EventsConnected bool              `json:"events_connected"`
	StreamsOpen     int               `json:"streams_open"`
	Exporter        exporterStatus    `json:"exporter"`
	Containers      []containerStatus `json:"containers"`
}

type exporterStatus struct {
	Kind          string   `json:"kind"` // otlp or stdout
	Healthy       bool     `json:"healthy"`
	LastError     string   `json:"last_error,omitempty"`
	Exported      int64    `json:"exported"`
	Rejected      int64    `json:"rejected"`
	Failures      int64    `json:"failures"`
	InFlightBytes int64    `json:"in_flight_bytes"`
	LagSeconds    *float64 `json:"lag_seconds,omitempty"`
}

type containerStatus struct {
	events.ContainerStatus
	LagSeconds *float64 `json:"lag_seconds,omitempty"`
}

// newMux serves /healthz, /readyz, /status, and /metrics with metrics.
func newMux(mgr *events.Manager, metrics http.Handler, sink *export.OTLPSink, started time.Time) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !mgr.Connected() {
			http.Error(w, "not ready: the Docker events stream is not connected (see berth's log for the Docker error)", http.StatusServiceUnavailable)
			return
		}
		if sink != nil {
			if ok, why := sink.Healthy(); !ok {
				http.Error(w, "not ready: exports to the OTLP backend are failing: "+why, http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		st, err := mgr.Status(ctx)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		doc := statusDoc{
			Version: version, UptimeSeconds: time.Since(started).Seconds(),
			Goroutines: runtime.NumGoroutine(), EventsConnected: st.Connected, StreamsOpen: st.Streams,
			Exporter: exporterStatus{Kind: "stdout", Healthy: true},
		}
		doc.OpenFDs, doc.RSSBytes, _ = telemetry.Process()
		if sink != nil {
			s := sink.Stats()
			doc.Exporter = exporterStatus{Kind: "otlp", Exported: s.Exported, Rejected: s.Rejected,
				Failures: s.Failures, InFlightBytes: s.InFlightBytes}
			doc.Exporter.Healthy, doc.Exporter.LastError = sink.Healthy()
			if lag, ok := sink.Lag(); ok {
				l := lag.Seconds()
				doc.Exporter.LagSeconds = &l
			}
		}
		for _, c := range st.Containers {
			cs := containerStatus{ContainerStatus: c}
			if !c.Newest.IsZero() && c.Newest.Year() > 1970 {
				l := time.Since(c.Newest).Seconds()
				cs.LagSeconds = &l
			}
			doc.Containers = append(doc.Containers, cs)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(doc)
	})
	return mux
}
