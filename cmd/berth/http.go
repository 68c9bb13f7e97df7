package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync"
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
	EventsError     string            `json:"events_error,omitempty"`
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

// managerStatus is what the HTTP endpoints ask of the container manager
// (events.Manager).
type managerStatus interface {
	Connected() bool
	ConnectError() string
	Status(ctx context.Context) (events.Status, error)
}

// statusMaxAge is how old the /status a request gets may be: within it every
// request is answered from one snapshot, so that a flood of requests asks the
// manager at most once per statusMaxAge.
const statusMaxAge = 500 * time.Millisecond

// statusTimeout bounds one refresh of the snapshot (the manager answers
// between two events of its loop).
const statusTimeout = 2 * time.Second

// The HTTP server's bounds: a client that sends its request slowly, reads
// the answer slowly or keeps an idle connection open loses it.
const (
	httpReadHeaderTimeout = 5 * time.Second
	httpReadTimeout       = 10 * time.Second
	httpWriteTimeout      = 10 * time.Second
	httpIdleTimeout       = 60 * time.Second
	httpMaxHeaderBytes    = 16 << 10
)

// newHTTPServer is berth's HTTP server of handler, with read, write and idle
// timeouts.
func newHTTPServer(handler http.Handler) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
	}
}

// exposesBeyondHost reports whether listening on addr (http_addr) serves
// beyond this host: any address but a loopback one (127.0.0.0/8, ::1,
// localhost). An empty host (":9477") listens on every interface.
func exposesBeyondHost(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// statusSnapshot is the encoded /status, built at most once per maxAge
// whatever the number of requests: requests that arrive while it is being
// built wait for that build and share it.
type statusSnapshot struct {
	build  func(ctx context.Context) ([]byte, error)
	maxAge time.Duration
	now    func() time.Time

	mu    sync.Mutex // held while building, so that one build serves every waiter
	at    time.Time  // zero: never built
	body  []byte
	err   error
	built int // how many builds, for tests
}

// get returns the snapshot, building it anew if it is older than maxAge. The
// build is not bound to the request's context: a client that goes away does
// not fail the requests that share its build.
func (s *statusSnapshot) get() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.at.IsZero() && s.now().Sub(s.at) < s.maxAge {
		return s.body, s.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	s.body, s.err = s.build(ctx)
	s.built++
	s.at = s.now()
	return s.body, s.err
}

// newMux serves /healthz, /readyz, /status, and /metrics with metrics.
// /status is served from a snapshot at most statusMaxAge old.
func newMux(mgr managerStatus, metrics http.Handler, sink *export.OTLPSink, started time.Time) *http.ServeMux {
	snap := &statusSnapshot{
		build:  func(ctx context.Context) ([]byte, error) { return buildStatus(ctx, mgr, sink, started) },
		maxAge: statusMaxAge,
		now:    time.Now,
	}
	return newMuxWith(mgr, metrics, sink, snap)
}

// newMuxWith is newMux with the /status snapshot given.
func newMuxWith(mgr managerStatus, metrics http.Handler, sink *export.OTLPSink, snap *statusSnapshot) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !mgr.Connected() {
			why := mgr.ConnectError()
			if why == "" {
				why = "connecting (see berth's log)"
			}
			http.Error(w, "not ready: the Docker events stream is not connected: "+why, http.StatusServiceUnavailable)
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
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		body, err := snap.get()
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	return mux
}

// buildStatus asks the manager and the exporter for /status and encodes it.
func buildStatus(ctx context.Context, mgr managerStatus, sink *export.OTLPSink, started time.Time) ([]byte, error) {
	st, err := mgr.Status(ctx)
	if err != nil {
		return nil, err
	}
	doc := statusDoc{
		Version: version, UptimeSeconds: time.Since(started).Seconds(),
		Goroutines: runtime.NumGoroutine(), EventsConnected: st.Connected, EventsError: st.EventsError, StreamsOpen: st.Streams,
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
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(doc); err != nil {
		return nil, fmt.Errorf("encode /status: %w", err)
	}
	return b.Bytes(), nil
}
