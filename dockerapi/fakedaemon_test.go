package dockerapi

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/pkg/stdcopy"

	"github.com/berthlog/berth/config"
)

// fakeAPIVersion is the API version the fake daemon reports and serves.
const fakeAPIVersion = "1.41"

// dockerTS is the fixed-width timestamp layout the daemon writes before every
// message with timestamps=1.
const dockerTS = "2006-01-02T15:04:05.000000000Z"

// seenRequest is one request the fake daemon received.
type seenRequest struct {
	Method string
	Path   string
	Query  map[string][]string
}

// fakeDaemon is a Docker Engine API on a unix socket in a temporary
// directory. It serves /_ping, the container list, inspect, logs and events of
// API version 1.41. Logs and events are scripted per test; a script can stall
// (hold the response open, sending nothing) until the test releases it or the
// client goes away.
type fakeDaemon struct {
	t    *testing.T
	sock string
	url  string // the daemon's address when it is not sock (tcp://...)
	srv  *http.Server

	served   sync.WaitGroup // the Serve goroutine
	handlers sync.WaitGroup // every running handler

	releaseOnce sync.Once
	release     chan struct{} // closed: every stall ends

	mu         sync.Mutex
	requests   []seenRequest
	methods    map[string]int
	containers map[string]map[string]any // id -> inspect answer (wire JSON)
	list       []map[string]any          // list answer (wire JSON)
	logs       func(lw *logWriter, r *http.Request)
	events     func(ew *eventWriter, r *http.Request)
	// inspectDelay holds every inspect answer back this long.
	inspectDelay time.Duration
	// libpod, when set, is the Libpod-Api-Version header of the ping
	// answer: the daemon is Podman.
	libpod string
	// images answer image inspects by ID; nimage counts them.
	images map[string]map[string]any
	nimage int
}

// shortSocketPath returns a socket path under t.TempDir(), or under a shorter
// temporary directory when the test's would pass the 108-byte limit of a unix
// socket address.
func shortSocketPath(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "d.sock")
	if len(p) < 100 {
		return p
	}
	dir, err := os.MkdirTemp("", "berth")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, "d.sock")
}

func newFakeDaemon(t *testing.T) *fakeDaemon {
	t.Helper()
	sock := shortSocketPath(t)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("listen on %s: %v", sock, err)
	}
	return startFakeDaemon(t, ln, sock)
}

// newPipeDaemon is the fake daemon on an in-memory network, for a test in a
// synctest bubble: a client reaches it through dialControl.
func newPipeDaemon(t *testing.T) (*fakeDaemon, *pipeListener) {
	t.Helper()
	ln := &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
	return startFakeDaemon(t, ln, "/fake/docker.sock"), ln
}

// startFakeDaemon serves the fake daemon on ln; sock is the socket path a
// client is given.
func startFakeDaemon(t *testing.T, ln net.Listener, sock string) *fakeDaemon {
	t.Helper()
	d := &fakeDaemon{
		t:          t,
		sock:       sock,
		release:    make(chan struct{}),
		methods:    map[string]int{},
		containers: map[string]map[string]any{},
		images:     map[string]map[string]any{},
	}
	mux := http.NewServeMux()
	v := "/v" + fakeAPIVersion
	mux.HandleFunc("/_ping", d.ping)
	mux.HandleFunc("GET "+v+"/containers/json", d.containerList)
	mux.HandleFunc("GET "+v+"/containers/{id}/json", d.containerInspect)
	mux.HandleFunc("GET "+v+"/containers/{id}/logs", d.containerLogs)
	mux.HandleFunc("GET "+v+"/images/{id}/json", d.imageInspect)
	mux.HandleFunc("GET "+v+"/events", d.eventsStream)
	d.srv = &http.Server{Handler: d.record(mux), ReadHeaderTimeout: 10 * time.Second}
	d.served.Add(1)
	go func() {
		defer d.served.Done()
		if err := d.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("fake daemon: %v", err)
		}
	}()
	t.Cleanup(d.stop)
	return d
}

// host is the daemon's address, for config.Docker.DockerHost.
func (d *fakeDaemon) host() string {
	if d.url != "" {
		return d.url
	}
	return "unix://" + d.sock
}

// stop releases every stall, closes the server and its connections and waits
// for the Serve goroutine and every handler.
func (d *fakeDaemon) stop() {
	d.releaseAll()
	_ = d.srv.Close()
	d.served.Wait()
	done := make(chan struct{})
	go func() { d.handlers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		d.t.Errorf("fake daemon: handlers still running 10s after stop")
	}
}

