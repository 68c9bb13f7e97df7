// Package otelcolrun runs a real OpenTelemetry Collector as a child process
// for berth's e2e tests, and reads what it received.
//
// The collector is the nested module e2e/otelcol (its own go.mod, the
// collector modules pinned at one release). Build compiles it with `go build`
// run in that directory, so berth's main module never imports the collector;
// the binary is cached under
// ${XDG_CACHE_HOME:-$HOME/.cache}/berth-e2e/otelcol-<hash>, the hash covering
// the nested module's go.mod, go.sum and Go files, the Go version and the
// platform. A cold build takes minutes; later runs reuse the binary.
//
// Start writes a config (OTLP gRPC and HTTP receivers on free 127.0.0.1
// ports; a file exporter writing OTLP/JSON, one document per line; logs,
// traces and metrics pipelines; no telemetry port) and starts the collector,
// returning once both ports accept connections. Stop ends it by PID: SIGTERM,
// then SIGKILL after a bound. ReadFile and Collector.Records read the file
// exporter's output back as flat Records.
//
// Environment:
//
//	BERTH_OTELCOL_BIN  a prebuilt collector binary: Build returns it as is
//	BERTH_OTELCOL_SRC  the e2e/otelcol directory, if it cannot be found
package otelcolrun

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berthlog/berth/e2e/internal/logrecord"
)

// Build returns the path of the collector binary, building it first if the
// cache does not hold one for the current sources. Concurrent callers, in
// this process or others, share one build. ctx bounds the build.
func Build(ctx context.Context) (string, error) {
	if bin := os.Getenv("BERTH_OTELCOL_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("otelcolrun: BERTH_OTELCOL_BIN: %w", err)
		}
		return bin, nil
	}
	src, err := SourceDir()
	if err != nil {
		return "", err
	}
	goBin, err := goTool()
	if err != nil {
		return "", err
	}
	key, err := sourceHash(ctx, src, goBin)
	if err != nil {
		return "", err
	}
	cache, err := cacheRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "berth-e2e", "otelcol-"+key[:16])
	bin := filepath.Join(dir, "otelcol")

	buildMu.Lock()
	defer buildMu.Unlock()
	if isExecutable(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("otelcolrun: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, "lock"))
	if err != nil {
		return "", fmt.Errorf("otelcolrun: lock %s: %w", dir, err)
	}
	defer unlock()
	if isExecutable(bin) { // another process built it while we waited
		return bin, nil
	}

	tmp := fmt.Sprintf("%s.tmp%d", bin, os.Getpid())
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-buildvcs=false", "-o", tmp, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("otelcolrun: go build in %s: %w\n%s", src, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("otelcolrun: %w", err)
	}
	return bin, nil
}

var buildMu sync.Mutex

// SourceDir finds the nested collector module, e2e/otelcol: BERTH_OTELCOL_SRC,
// else next to this package's source, else above the working directory.
func SourceDir() (string, error) {
	if d := os.Getenv("BERTH_OTELCOL_SRC"); d != "" {
		return d, nil
	}
	ok := func(d string) bool {
		_, err := os.Stat(filepath.Join(d, "go.mod"))
		return err == nil
	}
	if _, file, _, found := runtime.Caller(0); found && filepath.IsAbs(file) {
		if d := filepath.Join(filepath.Dir(file), "..", "..", "otelcol"); ok(d) {
			return filepath.Clean(d), nil
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("otelcolrun: %w", err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if c := filepath.Join(d, "e2e", "otelcol"); ok(c) {
			return c, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("otelcolrun: e2e/otelcol not found; set BERTH_OTELCOL_SRC")
		}
	}
}

func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if isExecutable(p) {
		return p, nil
	}
	return "", errors.New("otelcolrun: no go command in PATH or GOROOT")
}

func cacheRoot() (string, error) {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("otelcolrun: no cache directory: %w", err)
	}
	return filepath.Join(home, ".cache"), nil
}

