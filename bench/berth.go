package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// berthProc is berth running as a subprocess.
type berthProc struct {
	cmd      *exec.Cmd
	dir      string
	httpAddr string
	http     *http.Client
	exited   chan struct{}
	waitErr  error
	started  time.Time
}

// berthStatus is the part of berth's /status the benchmark reads.
type berthStatus struct {
	Goroutines  int   `json:"goroutines"`
	OpenFDs     int   `json:"open_fds"`
	RSSBytes    int64 `json:"rss_bytes"`
	StreamsOpen int   `json:"streams_open"`
	Events      bool  `json:"events_connected"`
	Containers  []struct {
		ID    string `json:"id"`
		Name  string `json:"name"`
		State string `json:"state"`
		Lines int64  `json:"lines"`
	} `json:"containers"`
}

// startBerth starts bin with a config collecting only this run's containers
// whose names start with one of prefixes, plus the extra lines, stdout to
// /dev/null, and waits until its events stream is connected (/status).
func (e *env) startBerth(bin, name string, prefixes []string, extra ...string) (*berthProc, error) {
	dir, err := os.MkdirTemp(e.tmp, "berth-"+name+"-")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := []string{
		"docker_host: " + quote(e.docker.DaemonHost()),
		"state_dir: " + quote(filepath.Join(dir, "state")),
		"http_addr: " + quote(addr),
		"log_level: warn",
		"telemetry_otlp: false",
		"include:",
	}
	for _, p := range prefixes {
		cfg = append(cfg, "  - "+quote("name="+e.name(p)+"*"))
	}
	cfg = append(cfg, extra...)
	cfgPath := filepath.Join(dir, "berth.yaml")
	if err := os.WriteFile(cfgPath, []byte(strings.Join(cfg, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	stderr, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		return nil, err
	}
	defer stderr.Close()
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	b := &berthProc{dir: dir, httpAddr: addr, exited: make(chan struct{}),
		http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	b.cmd = exec.Command(bin, "--config", cfgPath)
	b.cmd.Stdout, b.cmd.Stderr = devnull, stderr
	b.cmd.Env = berthEnv()
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	b.started = time.Now()
	if err := b.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting berth: %w", err)
	}
	go func() { // owned: stop waits for it
		b.waitErr = b.cmd.Wait()
		close(b.exited)
	}()
	err = b.waitFor("berth's events stream to connect", 60*time.Second, func(st berthStatus) bool { return st.Events })
	if err != nil {
		b.stop()
		return nil, err
	}
	return b, nil
}

func (b *berthProc) pid() int { return b.cmd.Process.Pid }

// status reads /status.
func (b *berthProc) status() (berthStatus, error) {
	var st berthStatus
	resp, err := b.http.Get("http://" + b.httpAddr + "/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return st, fmt.Errorf("/status: %s: %s", resp.Status, body)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// waitFor polls /status every 100 ms until cond holds, for at most within.
func (b *berthProc) waitFor(what string, within time.Duration, cond func(berthStatus) bool) error {
	deadline := time.Now().Add(within)
	var last error
	for {
		select {
		case <-b.exited:
			return fmt.Errorf("berth exited (%v) while waiting for %s; its stderr: %s", b.waitErr, what, b.stderrTail())
		default:
		}
		st, err := b.status()
		if err == nil && cond(st) {
			return nil
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s (last /status error: %v); berth's stderr: %s", within, what, last, b.stderrTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lines sums the lines berth has delivered for the named containers.
func (st berthStatus) lines() int64 {
	var n int64
	for _, c := range st.Containers {
		n += c.Lines
	}
	return n
}

func (b *berthProc) stderrTail() string {
	data, _ := os.ReadFile(filepath.Join(b.dir, "stderr"))
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return string(data)
}

// stop ends berth with SIGTERM (SIGKILL after 30 s) and waits for it.
func (b *berthProc) stop() error {
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(30 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.exited
		return fmt.Errorf("berth (pid %d) did not stop within 30 s of SIGTERM", b.pid())
	}
	b.http.CloseIdleConnections()
	if b.waitErr != nil {
		return fmt.Errorf("berth (pid %d) ended with %v; its stderr: %s", b.pid(), b.waitErr, b.stderrTail())
	}
	return nil
}

// berthEnv is this environment without BERTH_* (berth reads those as its
// config, and refuses unknown keys such as BERTH_BENCH_LINES), DOCKER_* and
// OTEL_* variables: the config file is berth's whole config.
func berthEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "BERTH_") || strings.HasPrefix(kv, "OTEL_") || strings.HasPrefix(kv, "DOCKER_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
