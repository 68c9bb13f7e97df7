//go:build e2e

package e2e

// Harness for the OTLP tests (otlp_test.go): berth started with extra
// environment variables, a chosen binary and a state directory shared across
// restarts; SIGKILL; the records of an OTLP backend (the in-test receiver or
// the real collector's file output) read back as Records, so that the
// sequence and resource checks of check_test.go apply to them; /status,
// /metrics, /proc and the checkpoint file.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berthlog/berth/e2e/internal/lines"
	"github.com/berthlog/berth/e2e/internal/logrecord"
	"github.com/berthlog/berth/e2e/internal/otelcolrun"
	"github.com/berthlog/berth/e2e/internal/otlprecv"
)

// otlpRun configures one berth process of an OTLP test.
type otlpRun struct {
	// Env is added to berth's environment (berthEnv, which has no OTEL_*
	// variable), e.g. OTEL_EXPORTER_OTLP_ENDPOINT.
	Env []string
	// StateDir is berth's state_dir; empty: a fresh one for this process.
	// Restart tests pass the same directory to every process. It is not
	// created here: berth creates it (0700).
	StateDir string
	// Bin is the berth binary; empty: berthBinary(t) (-race with -race).
	Bin string
}

// otlpYAML returns the config lines that point berth at an OTLP endpoint
// ("http://127.0.0.1:port") with protocol grpc or http/protobuf.
func otlpYAML(endpoint, protocol string) []string {
	return []string{"otlp:", "  endpoint: " + quote(endpoint), "  protocol: " + quote(protocol)}
}

// startBerthOTLP is startBerth with the options of otlpRun: each process
// gets its own directory (config, stdout, stderr) under the test's one, so a
// test can start berth several times. It waits until /healthz answers 200.
// Cleanup stops it (SIGTERM, exit 0 required) unless the test did.
func startBerthOTLP(t *testing.T, cfg BerthConfig, o otlpRun) *Berth {
	t.Helper()
	dir, err := os.MkdirTemp(testDir(t), "berth-")
	if err != nil {
		t.Fatal(err)
	}
	stateDir := o.StateDir
	if stateDir == "" {
		stateDir = filepath.Join(dir, "state") // not created: berth creates it
	}
	return startBerthProc(t, cfg, berthProc{Bin: o.Bin, Env: o.Env, Dir: dir, StateDir: stateDir})
}

// stopOTLP is stop (SIGTERM, exit status 0, no data race) plus: with OTLP
// on and stdout auto, berth writes nothing to stdout.
func (b *Berth) stopOTLP(t *testing.T) {
	t.Helper()
	b.stop(t)
	if fi, err := os.Stat(b.stdoutPath); err == nil && fi.Size() > 0 {
		t.Errorf("berth wrote %d bytes to stdout with an OTLP endpoint (stdout: auto should be off)", fi.Size())
	}
}

// sigkill kills berth with SIGKILL and waits for it to be gone.
func (b *Berth) sigkill(t *testing.T) {
	t.Helper()
	b.stopped = true
	if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL berth (pid %d): %v", b.cmd.Process.Pid, err)
	}
	select {
	case <-b.exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("berth (pid %d) still running 20s after SIGKILL", b.cmd.Process.Pid)
	}
	if stderr, _ := os.ReadFile(b.stderrPath); bytes.Contains(stderr, []byte("DATA RACE")) {
		t.Errorf("berth (built with -race) reported a data race:\n%s", b.stderrTail(80))
	}
}

func (b *Berth) pid() int { return b.cmd.Process.Pid }

func (b *Berth) stderrText() string {
	data, _ := os.ReadFile(b.stderrPath)
	return string(data)
}

// Non-race berth binary, for the memory figure: the race detector's shadow
// memory (an idle -race berth has ~45 MiB RSS against ~20 MiB) would make an
// RSS bound meaningless.
var noRace struct {
	once sync.Once
	bin  string
	err  error
}

func berthBinaryNoRace(t *testing.T) string {
	t.Helper()
	noRace.once.Do(func() {
		noRace.bin = filepath.Join(suite.tmp, "berth-norace")
		start := time.Now()
		noRace.err = goBuild(noRace.bin, "./cmd/berth", nil)
		if noRace.err == nil {
			fmt.Fprintf(os.Stderr, "e2e: berth built (race=false) in %v\n", time.Since(start).Round(time.Millisecond))
		}
	})
	if noRace.err != nil {
		t.Fatalf("building berth without -race: %v", noRace.err)
	}
	return noRace.bin
}