// sourceHash hashes go.mod, go.sum and the Go files of src, the go command's
// version and the target platform.
func sourceHash(ctx context.Context, src, goBin string) (string, error) {
	h := sha256.New()
	names, err := filepath.Glob(filepath.Join(src, "*.go"))
	if err != nil {
		return "", err
	}
	names = append(names, filepath.Join(src, "go.mod"), filepath.Join(src, "go.sum"))
	sort.Strings(names)
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return "", fmt.Errorf("otelcolrun: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(n), len(b))
		h.Write(b)
	}
	v, err := exec.CommandContext(ctx, goBin, "env", "GOVERSION", "GOOS", "GOARCH").Output()
	if err != nil {
		return "", fmt.Errorf("otelcolrun: go env: %w", err)
	}
	h.Write(v)
	return hex.EncodeToString(h.Sum(nil)), nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// Options configure Start.
type Options struct {
	// Dir receives the config, the exporter's output and the collector's log.
	// Required; t.TempDir() is a good one.
	Dir string
	// Binary is the collector to run; empty means Build(ctx).
	Binary string
	// Batch puts the batch processor in every pipeline.
	Batch bool
	// Debug adds the debug exporter (verbosity basic) to every pipeline; its
	// output goes to the log.
	Debug bool
	// ReadyTimeout bounds the wait for both ports; default 30 s.
	ReadyTimeout time.Duration
}

// Collector is a running collector process.
type Collector struct {
	GRPCAddr   string // "127.0.0.1:port" of the OTLP gRPC receiver
	HTTPAddr   string // "127.0.0.1:port" of the OTLP HTTP receiver
	ConfigPath string
	OutputPath string // the file exporter's output, OTLP/JSON lines
	LogPath    string // the collector's stdout and stderr

	cmd     *exec.Cmd
	logFile *os.File
	exited  chan struct{} // closed when Wait has returned
	waitErr error         // Wait's result, set before exited is closed

	stopOnce sync.Once
	stopErr  error
}

// GRPCEndpoint is "http://127.0.0.1:port" of the gRPC receiver, for
// OTEL_EXPORTER_OTLP_ENDPOINT with protocol grpc.
func (c *Collector) GRPCEndpoint() string { return "http://" + c.GRPCAddr }

// HTTPEndpoint is "http://127.0.0.1:port" of the HTTP receiver, for
// OTEL_EXPORTER_OTLP_ENDPOINT with protocol http/protobuf.
func (c *Collector) HTTPEndpoint() string { return "http://" + c.HTTPAddr }

// PID is the collector's process id.
func (c *Collector) PID() int { return c.cmd.Process.Pid }

// Start builds the collector if needed (see Build), writes its config and
// starts it, and returns once both receivers accept connections. Call Stop
// when done. ctx bounds the build and the start; it does not end the process.
func Start(ctx context.Context, opt Options) (*Collector, error) {
	if opt.Dir == "" {
		return nil, errors.New("otelcolrun: Options.Dir is required")
	}
	bin := opt.Binary
	if bin == "" {
		var err error
		if bin, err = Build(ctx); err != nil {
			return nil, err
		}
	}
	// The ports are picked free and released before the collector binds
	// them; if another process takes one meanwhile, try again.
	var lastErr error
	for attempt := range 3 {
		c, err := start(ctx, bin, opt, attempt)
		if err == nil {
			return c, nil
		}
		lastErr = err
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	return nil, lastErr
}

var errAddrInUse = errors.New("address already in use")

func start(ctx context.Context, bin string, opt Options, attempt int) (*Collector, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	suffix := ""
	if attempt > 0 {
		suffix = fmt.Sprintf(".%d", attempt)
	}
	c := &Collector{
		GRPCAddr:   fmt.Sprintf("127.0.0.1:%d", ports[0]),
		HTTPAddr:   fmt.Sprintf("127.0.0.1:%d", ports[1]),
		ConfigPath: filepath.Join(opt.Dir, "otelcol"+suffix+".yaml"),
		OutputPath: filepath.Join(opt.Dir, "otelcol-out"+suffix+".jsonl"),
		LogPath:    filepath.Join(opt.Dir, "otelcol"+suffix+".log"),
		exited:     make(chan struct{}),
	}
	if err := os.WriteFile(c.ConfigPath, []byte(config(c, opt)), 0o644); err != nil {
		return nil, fmt.Errorf("otelcolrun: %w", err)
	}
	lf, err := os.Create(c.LogPath)
	if err != nil {
		return nil, fmt.Errorf("otelcolrun: %w", err)
	}
	c.logFile = lf
	c.cmd = exec.Command(bin, "--config="+c.ConfigPath)
	c.cmd.Dir = opt.Dir
	c.cmd.Stdout, c.cmd.Stderr = lf, lf
	c.cmd.Env = collectorEnv()
	if err := c.cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("otelcolrun: start %s: %w", bin, err)
	}
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.exited)
	}()

	timeout := opt.ReadyTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	if err := c.waitReady(ctx, timeout); err != nil {
		_ = c.Stop(5 * time.Second)
		log := c.logTail()
		if strings.Contains(log, "address already in use") {
			err = fmt.Errorf("%w: %w", err, errAddrInUse)
		}
		return nil, fmt.Errorf("%w\n--- %s (tail) ---\n%s", err, c.LogPath, log)
	}
	return c, nil
}

