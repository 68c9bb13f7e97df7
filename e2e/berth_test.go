//go:build e2e

package e2e

import (
	"bytes"
	"encoding/base64"
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
	"testing"
	"time"
)

// BerthConfig is the YAML config a test gives berth. Zero fields are left
// out (berth's defaults apply); state_dir and http_addr are always set.
type BerthConfig struct {
	DockerHost string // default: the suite's daemon
	// NoDockerHost leaves docker_host unset: DOCKER_HOST (berthProc.Env)
	// applies, else the local socket.
	NoDockerHost bool
	IdleTimeout  string
	// QuietIdleTimeout: default IdleTimeout when that is set (the tests of
	// idle ends and frozen streams see every burst end at idle_timeout),
	// else berth's default.
	QuietIdleTimeout string
	MaxBurst         string
	MaxLineBytes     int
	InitialPosition  string
	ReattachTail     int
	ShutdownTimeout  string
	LogLevel         string // default $BERTH_E2E_LOG_LEVEL, else info
	Extra            []string
}

func (c BerthConfig) yaml(stateDir, httpAddr string) string {
	var b strings.Builder
	kv := func(k, v string) { fmt.Fprintf(&b, "%s: %s\n", k, v) }
	host := c.DockerHost
	if host == "" {
		host = "unix://" + suite.sock
	}
	if !c.NoDockerHost {
		kv("docker_host", quote(host))
	}
	kv("state_dir", quote(stateDir))
	kv("http_addr", quote(httpAddr))
	if c.IdleTimeout != "" {
		kv("idle_timeout", quote(c.IdleTimeout))
	}
	switch {
	case c.QuietIdleTimeout != "":
		kv("quiet_idle_timeout", quote(c.QuietIdleTimeout))
	case c.IdleTimeout != "":
		kv("quiet_idle_timeout", quote(c.IdleTimeout))
	}
	if c.MaxBurst != "" {
		kv("max_burst", quote(c.MaxBurst))
	}
	if c.MaxLineBytes != 0 {
		kv("max_line_bytes", fmt.Sprint(c.MaxLineBytes))
	}
	if c.InitialPosition != "" {
		kv("initial_position", c.InitialPosition)
	}
	if c.ReattachTail != 0 {
		kv("reattach_tail", fmt.Sprint(c.ReattachTail))
	}
	if c.ShutdownTimeout != "" {
		kv("shutdown_timeout", quote(c.ShutdownTimeout))
	}
	lvl := c.LogLevel
	if lvl == "" {
		lvl = os.Getenv("BERTH_E2E_LOG_LEVEL")
	}
	if lvl == "" {
		lvl = "info"
	}
	kv("log_level", lvl)
	for _, l := range c.Extra {
		b.WriteString(l + "\n")
	}
	return b.String()
}

