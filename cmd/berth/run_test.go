package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/pkg/stdcopy"
)

// syncBuffer is a bytes.Buffer that run's goroutines may write while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// miniDaemon is the smallest Docker API that lets berth run: one running
// container whose logs response sends three lines and then stalls, and an
// events stream that stays silent.
type miniDaemon struct {
	sock    string
	srv     *http.Server
	served  sync.WaitGroup
	running sync.WaitGroup
	base    time.Time
	mu      sync.Mutex
	logsReq int
}

func startMiniDaemon(t *testing.T) *miniDaemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "berth")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	d := &miniDaemon{sock: filepath.Join(dir, "d.sock"), base: time.Date(2024, 5, 1, 10, 20, 30, 0, time.UTC)}
	ln, err := net.Listen("unix", d.sock)
	if err != nil {
		t.Fatal(err)
	}
	wait := func(r *http.Request) {
		<-r.Context().Done()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/_ping", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("API-Version", "1.41")
	})
	mux.HandleFunc("GET /v1.41/containers/json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `[{"Id":"c0ffee","Names":["/web"],"State":"running"}]`)
	})
	mux.HandleFunc("GET /v1.41/containers/c0ffee/json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"Id":"c0ffee","Name":"/web","Config":{"Tty":false,"Image":"app:1","Labels":{}},"State":{"Running":true}}`)
	})
	mux.HandleFunc("GET /v1.41/containers/c0ffee/logs", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.logsReq++
		d.mu.Unlock()
		w.WriteHeader(http.StatusOK)
		out := stdcopy.NewStdWriter(w, stdcopy.Stdout)
		for i := range 3 {
			ts := d.base.Add(time.Duration(i) * time.Millisecond).Format("2006-01-02T15:04:05.000000000Z")
			_, _ = fmt.Fprintf(out, "%s hello %d\n", ts, i)
		}
		_ = http.NewResponseController(w).Flush()
		wait(r)
	})
	mux.HandleFunc("GET /v1.41/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_ = http.NewResponseController(w).Flush()
		wait(r)
	})
	d.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d.running.Add(1)
			defer d.running.Done()
			mux.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	d.served.Add(1)
	go func() {
		defer d.served.Done()
		_ = d.srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = d.srv.Close()
		d.served.Wait()
		d.running.Wait()
	})
	return d
}

func (d *miniDaemon) logsRequests() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.logsReq
}

// waitFor polls cond until it holds or the limit passes.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRunCollectsAndStopsOnSIGTERM runs berth against a fake daemon: the
// container's lines reach stdout once each although berth re-attaches after
// every idle end, the health endpoints answer, and SIGTERM stops it with exit
// 0 and no goroutine left (TestMain checks).
func TestRunCollectsAndStopsOnSIGTERM(t *testing.T) {
	// dockerapi takes TLS settings from the process environment.
	t.Setenv("DOCKER_CERT_PATH", "")
	t.Setenv("DOCKER_TLS_VERIFY", "")
	d := startMiniDaemon(t)
	cfg := writeConfig(t, fmt.Sprintf(`
docker_host: unix://%s
state_dir: %s
http_addr: 127.0.0.1:0
idle_timeout: 200ms
max_burst: 1m
events_idle_timeout: 1s
initial_position: beginning
shutdown_timeout: 5s
log_level: debug
`, d.sock, t.TempDir()))

	var stdout, stderr syncBuffer
	var code int
	exited := make(chan struct{}) // closed when run returned; code is then set
	go func() {
		defer close(exited)
		code = run([]string{"--config", cfg}, cleanEnv, &stdout, &stderr)
	}()
	defer func() {
		select {
		case <-exited:
		default:
			// Do not leave berth running if the test fails early. It is
			// still running, so its handler takes the signal.
			_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
			<-exited
		}
	}()

	// berth logs "berth started" once its signal handler is installed.
	waitFor(t, 10*time.Second, "berth to start", func() bool {
		select {
		case <-exited:
			t.Fatalf("berth exited %d before starting; stderr:\n%s", code, stderr.String())
		default:
		}
		return strings.Contains(stderr.String(), "berth started")
	})
	m := regexp.MustCompile(`msg="serving health endpoints" addr=(\S+)`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no listen address in the logs:\n%s", stderr.String())
	}
	addr := m[1]

	// Three lines, then at least two re-attaches that repeat them.
	waitFor(t, 10*time.Second, "the lines and two re-attaches", func() bool {
		return strings.Count(stdout.String(), "\n") >= 3 && d.logsRequests() >= 3
	})
	waitFor(t, 10*time.Second, "/readyz", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("/healthz: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %s", resp.Status)
	}

	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if code != exitOK {
			t.Errorf("berth exited %d after SIGTERM, want 0; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("berth did not stop within 10s of SIGTERM; stderr:\n%s", stderr.String())
	}

	var bodies []string
	sc := bufio.NewScanner(strings.NewReader(stdout.String()))
	for sc.Scan() {
		var rec struct {
			Body     string         `json:"body"`
			Resource map[string]any `json:"resource"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("stdout line %q: %v", sc.Text(), err)
		}
		if rec.Resource["container.name"] != "web" {
			t.Errorf("record of container %q, want web", rec.Resource["container.name"])
		}
		bodies = append(bodies, rec.Body)
	}
	want := []string{"hello 0", "hello 1", "hello 2"}
	if strings.Join(bodies, "|") != strings.Join(want, "|") {
		t.Errorf("stdout bodies %q, want %q once each (after %d logs requests)", bodies, want, d.logsRequests())
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		t.Error(sc.Err())
	}
}
