package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthlog/berth/checkpoint"
	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/events"
	"github.com/berthlog/berth/telemetry"
)

// countingManager is a container manager whose Status counts its calls and,
// when gate is set, waits for it to close before answering.
type countingManager struct {
	calls atomic.Int64
	gate  chan struct{}
}

func (m *countingManager) Connected() bool { return true }

func (m *countingManager) ConnectError() string { return "" }

func (m *countingManager) Status(ctx context.Context) (events.Status, error) {
	m.calls.Add(1)
	if m.gate != nil {
		select {
		case <-m.gate:
		case <-ctx.Done():
			return events.Status{}, ctx.Err()
		}
	}
	return events.Status{Connected: true, Streams: 1, Containers: []events.ContainerStatus{
		{ID: "c0ffee", Name: "web", State: "attached", Lines: 3},
	}}, nil
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newTestStatusServer serves newMux's handlers with a /status snapshot on
// clock.
func newTestStatusServer(t *testing.T, mgr managerStatus, clock *fakeClock) *httptest.Server {
	t.Helper()
	started := clock.now()
	snap := &statusSnapshot{
		build:  func(ctx context.Context) ([]byte, error) { return buildStatus(ctx, mgr, nil, started) },
		maxAge: statusMaxAge,
		now:    clock.now,
	}
	srv := httptest.NewServer(newMuxWith(mgr, http.NotFoundHandler(), nil, snap))
	t.Cleanup(srv.Close)
	return srv
}

// getStatus GETs /status and returns its decoded top-level object.
func getStatus(t *testing.T, url string) map[string]json.RawMessage {
	t.Helper()
	resp, err := http.Get(url + "/status")
	if err != nil {
		t.Error(err)
		return nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/status: %s: %s", resp.Status, body)
		return nil
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Errorf("/status: %v: %s", err, body)
	}
	return doc
}

// TestStatusFloodAsksTheManagerOnce: however many requests come within
// statusMaxAge, the manager is asked once; once the snapshot is older, it is
// asked again. The JSON keeps every field `berth status` and e2e read.
func TestStatusFloodAsksTheManagerOnce(t *testing.T) {
	mgr := &countingManager{}
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	srv := newTestStatusServer(t, mgr, clock)

	const requests = 200
	var wg sync.WaitGroup
	for range requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			getStatus(t, srv.URL)
		}()
	}
	wg.Wait()
	if n := mgr.calls.Load(); n != 1 {
		t.Errorf("%d requests within %v asked the manager %d times, want once", requests, statusMaxAge, n)
	}

	clock.add(statusMaxAge)
	doc := getStatus(t, srv.URL)
	if n := mgr.calls.Load(); n != 2 {
		t.Errorf("a request after the snapshot aged %v asked the manager %d times in all, want 2", statusMaxAge, n)
	}
	var keys []string
	for k := range doc {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"containers", "events_connected", "exporter", "goroutines", "open_fds", "rss_bytes", "streams_open", "uptime_seconds", "version"}
	if !slices.Equal(keys, want) {
		t.Errorf("/status has the fields %v, want %v", keys, want)
	}
	var containers []map[string]any
	if err := json.Unmarshal(doc["containers"], &containers); err != nil || len(containers) != 1 || containers[0]["name"] != "web" {
		t.Errorf("/status containers = %s (%v), want the manager's one container", doc["containers"], err)
	}
}

// TestStatusRequestsShareAnOngoingBuild: requests that arrive while the
// manager is slow to answer wait for that one call instead of each asking.
func TestStatusRequestsShareAnOngoingBuild(t *testing.T) {
	mgr := &countingManager{gate: make(chan struct{})}
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	srv := newTestStatusServer(t, mgr, clock)

	const requests = 50
	var wg sync.WaitGroup
	for range requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			getStatus(t, srv.URL)
		}()
	}
	waitFor(t, 5*time.Second, "the first request to reach the manager", func() bool { return mgr.calls.Load() > 0 })
	close(mgr.gate)
	wg.Wait()
	if n := mgr.calls.Load(); n != 1 {
		t.Errorf("%d requests during one slow answer asked the manager %d times, want once", requests, n)
	}
}

// TestHTTPServerHasTimeouts: a client that sends slowly, reads slowly or
// idles cannot hold a connection (and its goroutine) for ever.
func TestHTTPServerHasTimeouts(t *testing.T) {
	srv := newHTTPServer(http.NotFoundHandler())
	for name, d := range map[string]time.Duration{
		"ReadHeaderTimeout": srv.ReadHeaderTimeout,
		"ReadTimeout":       srv.ReadTimeout,
		"WriteTimeout":      srv.WriteTimeout,
		"IdleTimeout":       srv.IdleTimeout,
	} {
		if d <= 0 || d > time.Minute {
			t.Errorf("%s = %v, want a bound of at most a minute", name, d)
		}
	}
	if srv.WriteTimeout <= statusTimeout {
		t.Errorf("WriteTimeout %v must leave room for a /status build (up to %v)", srv.WriteTimeout, statusTimeout)
	}
	if srv.MaxHeaderBytes <= 0 || srv.MaxHeaderBytes > 64<<10 {
		t.Errorf("MaxHeaderBytes = %d, want a small bound", srv.MaxHeaderBytes)
	}
}

// TestExposesBeyondHost: only loopback addresses keep /status on this host.
func TestExposesBeyondHost(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9477": false,
		"127.0.0.2:9477": false,
		"[::1]:9477":     false,
		"localhost:9477": false,
		"0.0.0.0:9477":   true,
		":9477":          true,
		"[::]:9477":      true,
		"10.0.0.5:9477":  true,
		"berth.lan:9477": true,
	} {
		if got := exposesBeyondHost(addr); got != want {
			t.Errorf("exposesBeyondHost(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestOTLPSetupLogShowsNoSecret: the log line that says where records go
// shows an OTEL_EXPORTER_OTLP_ENDPOINT without its credentials, and never a
// header's value.
func TestOTLPSetupLogShowsNoSecret(t *testing.T) {
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	cfg.OTLP.Headers = map[string]string{"authorization": "Bearer hdr-s3cret"}
	env := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://alice:pw-s3cret@127.0.0.1:1", "OTEL_EXPORTER_OTLP_HEADERS=x-key=env-s3cret"}
	var logged bytes.Buffer
	set := telemetry.NopSettings()
	set.Logger = newLogger("debug", &logged)
	store, err := checkpoint.Open(cfg.Checkpoints, set)
	if err != nil {
		t.Fatal(err)
	}
	_, otlpSink, err := newSink(cfg, config.Getenv(env), store, io.Discard, set)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = otlpSink.Shutdown(ctx)
	out := logged.String()
	if !strings.Contains(out, "exporting over OTLP") || !strings.Contains(out, "127.0.0.1:1") {
		t.Fatalf("no endpoint in the log:\n%s", out)
	}
	if strings.Contains(out, "s3cret") {
		t.Errorf("the log shows a secret:\n%s", out)
	}
}