// otlpStatusDoc is the part of /status the OTLP tests read.
type otlpStatusDoc struct {
	RSSBytes int64 `json:"rss_bytes"`
	Exporter struct {
		Kind          string `json:"kind"`
		Healthy       bool   `json:"healthy"`
		LastError     string `json:"last_error"`
		Exported      int64  `json:"exported"`
		Rejected      int64  `json:"rejected"`
		Failures      int64  `json:"failures"`
		InFlightBytes int64  `json:"in_flight_bytes"`
	} `json:"exporter"`
	Containers []struct {
		ID    string `json:"id"`
		Name  string `json:"name"`
		State string `json:"state"`
		Lines int64  `json:"lines"`
		// Unparsed counts the lines not in the container's berth.parse
		// format, sent as they are.
		Unparsed int64 `json:"unparsed_lines"`
	} `json:"containers"`
}

func (b *Berth) otlpStatus(t *testing.T) otlpStatusDoc {
	t.Helper()
	resp, err := b.http.Get("http://" + b.httpAddr + "/status")
	if err != nil {
		t.Fatalf("berth /status: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var d otlpStatusDoc
	if resp.StatusCode != 200 {
		t.Fatalf("berth /status: %s: %.300s", resp.Status, body)
	}
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatalf("berth /status: %v: %.300s", err, body)
	}
	if d.Exporter.Kind != "otlp" {
		t.Fatalf("berth /status: exporter kind %q, want otlp: %.300s", d.Exporter.Kind, body)
	}
	return d
}

// metric returns the value of the Prometheus series name (any labels) in
// berth's /metrics, and whether it is there.
func (b *Berth) metric(t *testing.T, name string) (float64, bool) {
	t.Helper()
	var v float64
	found := false
	b.eachSeries(t, name, func(x float64) bool {
		v, found = x, true
		return false
	})
	return v, found
}

// metricSum returns the sum of every series of the Prometheus metric name
// (all label sets) in berth's /metrics.
func (b *Berth) metricSum(t *testing.T, name string) float64 {
	t.Helper()
	var sum float64
	b.eachSeries(t, name, func(x float64) bool {
		sum += x
		return true
	})
	return sum
}

// eachSeries reads berth's /metrics and calls f with the value of each series
// of the Prometheus metric name (any labels), in order, until f returns
// false.
func (b *Berth) eachSeries(t *testing.T, name string, f func(v float64) bool) {
	t.Helper()
	resp, err := b.http.Get("http://" + b.httpAddr + "/metrics")
	if err != nil {
		t.Fatalf("berth /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name) || len(l) == len(name) || (l[len(name)] != '{' && l[len(name)] != ' ') {
			continue
		}
		fs := strings.Fields(l)
		v, err := strconv.ParseFloat(fs[len(fs)-1], 64)
		if err != nil {
			t.Fatalf("berth /metrics: %q: %v", l, err)
		}
		if !f(v) {
			return
		}
	}
}

// procKB reads a "kB" field (VmRSS, VmHWM) of /proc/<pid>/status.
func procKB(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// checkpointIDs reads state_dir/checkpoints.json and returns the container
// ids it holds (nil, nil when the file does not exist).
func checkpointIDs(stateDir string) (map[string]bool, error) {
	data, err := os.ReadFile(filepath.Join(stateDir, "checkpoints.json"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var f struct {
		Version    int                        `json:"version"`
		Containers map[string]json.RawMessage `json:"containers"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("checkpoints.json: %v: %.200s", err, data)
	}
	ids := map[string]bool{}
	for id := range f.Containers {
		ids[id] = true
	}
	return ids, nil
}

// waitCheckpoint polls checkpoints.json until it holds every container of
// has and none of hasNot.
func waitCheckpoint(t *testing.T, stateDir string, has, hasNot []*Ctr, timeout time.Duration) {
	t.Helper()
	waitFor(t, fmt.Sprintf("checkpoints.json to hold %d containers and not %d others", len(has), len(hasNot)), timeout, func() (bool, string) {
		ids, err := checkpointIDs(stateDir)
		if err != nil {
			return false, err.Error()
		}
		ok := true
		var state []string
		for _, c := range has {
			ok = ok && ids[c.ID]
			state = append(state, fmt.Sprintf("%s:%v", c.Name, ids[c.ID]))
		}
		for _, c := range hasNot {
			ok = ok && !ids[c.ID]
			state = append(state, fmt.Sprintf("%s:%v", c.Name, ids[c.ID]))
		}
		return ok, fmt.Sprintf("%d ids in the file; present: %s", len(ids), strings.Join(state, " "))
	})
}

// otlpView holds the records an OTLP backend received, as Records indexed by
// container.name. poll fetches what arrived since the last poll.
type otlpView struct {
	recordIndex // the records received so far

	fetch func() ([]Record, error)
}

func newOTLPView(fetch func() ([]Record, error)) *otlpView {
	return &otlpView{fetch: fetch}
}

// recvView reads the in-test receiver's records.
func recvView(r *otlprecv.Receiver) *otlpView {
	seen := 0
	return newOTLPView(func() ([]Record, error) {
		all := r.Records()
		out := make([]Record, 0, len(all)-seen)
		for _, x := range all[seen:] {
			out = append(out, fromBackend(x.Record))
		}
		seen = len(all)
		return out, nil
	})
}

// collectorView reads the collector's file output incrementally: only the
// complete lines written since the last poll are parsed.
func collectorView(path string) *otlpView {
	var off int64
	return newOTLPView(func() ([]Record, error) {
		f, err := os.Open(path)
		if os.IsNotExist(err) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return nil, err
		}
		data, err := io.ReadAll(f)
		if err != nil {
			return nil, err
		}
		end := bytes.LastIndexByte(data, '\n')
		if end < 0 {
			return nil, nil
		}
		recs, err := otelcolrun.Parse(data[:end+1])
		if err != nil {
			return nil, fmt.Errorf("%s at offset %d: %w", path, off, err)
		}
		off += int64(end + 1)
		out := make([]Record, 0, len(recs))
		for _, x := range recs {
			out = append(out, fromBackend(x))
		}
		return out, nil
	})
}

func (v *otlpView) poll(t *testing.T) {
	t.Helper()
	recs, err := v.fetch()
	if err != nil {
		t.Fatalf("reading the OTLP backend's records: %v", err)
	}
	for _, r := range recs {
		r.Line = len(v.recs) + 1
		v.put(r)
	}
}

func nanoTime(ns uint64) string {
	if ns == 0 {
		return ""
	}
	return time.Unix(0, int64(ns)).UTC().Format(time.RFC3339Nano)
}

// fromBackend turns a record of an OTLP backend (the receiver or the
// collector) into a Record (Line is set by poll).
func fromBackend(x logrecord.Record) Record {
	r := Record{
		Timestamp: nanoTime(x.TimeUnixNano), ObservedTimestamp: nanoTime(x.ObservedTimeUnixNano),
		Body: x.Body, Attributes: x.Attributes, Resource: x.Resource,
		SeverityNumber: int(x.SeverityNumber), SeverityText: x.SeverityText,
	}
	if x.BodyKind == "bytes" {
		r.Body = string(x.BodyBytes)
	}
	return r
}

// waitReadyOTLP proves berth follows new containers and exports: a canary
// writing 20 lines/s must reach the backend; then it is removed.
func waitReadyOTLP(t *testing.T, b *Berth, v *otlpView) {
	t.Helper()
	c := runContainer(t, ContainerSpec{Name: uniqueName(t, "canary"), Args: []string{"-n", "0", "-rate", "20"}})
	waitFor(t, "a record of the canary container at the OTLP backend (berth following new containers and exporting)", 30*time.Second, func() (bool, string) {
		v.poll(t)
		b.checkAlive(t)
		return v.count(c.Name) > 0, fmt.Sprintf("%d canary records, %d in all", v.count(c.Name), len(v.recs))
	})
	c.remove(t)
}

// waitQuiet waits until berth has no record in flight and the receiver
// holds every record berth counts as exported (so a RejectNext or an
// outage that follows hits only what the test writes next), and the canary
// is gone from /status.
func waitQuiet(t *testing.T, b *Berth, r *otlprecv.Receiver) {
	t.Helper()
	waitFor(t, "berth to be quiet (nothing in flight, every exported record at the receiver, only the test's containers known)", 30*time.Second, func() (bool, string) {
		st := b.otlpStatus(t)
		canary := false
		for _, c := range st.Containers {
			canary = canary || strings.Contains(c.Name, "-canary-")
		}
		n := r.Stats().Records
		return !canary && st.Exporter.InFlightBytes == 0 && st.Exporter.Exported == int64(n),
			fmt.Sprintf("in flight %d B, exported %d, receiver %d, canary known %v", st.Exporter.InFlightBytes, st.Exporter.Exported, n, canary)
	})
}

// waitAll polls the view until each container has at least n records.
func waitAll(t *testing.T, b *Berth, v *otlpView, cs []*Ctr, n int, timeout time.Duration) {
	t.Helper()
	ok, state := waitUntil(timeout, func() (bool, string) {
		v.poll(t)
		if b != nil {
			b.checkAlive(t)
		}
		var counts []int
		done := true
		for _, c := range cs {
			k := v.count(c.Name)
			counts = append(counts, k)
			done = done && k >= n
		}
		return done, fmt.Sprint("records per container: ", counts)
	})
	if ok {
		return
	}
	// Say what berth and the daemon think of the containers that fell short.
	var diag []string
	var st otlpStatusDoc
	if b != nil {
		st = b.otlpStatus(t)
		diag = append(diag, fmt.Sprintf("exporter %+v", st.Exporter))
	}
	for _, c := range cs {
		if v.count(c.Name) >= n {
			continue
		}
		known := "unknown to berth"
		for _, s := range st.Containers {
			if strings.HasPrefix(c.ID, s.ID) {
				known = fmt.Sprintf("berth: %+v", s)
			}
		}
		info := c.inspect(t)
		hint := ""
		if strings.Contains(known, "State:discovered") && info.State.StartedAt != "" && !strings.HasPrefix(info.State.StartedAt, "0001") {
			hint = " (berth never saw the container start: its start event was dropped, see events.eventDedup)"
		}
		diag = append(diag, fmt.Sprintf("%s (%s): %d records; %s; daemon: status %s, started %s, finished %s%s",
			c.Name, short(c.ID), v.count(c.Name), known, info.State.Status, info.State.StartedAt, info.State.FinishedAt, hint))
	}
	t.Fatalf("timed out after %v waiting for %d records from each of %d containers at the OTLP backend; last state: %s\n%s",
		timeout, n, len(cs), state, strings.Join(diag, "\n"))
}

// startAll starts the containers at once and returns when they all started.
func startAll(t *testing.T, cs []*Ctr) {
	t.Helper()
	errs := make([]error, len(cs))
	parallel(len(cs), func(i int) { errs[i] = cs[i].startErr() })
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// occurrence counts records per (run, seq) of a shared-sequence generator
// (one run, stdout and stderr sharing one sequence) and reports missing and
// duplicated seqs in [0,n).
type seqKey struct {
	Run string
	Seq int
}

func seqsOf(t *testing.T, recs []Record) []seqKey {
	t.Helper()
	out := make([]seqKey, 0, len(recs))
	for _, r := range recs {
		p, ok := lines.Parse(r.Body)
		if !ok {
			t.Errorf("record %d has no sequence: %.100q", r.Line, r.Body)
			continue
		}
		out = append(out, seqKey{p.Run, p.Seq})
	}
	return out
}

// hostName is the host berth runs on (the test's host): host.name must be it.
func hostName(t *testing.T) string {
	t.Helper()
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// checkHostName checks host.name on every record.
func checkHostName(t *testing.T, c *Ctr, recs []Record, want string) {
	t.Helper()
	bad := 0
	for _, r := range recs {
		if got := r.res("host.name"); got != want {
			bad++
			if bad <= 3 {
				t.Errorf("%s: record %d: host.name %q, want %q", c.Name, r.Line, got, want)
			}
		}
	}
}

// contiguous reports whether the sorted ints are one run lo..hi.
func contiguous(xs []int) bool {
	sort.Ints(xs)
	for i := 1; i < len(xs); i++ {
		if xs[i] != xs[i-1]+1 {
			return false
		}
	}
	return true
}

// arrivals returns, for every record the receiver stored (in Records()
// order), the time its export request arrived. Call it when the receiver is
// idle (berth stopped): records and requests are appended under one lock,
// request by request.
func arrivals(t *testing.T, r *otlprecv.Receiver) []time.Time {
	t.Helper()
	var out []time.Time
	for _, q := range r.Requests() {
		if q.Outcome != otlprecv.OutcomeOK {
			continue
		}
		for range q.Records {
			out = append(out, q.Time)
		}
	}
	if n := len(r.Records()); n != len(out) {
		t.Fatalf("receiver: %d records but its accepted requests add up to %d", n, len(out))
	}
	return out
}

// startReceiver starts the in-test OTLP receiver; cleanup closes it.
func startReceiver(t *testing.T) *otlprecv.Receiver {
	t.Helper()
	r, err := otlprecv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}