// collectorEnv is the test's environment without OTEL_* variables, which
// could otherwise reach the collector's own telemetry.
func collectorEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") {
			env = append(env, kv)
		}
	}
	return env
}

func (c *Collector) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	pending := []string{c.GRPCAddr, c.HTTPAddr}
	for {
		for len(pending) > 0 {
			conn, err := net.DialTimeout("tcp", pending[0], 200*time.Millisecond)
			if err != nil {
				break
			}
			conn.Close()
			pending = pending[1:]
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-c.exited:
			return fmt.Errorf("otelcolrun: collector exited before listening on %s: %v", pending[0], c.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("otelcolrun: waiting for %s: %w", pending[0], ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("otelcolrun: %s not listening after %v", pending[0], timeout)
		}
	}
}

// Stop ends the collector: SIGTERM, then SIGKILL if it has not exited within
// grace (10 s if grace <= 0), and waits for it. The file exporter flushes its
// output on a clean shutdown. Stop returns an error if the process had to be
// killed or exited with an error of its own; later calls return the same.
func (c *Collector) Stop(grace time.Duration) error {
	c.stopOnce.Do(func() {
		if grace <= 0 {
			grace = 10 * time.Second
		}
		termed := c.cmd.Process.Signal(syscall.SIGTERM) == nil
		select {
		case <-c.exited:
			var ee *exec.ExitError
			switch {
			case c.waitErr == nil:
			case termed && errors.As(c.waitErr, &ee) && isSignal(ee, syscall.SIGTERM):
			default:
				c.stopErr = fmt.Errorf("otelcolrun: collector exited: %w", c.waitErr)
			}
		case <-time.After(grace):
			_ = c.cmd.Process.Kill()
			<-c.exited
			c.stopErr = fmt.Errorf("otelcolrun: collector (pid %d) ignored SIGTERM for %v; killed", c.PID(), grace)
		}
		c.logFile.Close()
	})
	return c.stopErr
}

func isSignal(ee *exec.ExitError, sig syscall.Signal) bool {
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// Exited is closed when the collector process has exited.
func (c *Collector) Exited() <-chan struct{} { return c.exited }

// Log returns the collector's log so far.
func (c *Collector) Log() string {
	b, _ := os.ReadFile(c.LogPath)
	return string(b)
}

func (c *Collector) logTail() string {
	s := c.Log()
	if len(s) > 4000 {
		s = "…" + s[len(s)-4000:]
	}
	return s
}

// Records reads the log records in the exporter's output so far.
func (c *Collector) Records() ([]Record, error) { return ReadFile(c.OutputPath) }

// WaitRecords polls the exporter's output until it holds at least n log
// records, and returns them; on ctx's end it returns what it has with an
// error. It also gives up if the collector exits.
func (c *Collector) WaitRecords(ctx context.Context, n int) ([]Record, error) {
	for {
		recs, err := c.Records()
		if err != nil {
			return recs, err
		}
		if len(recs) >= n {
			return recs, nil
		}
		select {
		case <-ctx.Done():
			return recs, fmt.Errorf("otelcolrun: %d of %d records in %s: %w", len(recs), n, c.OutputPath, ctx.Err())
		case <-c.exited:
			if recs, err := c.Records(); err != nil || len(recs) >= n {
				return recs, err
			}
			return recs, fmt.Errorf("otelcolrun: collector exited with %d of %d records: %v", len(recs), n, c.waitErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("otelcolrun: free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// config is the collector's YAML config. JSON strings are valid YAML scalars.
func config(c *Collector, opt Options) string {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	exporters := "[file]"
	if opt.Debug {
		exporters = "[file, debug]"
	}
	processors := "[]"
	if opt.Batch {
		processors = "[batch]"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
      http:
        endpoint: %s
processors:
  batch: {}
exporters:
  file:
    path: %s
    format: json
    flush_interval: 100ms
  debug:
    verbosity: basic
service:
  telemetry:
    metrics:
      level: none
    logs:
      level: info
  pipelines:
`, q(c.GRPCAddr), q(c.HTTPAddr), q(c.OutputPath))
	for _, p := range []string{"logs", "traces", "metrics"} {
		fmt.Fprintf(&b, "    %s:\n      receivers: [otlp]\n      processors: %s\n      exporters: %s\n", p, processors, exporters)
	}
	return b.String()
}

// Record is one log record from the file exporter's output (trace and span
// ids are hex as in the file).
type Record = logrecord.Record

// ReadFile reads the log records of a file exporter's output: one OTLP/JSON
// document per line, records in file order. Lines without resourceLogs
// (spans, metrics) are skipped. A last line without its newline that does not
// parse is taken as still being written and ignored; any other line that
// does not parse is an error. A missing file is no records.
func ReadFile(path string) ([]Record, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("otelcolrun: %w", err)
	}
	return Parse(data)
}

// Parse is ReadFile on bytes.
func Parse(data []byte) ([]Record, error) {
	var out []Record
	for lineNo := 1; len(data) > 0; lineNo++ {
		line, rest, complete := bytes.Cut(data, []byte("\n"))
		data = rest
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var doc jsonLogsData
		if err := json.Unmarshal(line, &doc); err != nil {
			if !complete {
				break // partially written last line
			}
			return out, fmt.Errorf("otelcolrun: line %d: %w", lineNo, err)
		}
		out = doc.flatten(out)
	}
	return out, nil
}

// OTLP/JSON, as the collector's file exporter writes it (protojson of
// LogsData: lowerCamelCase fields, 64-bit integers as strings, bytes as
// base64, trace and span ids as hex).

type jsonLogsData struct {
	ResourceLogs []struct {
		Resource struct {
			Attributes []jsonKeyValue `json:"attributes"`
		} `json:"resource"`
		ScopeLogs []struct {
			Scope struct {
				Name string `json:"name"`
			} `json:"scope"`
			LogRecords []struct {
				TimeUnixNano         jsonUint64     `json:"timeUnixNano"`
				ObservedTimeUnixNano jsonUint64     `json:"observedTimeUnixNano"`
				SeverityNumber       int32          `json:"severityNumber"`
				SeverityText         string         `json:"severityText"`
				EventName            string         `json:"eventName"`
				Body                 *jsonAnyValue  `json:"body"`
				Attributes           []jsonKeyValue `json:"attributes"`
				TraceID              string         `json:"traceId"`
				SpanID               string         `json:"spanId"`
			} `json:"logRecords"`
		} `json:"scopeLogs"`
	} `json:"resourceLogs"`
}

type jsonKeyValue struct {
	Key   string       `json:"key"`
	Value jsonAnyValue `json:"value"`
}

type jsonAnyValue struct {
	StringValue *string    `json:"stringValue"`
	BoolValue   *bool      `json:"boolValue"`
	IntValue    *jsonInt64 `json:"intValue"`
	DoubleValue *float64   `json:"doubleValue"`
	BytesValue  *[]byte    `json:"bytesValue"` // base64
	ArrayValue  *struct {
		Values []jsonAnyValue `json:"values"`
	} `json:"arrayValue"`
	KvlistValue *struct {
		Values []jsonKeyValue `json:"values"`
	} `json:"kvlistValue"`
}

// jsonUint64 and jsonInt64 take a JSON string or number.
type jsonUint64 uint64
type jsonInt64 int64

func (u *jsonUint64) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	var v uint64
	if _, err := fmt.Sscan(n.String(), &v); err != nil {
		return fmt.Errorf("uint64 %s: %w", b, err)
	}
	*u = jsonUint64(v)
	return nil
}

func (i *jsonInt64) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	v, err := n.Int64()
	if err != nil {
		return fmt.Errorf("int64 %s: %w", b, err)
	}
	*i = jsonInt64(v)
	return nil
}

func (d *jsonLogsData) flatten(out []Record) []Record {
	for _, rl := range d.ResourceLogs {
		res := jsonAttrs(rl.Resource.Attributes)
		for _, sl := range rl.ScopeLogs {
			for _, lr := range sl.LogRecords {
				rec := Record{
					Resource:             res,
					Scope:                sl.Scope.Name,
					Attributes:           jsonAttrs(lr.Attributes),
					TimeUnixNano:         uint64(lr.TimeUnixNano),
					ObservedTimeUnixNano: uint64(lr.ObservedTimeUnixNano),
					SeverityNumber:       lr.SeverityNumber,
					SeverityText:         lr.SeverityText,
					EventName:            lr.EventName,
					TraceID:              lr.TraceID,
					SpanID:               lr.SpanID,
				}
				if b := lr.Body; b != nil {
					switch {
					case b.StringValue != nil:
						rec.Body, rec.BodyKind = *b.StringValue, "string"
					case b.BytesValue != nil:
						rec.BodyBytes, rec.BodyKind = *b.BytesValue, "bytes"
					default:
						if v := b.value(); v != nil {
							rec.Body, rec.BodyKind = fmt.Sprint(v), b.kind()
						}
					}
				}
				out = append(out, rec)
			}
		}
	}
	return out
}

func jsonAttrs(kvs []jsonKeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value.value()
	}
	return m
}

// value converts to the same Go types as otlprecv.Value: string, []byte,
// int64, float64, bool, []any, map[string]any, or nil.
func (v *jsonAnyValue) value() any {
	switch {
	case v.StringValue != nil:
		return *v.StringValue
	case v.BoolValue != nil:
		return *v.BoolValue
	case v.IntValue != nil:
		return int64(*v.IntValue)
	case v.DoubleValue != nil:
		return *v.DoubleValue
	case v.BytesValue != nil:
		return *v.BytesValue
	case v.ArrayValue != nil:
		out := make([]any, 0, len(v.ArrayValue.Values))
		for i := range v.ArrayValue.Values {
			out = append(out, v.ArrayValue.Values[i].value())
		}
		return out
	case v.KvlistValue != nil:
		return jsonAttrs(v.KvlistValue.Values)
	}
	return nil
}

func (v *jsonAnyValue) kind() string {
	switch {
	case v.StringValue != nil:
		return "string"
	case v.BoolValue != nil:
		return "bool"
	case v.IntValue != nil:
		return "int"
	case v.DoubleValue != nil:
		return "double"
	case v.BytesValue != nil:
		return "bytes"
	case v.ArrayValue != nil:
		return "array"
	case v.KvlistValue != nil:
		return "kvlist"
	}
	return ""
}