// berthEnv is the test process's environment without BERTH_* variables
// (berth reads BERTH_* as config keys and refuses unknown ones, such as the
// suite's own BERTH_E2E*) and without OTEL_EXPORTER_OTLP_* (records go to
// stdout).
func berthEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "BERTH_") || strings.HasPrefix(kv, "OTEL_EXPORTER_OTLP_") || strings.HasPrefix(kv, "DOCKER_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func quote(s string) string { q, _ := json.Marshal(s); return string(q) }

// Berth is one berth process started by a test.
type Berth struct {
	dir        string
	cfgPath    string
	stdoutPath string
	stderrPath string
	stateDir   string
	httpAddr   string

	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	stopped bool

	out  *Output
	http *http.Client
}

// testDir returns a directory for the test's files under the run's scratch
// directory (kept with BERTH_E2E_KEEP=1).
func testDir(t *testing.T) string {
	d := filepath.Join(suite.tmp, nameRe.ReplaceAllString(strings.ToLower(t.Name()), "-"))
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// startBerth builds berth (once), writes cfg, starts berth with stdout and
// stderr in files, and waits until /healthz answers 200. Cleanup stops it.
func startBerth(t *testing.T, cfg BerthConfig) *Berth {
	t.Helper()
	return startBerthProc(t, cfg, berthProc{})
}

// berthProc holds what startBerthProc needs beyond the config file: the
// binary, the environment and the directories. Its zero value is
// startBerth's choice.
type berthProc struct {
	// Bin is the berth binary; empty: berthBinary(t) (-race with -race).
	Bin string
	// Env is added to berth's environment (berthEnv).
	Env []string
	// Dir holds berth's config, stdout and stderr; empty: the test's
	// directory (testDir).
	Dir string
	// StateDir is berth's state_dir; empty: Dir/state, created here. A
	// directory given here is not created: berth creates it (0700).
	StateDir string
	// Credential, if set, runs berth as that user (the tests run as root).
	Credential *syscall.Credential
}

// startBerthProc is startBerth with the binary, environment and directories
// of p: it writes cfg, starts berth with stdout and stderr in files under
// p.Dir, and waits until /healthz answers 200. Cleanup stops it (SIGTERM,
// exit 0 required) unless the test did.
func startBerthProc(t *testing.T, cfg BerthConfig, p berthProc) *Berth {
	t.Helper()
	bin := p.Bin
	if bin == "" {
		bin = berthBinary(t)
	}
	dir := p.Dir
	if dir == "" {
		dir = testDir(t)
	}
	b := &Berth{
		dir:        dir,
		cfgPath:    filepath.Join(dir, "berth.yaml"),
		stdoutPath: filepath.Join(dir, "berth.stdout"),
		stderrPath: filepath.Join(dir, "berth.stderr"),
		stateDir:   p.StateDir,
		httpAddr:   freePort(t),
		exited:     make(chan struct{}),
		http:       &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	}
	if b.stateDir == "" {
		b.stateDir = filepath.Join(dir, "state")
		if err := os.MkdirAll(b.stateDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	yaml := cfg.yaml(b.stateDir, b.httpAddr)
	if err := os.WriteFile(b.cfgPath, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, err := os.Create(b.stdoutPath)
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := os.Create(b.stderrPath)
	if err != nil {
		t.Fatal(err)
	}
	b.cmd = exec.Command(bin, "--config", b.cfgPath)
	b.cmd.Dir = dir
	b.cmd.Stdout, b.cmd.Stderr = stdout, stderr
	b.cmd.Env = append(berthEnv(), p.Env...)
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: p.Credential}
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("starting berth: %v", err)
	}
	_ = stdout.Close()
	_ = stderr.Close()
	go func() { // owned: ends when the process does; stop/sigkill/cleanup wait for it
		b.waitErr = b.cmd.Wait()
		close(b.exited)
	}()
	b.out = newOutput(b.stdoutPath)
	t.Cleanup(func() {
		if !b.stopped {
			b.stop(t)
		}
		b.http.CloseIdleConnections()
		b.out.close()
		if t.Failed() {
			keep := "removed at the end of the run; BERTH_E2E_KEEP=1 keeps them"
			if os.Getenv("BERTH_E2E_KEEP") != "" {
				keep = "kept"
			}
			t.Logf("berth pid %d: config, stdout and stderr are in %s (%s)\nberth stderr (tail):\n%s", b.cmd.Process.Pid, dir, keep, b.stderrTail(60))
		}
	})
	env := ""
	if len(p.Env) > 0 {
		env = fmt.Sprintf(", env %q", p.Env)
	}
	t.Logf("berth pid %d (%s), http %s%s, config:\n%s", b.cmd.Process.Pid, filepath.Base(bin), b.httpAddr, env, yaml)

	waitFor(t, "berth's /healthz to answer 200", 30*time.Second, func() (bool, string) {
		select {
		case <-b.exited:
			t.Fatalf("berth exited at start: %v\nstderr:\n%s", b.waitErr, b.stderrTail(40))
		default:
		}
		resp, err := b.http.Get("http://" + b.httpAddr + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})
	return b
}

// waitReady proves berth follows new containers: it starts a canary that
// writes a line every 50 ms and waits for one of its records, then removes
// it. Containers a test starts afterwards are "started after berth".
func (b *Berth) waitReady(t *testing.T) {
	t.Helper()
	c := runContainer(t, ContainerSpec{Name: uniqueName(t, "canary"), Args: []string{"-n", "0", "-rate", "20"}})
	waitFor(t, "a record of the canary container (berth following new containers)", 30*time.Second, func() (bool, string) {
		b.poll(t)
		n := len(b.out.records(c.Name))
		return n > 0, fmt.Sprintf("%d canary records, %d records in all", n, len(b.out.recs))
	})
	c.remove(t)
}

func (b *Berth) poll(t *testing.T) {
	t.Helper()
	if err := b.out.poll(); err != nil {
		t.Fatalf("reading berth's stdout: %v", err)
	}
}

// waitRecords polls berth's stdout until container name has at least n
// records.
func (b *Berth) waitRecords(t *testing.T, name string, n int, timeout time.Duration) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d records of %s", n, name), timeout, func() (bool, string) {
		b.poll(t)
		got := len(b.out.records(name))
		b.checkAlive(t)
		return got >= n, fmt.Sprintf("%d records", got)
	})
}

func (b *Berth) checkAlive(t *testing.T) {
	t.Helper()
	select {
	case <-b.exited:
		t.Fatalf("berth exited unexpectedly: %v\nstderr:\n%s", b.waitErr, b.stderrTail(40))
	default:
	}
}

// stop sends SIGTERM, waits for berth to exit (bounded) and requires exit
// status 0; then it reads the rest of stdout and requires every line to be a
// JSON record.
func (b *Berth) stop(t *testing.T) {
	t.Helper()
	if b.stopped {
		return
	}
	b.stopped = true
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	start := time.Now()
	select {
	case <-b.exited:
	case <-time.After(30 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.exited
		t.Errorf("berth did not exit within 30s of SIGTERM (killed)\nstderr:\n%s", b.stderrTail(40))
		return
	}
	if b.waitErr != nil {
		t.Errorf("berth exited with %v after SIGTERM (want status 0)\nstderr:\n%s", b.waitErr, b.stderrTail(60))
	} else {
		t.Logf("berth exited 0, %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	}
	if err := b.out.poll(); err != nil {
		t.Errorf("reading berth's stdout: %v", err)
	}
	if len(b.out.pending) > 0 {
		t.Errorf("berth's stdout ends with an unterminated line: %.200q", b.out.pending)
	}
	if b.out.badCount > 0 {
		t.Errorf("berth's stdout has %d lines that are not JSON records, e.g. %q", b.out.badCount, b.out.bad)
	}
	if stderr, _ := os.ReadFile(b.stderrPath); bytes.Contains(stderr, []byte("DATA RACE")) {
		t.Errorf("berth (built with -race) reported a data race:\n%s", b.stderrTail(80))
	}
}

func (b *Berth) stderrTail(n int) string {
	data, err := os.ReadFile(b.stderrPath)
	if err != nil {
		return err.Error()
	}
	ls := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	for i, l := range ls {
		if len(l) > 600 {
			ls[i] = l[:600] + "..."
		}
	}
	return strings.Join(ls, "\n")
}

// status returns berth's GET /status document.
func (b *Berth) status() (map[string]any, error) {
	resp, err := b.http.Get("http://" + b.httpAddr + "/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET /status: %s: %s", resp.Status, body)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("GET /status: %v: %.300s", err, body)
	}
	return m, nil
}

// statusOf returns the entry of c in /status "containers" (matched by id
// prefix or name), as JSON.
func (b *Berth) statusOf(t *testing.T, c *Ctr) string {
	t.Helper()
	m, err := b.status()
	if err != nil {
		return err.Error()
	}
	list, _ := m["containers"].([]any)
	for _, e := range list {
		em, _ := e.(map[string]any)
		id, _ := em["id"].(string)
		name, _ := em["name"].(string)
		if (id != "" && strings.HasPrefix(c.ID, id)) || name == c.Name {
			j, _ := json.Marshal(em)
			return string(j)
		}
	}
	return fmt.Sprintf("not listed (%d containers listed)", len(list))
}

// goroutines returns the "goroutines" figure of /status.
func (b *Berth) goroutines(t *testing.T) int {
	t.Helper()
	m, err := b.status()
	if err != nil {
		t.Fatalf("berth /status: %v", err)
	}
	g, ok := m["goroutines"].(float64)
	if !ok {
		t.Fatalf("berth /status has no numeric \"goroutines\": %v", m)
	}
	return int(g)
}

// stableGoroutines samples /status until three samples 200 ms apart agree
// within 1, and returns the last; it fails after timeout.
func (b *Berth) stableGoroutines(t *testing.T, timeout time.Duration) int {
	t.Helper()
	var samples []int
	waitFor(t, "a stable goroutine count in /status", timeout, func() (bool, string) {
		samples = append(samples, b.goroutines(t))
		if len(samples) > 3 {
			samples = samples[len(samples)-3:]
		}
		time.Sleep(150 * time.Millisecond)
		if len(samples) < 3 {
			return false, fmt.Sprint(samples)
		}
		lo, hi := samples[0], samples[0]
		for _, s := range samples {
			lo, hi = min(lo, s), max(hi, s)
		}
		return hi-lo <= 1, fmt.Sprint(samples)
	})
	return samples[len(samples)-1]
}

// Record is one JSON line of berth's stdout.
type Record struct {
	Timestamp         string         `json:"timestamp"`
	ObservedTimestamp string         `json:"observed_timestamp"`
	Body              string         `json:"body"`
	SeverityNumber    int            `json:"severity_number"`
	SeverityText      string         `json:"severity_text"`
	Attributes        map[string]any `json:"attributes"`
	Resource          map[string]any `json:"resource"`
	Line              int            `json:"-"` // 1-based line number in stdout
}

func (r Record) attr(k string) any { return r.Attributes[k] }

func (r Record) res(k string) string { s, _ := r.Resource[k].(string); return s }

// Stream is log.iostream.
func (r Record) Stream() string { s, _ := r.attr("log.iostream").(string); return s }

// Truncated is log.truncated.
func (r Record) Truncated() bool { b, _ := r.attr("log.truncated").(bool); return b }

// Base64 tells whether the body is base64 (log.body.encoding).
func (r Record) Base64() bool { s, _ := r.attr("log.body.encoding").(string); return s == "base64" }

// BodyBytes is the line's exact bytes: the body, base64-decoded if marked.
func (r Record) BodyBytes() ([]byte, error) {
	if r.Base64() {
		return base64.StdEncoding.DecodeString(r.Body)
	}
	return []byte(r.Body), nil
}

// Output reads berth's stdout file incrementally; no goroutine.
type Output struct {
	recordIndex // the records read, in stdout order

	path     string
	f        *os.File
	buf      []byte
	pending  []byte
	lineNo   int
	bad      []string
	badCount int
}

func newOutput(path string) *Output { return &Output{path: path} }

// recordIndex holds records in arrival order (recs), indexed by
// container.name. Its zero value is empty and ready for use.
type recordIndex struct {
	recs   []Record
	byName map[string][]int
}

// put appends r to the records.
func (x *recordIndex) put(r Record) {
	if x.byName == nil {
		x.byName = map[string][]int{}
	}
	x.recs = append(x.recs, r)
	name := r.res("container.name")
	x.byName[name] = append(x.byName[name], len(x.recs)-1)
}

// records returns the records of the container name, in arrival order.
func (x *recordIndex) records(name string) []Record {
	idx := x.byName[name]
	out := make([]Record, len(idx))
	for i, j := range idx {
		out[i] = x.recs[j]
	}
	return out
}

// count is the number of records of the container name.
func (x *recordIndex) count(name string) int { return len(x.byName[name]) }

func (o *Output) close() {
	if o.f != nil {
		_ = o.f.Close()
	}
}

// poll reads what berth wrote since the last poll and indexes the complete
// lines.
func (o *Output) poll() error {
	if o.f == nil {
		f, err := os.Open(o.path)
		if err != nil {
			return err
		}
		o.f = f
	}
	if o.buf == nil {
		o.buf = make([]byte, 1<<20)
	}
	buf := o.buf
	for {
		n, err := o.f.Read(buf)
		if n > 0 {
			o.pending = append(o.pending, buf[:n]...)
		}
		if err == io.EOF || n == 0 {
			break
		}
		if err != nil {
			return err
		}
	}
	data := o.pending
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		o.add(data[:i])
		data = data[i+1:]
	}
	o.pending = append(o.pending[:0], data...)
	return nil
}

func (o *Output) add(line []byte) {
	o.lineNo++
	var r Record
	if err := json.Unmarshal(line, &r); err != nil || r.Resource == nil || r.Attributes == nil {
		o.badCount++
		if len(o.bad) < 3 {
			o.bad = append(o.bad, fmt.Sprintf("line %d: %.200s", o.lineNo, line))
		}
		return
	}
	r.Line = o.lineNo
	o.put(r)
}