// releaseAll ends every stall.
func (d *fakeDaemon) releaseAll() { d.releaseOnce.Do(func() { close(d.release) }) }

// record counts every request before routing it.
func (d *fakeDaemon) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.handlers.Add(1)
		defer d.handlers.Done()
		d.mu.Lock()
		d.methods[r.Method]++
		d.requests = append(d.requests, seenRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query()})
		d.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

// seen returns a copy of the requests received so far.
func (d *fakeDaemon) seen() []seenRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]seenRequest(nil), d.requests...)
}

// methodCounts returns a copy of the number of requests per method.
func (d *fakeDaemon) methodCounts() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := make(map[string]int, len(d.methods))
	for k, v := range d.methods {
		m[k] = v
	}
	return m
}

// lastRequest returns the last request whose path ends with suffix.
func (d *fakeDaemon) lastRequest(suffix string) (seenRequest, bool) {
	reqs := d.seen()
	for i := len(reqs) - 1; i >= 0; i-- {
		if strings.HasSuffix(reqs[i].Path, suffix) {
			return reqs[i], true
		}
	}
	return seenRequest{}, false
}

func (d *fakeDaemon) setContainer(id string, inspect map[string]any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.containers[id] = inspect
}

func (d *fakeDaemon) setInspectDelay(delay time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inspectDelay = delay
}

func (d *fakeDaemon) setList(list []map[string]any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.list = list
}

func (d *fakeDaemon) setLogs(f func(lw *logWriter, r *http.Request)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.logs = f
}

func (d *fakeDaemon) setEvents(f func(ew *eventWriter, r *http.Request)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.events = f
}

func (d *fakeDaemon) ping(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("API-Version", fakeAPIVersion)
	w.Header().Set("OSType", "linux")
	d.mu.Lock()
	if d.libpod != "" {
		w.Header().Set("Libpod-Api-Version", d.libpod)
	}
	d.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if r.Method == http.MethodGet {
		_, _ = io.WriteString(w, "OK")
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func notFound(w http.ResponseWriter, id string) {
	writeJSON(w, http.StatusNotFound, map[string]string{"message": "No such container: " + id})
}

func (d *fakeDaemon) containerList(w http.ResponseWriter, _ *http.Request) {
	d.mu.Lock()
	list := d.list
	d.mu.Unlock()
	if list == nil {
		list = []map[string]any{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (d *fakeDaemon) setImage(id string, inspect map[string]any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.images[id] = inspect
}

func (d *fakeDaemon) imageInspects() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.nimage
}

func (d *fakeDaemon) imageInspect(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	d.mu.Lock()
	info, ok := d.images[id]
	d.nimage++
	d.mu.Unlock()
	if !ok {
		notFound(w, id)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (d *fakeDaemon) containerInspect(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	d.mu.Lock()
	info, ok := d.containers[id]
	delay := d.inspectDelay
	d.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if !ok {
		notFound(w, id)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (d *fakeDaemon) containerLogs(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	d.mu.Lock()
	_, ok := d.containers[id]
	script := d.logs
	d.mu.Unlock()
	if !ok {
		notFound(w, id)
		return
	}
	if script == nil {
		http.Error(w, "no logs script", http.StatusInternalServerError)
		return
	}
	lw := &logWriter{d: d, w: w, r: r, rc: http.NewResponseController(w)}
	lw.stdout = stdcopy.NewStdWriter(w, stdcopy.Stdout)
	lw.stderr = stdcopy.NewStdWriter(w, stdcopy.Stderr)
	script(lw, r)
}

func (d *fakeDaemon) eventsStream(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	script := d.events
	d.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	ew := &eventWriter{d: d, w: w, r: r, rc: http.NewResponseController(w)}
	ew.Flush()
	if script != nil {
		script(ew, r)
	}
}

// logWriter writes a logs response: stdcopy frames, each one message with
// its timestamp prefix, flushed at once. The status line and headers are sent
// by Start or by the first write; a script that stalls before either never
// sends them.
type logWriter struct {
	d              *fakeDaemon
	w              http.ResponseWriter
	r              *http.Request
	rc             *http.ResponseController
	stdout, stderr io.Writer
	started        bool
}

// Start sends the status line and headers, flushed.
func (lw *logWriter) Start() error {
	if lw.started {
		return nil
	}
	lw.started = true
	lw.w.Header().Set("Content-Type", "application/vnd.docker.multiplexed-stream")
	lw.w.WriteHeader(http.StatusOK)
	return lw.Flush()
}

// Frame writes one message on stream 1 (stdout) or 2 (stderr) and flushes.
// The message is "<ts> <text>", text as given (a line ends with "\n").
func (lw *logWriter) Frame(stream int, ts time.Time, text string) error {
	if err := lw.Start(); err != nil {
		return err
	}
	out := lw.stdout
	if stream == 2 {
		out = lw.stderr
	}
	if _, err := out.Write([]byte(ts.UTC().Format(dockerTS) + " " + text)); err != nil {
		return err
	}
	return lw.Flush()
}

// Raw writes bytes as they are (a TTY container's stream) and flushes.
func (lw *logWriter) Raw(b string) error {
	if err := lw.Start(); err != nil {
		return err
	}
	if _, err := io.WriteString(lw.w, b); err != nil {
		return err
	}
	return lw.Flush()
}

func (lw *logWriter) Flush() error { return lw.rc.Flush() }

// Stall holds the response open without writing until the test releases the
// daemon or the client goes away.
func (lw *logWriter) Stall() {
	select {
	case <-lw.d.release:
	case <-lw.r.Context().Done():
	}
}

// eventWriter writes an events response: one JSON message per line.
type eventWriter struct {
	d  *fakeDaemon
	w  http.ResponseWriter
	r  *http.Request
	rc *http.ResponseController
}

func (ew *eventWriter) Send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("marshal event: %w", err)
	}
	if _, err := ew.w.Write(append(b, '\n')); err != nil {
		return err
	}
	return ew.Flush()
}

func (ew *eventWriter) Flush() error { return ew.rc.Flush() }

// Stall keeps the stream open and silent.
func (ew *eventWriter) Stall() {
	select {
	case <-ew.d.release:
	case <-ew.r.Context().Done():
	}
}

// newTestClient returns a Client of the fake daemon, closed when the test
// ends. Zero durations in the sections get test defaults; the environment
// is empty (no TLS).
func newTestClient(t *testing.T, d *fakeDaemon, docker config.Docker, bursts config.Bursts) *Client {
	t.Helper()
	return newTestClientEnv(t, d, docker, bursts, noEnv)
}

// newTestClientEnv is newTestClient with the environment getenv.
func newTestClientEnv(t *testing.T, d *fakeDaemon, docker config.Docker, bursts config.Bursts, getenv func(string) string) *Client {
	t.Helper()
	docker.DockerHost = d.host()
	if docker.ControlTimeout == 0 {
		docker.ControlTimeout = 5 * time.Second
	}
	if docker.EventsIdleTimeout == 0 {
		docker.EventsIdleTimeout = 5 * time.Second
	}
	if bursts.IdleTimeout == 0 {
		bursts.IdleTimeout = 5 * time.Second
	}
	if bursts.MaxBurst == 0 {
		bursts.MaxBurst = 30 * time.Second
	}
	c, err := New(docker, bursts, getenv)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newTCPFakeDaemon is the fake daemon on a TCP port of 127.0.0.1, speaking
// TLS with conf (nil: plaintext).
func newTCPFakeDaemon(t *testing.T, conf *tls.Config) *fakeDaemon {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if conf != nil {
		ln = tls.NewListener(ln, conf)
	}
	d := startFakeDaemon(t, ln, "")
	d.url = "tcp://" + addr
	return d
}

// noEnv is an empty environment.
func noEnv(string) string { return "" }

// testCtx is a context that ends with the test, bounded so a hung test fails
// instead of hanging.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// pipeListener is an in-memory network: every dial is a net.Pipe whose other
// end Accept returns. Blocking on it is durable in a synctest bubble, where a
// socket's is not.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	dials atomic.Int64
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) dial(ctx context.Context) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		l.dials.Add(1)
		return client, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// dialControl makes c's control connections (its first transport, see New)
// in-memory ones to ln, wrapped in the control calls' deadline policy as New's
// dialer wraps a socket.
func dialControl(c *Client, ln *pipeListener) {
	policy := deadlinePolicy{idle: c.docker.ControlTimeout}
	c.transports[0].DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		conn, err := ln.dial(ctx)
		if err != nil {
			return nil, err
		}
		return newDeadlineConn(conn, policy), nil
	}
}
