package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// measurer runs the phases of one benchmark run.
type measurer struct {
	s       settings
	e       *env
	lg      *logger
	say     func(string)
	recv    *receiver
	berth   string // berth binary (no -race)
	self    string // this program, for the floor reader
	dockerd int    // the daemon's pid
}

// Readers of the rows.
const (
	readerFloor = "floor"
	readerJSON  = "json"
	readerGRPC  = "otlp-grpc"
	readerHTTP  = "otlp-http"
)

// genArgs are loggen's arguments for n lines of lineSize bytes.
func genArgs(n int, extra ...string) []string {
	return append([]string{"-n", strconv.Itoa(n), "-size", strconv.Itoa(lineSize)}, extra...)
}

// all measures every phase into res.
func (m *measurer) all(res *results) error {
	n := m.s.lines
	m.say("preparing the drain containers (1 x " + strconv.Itoa(n) + " lines, 10 x " + strconv.Itoa(n/10) + ")")
	drain1, err := m.e.runMany("drain1", 1, genArgs(n)...)
	if err != nil {
		return err
	}
	drain10, err := m.e.runMany("drain10", 10, genArgs(n/10)...)
	if err != nil {
		return err
	}
	if err := m.e.waitExited(append(drain1, drain10...), 10*time.Minute); err != nil {
		return err
	}
	for _, rc := range []struct {
		reader string
		cs     []ctr
	}{
		{readerFloor, drain1}, {readerJSON, drain1}, {readerGRPC, drain1}, {readerHTTP, drain1},
		{readerFloor, drain10}, {readerGRPC, drain10},
	} {
		r, err := m.drain(rc.reader, rc.cs, n/len(rc.cs))
		if err != nil {
			return err
		}
		res.Rows = append(res.Rows, r)
	}
	for _, rc := range []struct {
		reader string
		k      int
	}{
		{readerFloor, 1}, {readerJSON, 1}, {readerGRPC, 1}, {readerHTTP, 1},
		{readerFloor, 10}, {readerGRPC, 10},
	} {
		r, err := m.follow(rc.reader, rc.k, n/rc.k)
		if err != nil {
			return err
		}
		res.Rows = append(res.Rows, r)
	}
	if m.s.peers {
		if bin, err := buildTelegraf(m.say); err != nil {
			m.say("peers: Telegraf's row skipped, its build failed (details in the log)")
			m.lg.printf("peers: %v", err)
		} else {
			r, err := m.telegrafFollow(bin, n)
			if err != nil {
				return err
			}
			res.Rows = append(res.Rows, r)
		}
	}
	if res.Latency, err = m.latency(); err != nil {
		return err
	}
	if res.Reattach, err = m.reattach(); err != nil {
		return err
	}
	if err := m.scale(res); err != nil {
		return err
	}
	return m.e.removeAll(true)
}

// berthConfig returns the config lines that send berth's records to reader.
func (m *measurer) berthConfig(reader, initial string) []string {
	cfg := []string{"initial_position: " + initial}
	switch reader {
	case readerGRPC:
		cfg = append(cfg, "otlp:", "  endpoint: "+quote(m.recv.grpcAddr()), "  protocol: grpc", "  insecure: true")
	case readerHTTP:
		cfg = append(cfg, "otlp:", "  endpoint: "+quote("http://"+m.recv.httpAddr()), "  protocol: http/protobuf")
	}
	return cfg
}

// delivered returns how many lines berth has handed on: acknowledged by
// the receiver with OTLP, written to stdout (its /status) with JSON lines.
func (m *measurer) delivered(b *berthProc, reader string) (int64, error) {
	if reader == readerJSON {
		st, err := b.status()
		return st.lines(), err
	}
	return m.recv.count(), nil
}

// waitDelivered waits until berth has handed on want lines.
func (m *measurer) waitDelivered(b *berthProc, reader string, want int64) error {
	within := 2*time.Minute + time.Duration(want/2000)*time.Second
	deadline := time.Now().Add(within)
	var got int64
	for {
		select {
		case <-b.exited:
			return fmt.Errorf("berth exited (%v) after delivering %d of %d lines; its stderr: %s", b.waitErr, got, want, b.stderrTail())
		default:
		}
		n, err := m.delivered(b, reader)
		if err == nil {
			got = n
		}
		if got >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("berth (%s) delivered %d of %d lines in %v (last error: %v); its stderr: %s", reader, got, want, within, err, b.stderrTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rowName is "<reader> <mode>" with " x<k>" for k containers.
func rowName(reader, mode string, k int) string {
	s := reader + " " + mode
	if k > 1 {
		s += fmt.Sprintf(" x%d", k)
	}
	return s
}

// drain measures reader reading the whole logs of the stopped containers cs
// (per lines each): berth starts with initial_position beginning.
func (m *measurer) drain(reader string, cs []ctr, per int) (row, error) {
	total := int64(per * len(cs))
	r := row{Name: rowName(reader, "drain", len(cs)), Reader: reader, Mode: "drain", Containers: len(cs), Lines: total}
	m.say("measuring " + r.Name)
	m.recv.reset(false)
	dcpu, err := startCPU(m.dockerd)
	if err != nil {
		return r, err
	}
	if reader == readerFloor {
		fr, err := runFloor(m.self, "drain", cs, per, time.Now())
		if err != nil {
			return r, err
		}
		if fr.lines != total {
			return r, fmt.Errorf("%s: the floor reader read %d lines, want %d", r.Name, fr.lines, total)
		}
		r.Elapsed, r.CPU, r.RSSKiB = fr.elapsed, fr.cpu, fr.maxRSS
	} else {
		prefix := strings.TrimSuffix(cs[0].Name, "-0") + "-"
		b, err := m.e.startBerth(m.berth, strings.ReplaceAll(r.Name, " ", "-"), []string{prefix}, m.berthConfig(reader, "beginning")...)
		if err != nil {
			return r, err
		}
		err = m.waitDelivered(b, reader, total)
		r.Elapsed = time.Since(b.started)
		if err == nil {
			r.CPU, err = procCPU(b.pid())
		}
		if err == nil {
			r.RSSKiB, err = procStatusKB(b.pid(), "VmHWM")
		}
		if serr := b.stop(); err == nil {
			err = serr
		}
		if err != nil {
			return r, fmt.Errorf("%s: %w", r.Name, err)
		}
		if reader != readerJSON {
			if err := m.recv.check(len(cs), per); err != nil {
				return r, fmt.Errorf("%s: the receiver's sequence check: %w", r.Name, err)
			}
		}
	}
	if r.DockerdCPU, err = dcpu.since(); err != nil {
		return r, err
	}
	m.lg.printf("%s: %+v", r.Name, r)
	return r, nil
}

// follow measures reader following k new containers from their start, each
// writing per lines at full speed: berth is started and idle first.
func (m *measurer) follow(reader string, k, per int) (row, error) {
	total := int64(per * k)
	r := row{Name: rowName(reader, "follow", k), Reader: reader, Mode: "follow", Containers: k, Lines: total}
	m.say("measuring " + r.Name)
	m.recv.reset(false)
	prefix := strings.ReplaceAll(r.Name, " ", "-")
	cs := make([]ctr, k)
	for i := range cs {
		var err error
		if cs[i], err = m.e.create(fmt.Sprintf("%s-%d", prefix, i), genArgs(per)...); err != nil {
			return r, err
		}
	}
	var b *berthProc
	if reader != readerFloor {
		var err error
		if b, err = m.e.startBerth(m.berth, prefix, []string{prefix + "-"}, m.berthConfig(reader, "end")...); err != nil {
			return r, err
		}
		defer b.stop()
	}
	var bcpu cpuMeter
	var err error
	if b != nil {
		if bcpu, err = startCPU(b.pid()); err != nil {
			return r, err
		}
	}
	dcpu, err := startCPU(m.dockerd)
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	if err := m.e.startAll(cs); err != nil {
		return r, err
	}
	if b == nil {
		fr, err := runFloor(m.self, "follow", cs, per, t0)
		if err != nil {
			return r, err
		}
		if fr.lines != total {
			return r, fmt.Errorf("%s: the floor reader read %d lines, want %d", r.Name, fr.lines, total)
		}
		r.Elapsed, r.CPU, r.RSSKiB = fr.elapsed, fr.cpu, fr.maxRSS
		if fr.resumed > 0 {
			m.lg.printf("%s: %d follow streams ended before their last line and were resumed", r.Name, fr.resumed)
		}
	} else {
		if err := m.waitDelivered(b, reader, total); err != nil {
			return r, fmt.Errorf("%s: %w", r.Name, err)
		}
		r.Elapsed = time.Since(t0)
		if r.CPU, err = bcpu.since(); err != nil {
			return r, err
		}
		if r.RSSKiB, err = procStatusKB(b.pid(), "VmHWM"); err != nil {
			return r, err
		}
		if err := b.stop(); err != nil {
			return r, fmt.Errorf("%s: %w", r.Name, err)
		}
		if reader != readerJSON {
			if err := m.recv.check(k, per); err != nil {
				return r, fmt.Errorf("%s: the receiver's sequence check: %w", r.Name, err)
			}
		}
	}
	if r.DockerdCPU, err = dcpu.since(); err != nil {
		return r, err
	}
	m.lg.printf("%s: %+v", r.Name, r)
	return r, nil
}

// latency measures the delay from Docker's timestamp of a line to its
// arrival at the receiver (OTLP gRPC), one container writing at a paced
// latRate lines/s.
func (m *measurer) latency() (latencyResult, error) {
	n := m.s.latRate * m.s.latSeconds
	res := latencyResult{Rate: m.s.latRate, Lines: n}
	m.say(fmt.Sprintf("measuring the latency at %d lines/s for %d s", m.s.latRate, m.s.latSeconds))
	m.recv.reset(true)
	defer m.recv.reset(false)
	b, err := m.e.startBerth(m.berth, "latency", []string{"latency"}, m.berthConfig(readerGRPC, "end")...)
	if err != nil {
		return res, err
	}
	defer b.stop()
	if _, err := m.e.run("latency", genArgs(n, "-rate", strconv.Itoa(m.s.latRate))...); err != nil {
		return res, err
	}
	if err := m.waitDelivered(b, readerGRPC, int64(n)); err != nil {
		return res, fmt.Errorf("latency: %w", err)
	}
	if err := m.recv.check(1, n); err != nil {
		return res, fmt.Errorf("latency: the receiver's sequence check: %w", err)
	}
	res.P50, res.P99, _ = m.recv.latencies()
	m.lg.printf("latency: %+v", res)
	return res, b.stop()
}

// reattach measures the daemon's CPU for what a re-attach asks of it (a
// follow request from the last position, with berth's tail bound) on a log
// of BERTH_BENCH_LINES lines and on one of 10 lines, and for a since-only
// read (no tail, no follow) of the big log, read with the Docker client.
func (m *measurer) reattach() (reattachResult, error) {
	res := reattachResult{Lines: m.s.lines, Reattaches: 20, SinceReads: 2}
	m.say("measuring re-attaches")
	big, err := m.e.run("reattach-big", genArgs(m.s.lines, "-sleep-after", "24h")...)
	if err != nil {
		return res, err
	}
	small, err := m.e.run("reattach-small", genArgs(10, "-sleep-after", "24h")...)
	if err != nil {
		return res, err
	}
	bigTS, err := m.lastTimestamp(big, m.s.lines)
	if err != nil {
		return res, err
	}
	smallTS, err := m.lastTimestamp(small, 10)
	if err != nil {
		return res, err
	}
	opts := container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: true, Tail: "100"}
	if res.BigReattach, err = m.dockerdCost(res.Reattaches, big, bigTS, opts); err != nil {
		return res, err
	}
	if res.SmallReattach, err = m.dockerdCost(res.Reattaches, small, smallTS, opts); err != nil {
		return res, err
	}
	if res.BigSinceRead, err = m.dockerdCost(res.SinceReads, big, bigTS, container.LogsOptions{ShowStdout: true, ShowStderr: true}); err != nil {
		return res, err
	}
	m.lg.printf("reattach: %+v", res)
	return res, m.e.kill([]ctr{big, small})
}

// lastTimestamp waits until c's log holds n lines and returns the
// timestamp of the last one, as Docker gives it.
func (m *measurer) lastTimestamp(c ctr, n int) (string, error) {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		ctx, cancel := dctx(30 * time.Second)
		rc, err := m.e.docker.ContainerLogs(ctx, c.ID, container.LogsOptions{ShowStdout: true, Timestamps: true, Tail: "1"})
		var line string
		if err == nil {
			var sb strings.Builder
			_, err = stdcopy.StdCopy(&sb, io.Discard, rc)
			rc.Close()
			line = strings.TrimSpace(sb.String())
		}
		cancel()
		if err != nil {
			return "", fmt.Errorf("reading the last line of %s: %w", c.Name, err)
		}
		ts, body, _ := strings.Cut(line, " ")
		if _, seq, ok := parseLine(body); ok && seq == n-1 {
			return ts, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s: its last line is %.80q, want sequence number %d", c.Name, line, n-1)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dockerdCost makes k logs requests for c since ts, one after the other,
// each read until its first line (the line at ts: since is inclusive) and
// then closed, and returns the daemon's CPU per request.
func (m *measurer) dockerdCost(k int, c ctr, ts string, opts container.LogsOptions) (time.Duration, error) {
	opts.Since = ts
	dcpu, err := startCPU(m.dockerd)
	if err != nil {
		return 0, err
	}
	for range k {
		if err := m.firstLine(c, opts); err != nil {
			return 0, err
		}
	}
	d, err := dcpu.since()
	return d / time.Duration(k), err
}

func (m *measurer) firstLine(c ctr, opts container.LogsOptions) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rc, err := m.e.docker.ContainerLogs(ctx, c.ID, opts)
	if err != nil {
		return fmt.Errorf("logs of %s: %w", c.Name, err)
	}
	defer rc.Close()
	// A frame: 8-byte header, then the line.
	br := bufio.NewReader(rc)
	hdr := make([]byte, 8)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return fmt.Errorf("logs of %s since %s: no line: %w", c.Name, opts.Since, err)
	}
	size := int(hdr[4])<<24 | int(hdr[5])<<16 | int(hdr[6])<<8 | int(hdr[7])
	body := make([]byte, size)
	if _, err := io.ReadFull(br, body); err != nil {
		return fmt.Errorf("logs of %s: %w", c.Name, err)
	}
	if _, _, ok := parseLine(string(body)); !ok {
		return fmt.Errorf("logs of %s since %s: %.80q is not a generator line", c.Name, opts.Since, body)
	}
	return nil
}

// scale: quiet containers created while berth runs (RSS, goroutines and
// FDs sampled every tenth of them), then berth restarted over all of them
// plus busy ones (time until every one is attached, goroutines, FDs, RSS),
// then the busy ones stopped (berth's and the daemon's CPU while every
// container is silent).
func (m *measurer) scale(res *results) error {
	q := m.s.containers
	m.say(fmt.Sprintf("scale: %d quiet containers", q))
	if err := m.e.removeAll(true); err != nil { // the rows' containers
		return err
	}
	m.recv.reset(false)
	b, err := m.e.startBerth(m.berth, "scale-grow", []string{"quiet-"}, m.berthConfig(readerGRPC, "end")...)
	if err != nil {
		return err
	}
	defer b.stop()
	step := max(1, q/10)
	sample := func(k int) error {
		st, err := b.status()
		if err != nil {
			return err
		}
		rss, err := procStatusKB(b.pid(), "VmRSS")
		if err != nil {
			return err
		}
		s := scaleSample{Containers: k, RSSKiB: rss, Goroutines: st.Goroutines, FDs: st.OpenFDs, Streams: st.StreamsOpen}
		res.Samples = append(res.Samples, s)
		m.lg.printf("scale sample %+v", s)
		return nil
	}
	if err := sample(0); err != nil {
		return err
	}
	for k := 0; k < q; k += step {
		batch := min(step, q-k)
		if _, err := m.e.runMany(fmt.Sprintf("quiet-%d", k), batch, genArgs(3, "-sleep-after", "24h")...); err != nil {
			return err
		}
		want := int64(3 * (k + batch))
		if err := m.waitDelivered(b, readerGRPC, want); err != nil {
			return fmt.Errorf("scale: %w", err)
		}
		if err := b.waitFor(fmt.Sprintf("%d streams open", k+batch), 2*time.Minute, func(st berthStatus) bool { return st.StreamsOpen >= k+batch }); err != nil {
			return fmt.Errorf("scale: %w", err)
		}
		if err := sample(k + batch); err != nil {
			return err
		}
	}
	if err := m.recv.check(q, 3); err != nil {
		return fmt.Errorf("scale: the receiver's sequence check: %w", err)
	}
	if err := b.stop(); err != nil {
		return err
	}

	busy, err := m.e.runMany("busy", m.s.busy, "-n", "0", "-rate", "100", "-size", strconv.Itoa(lineSize))
	if err != nil {
		return err
	}
	all := q + m.s.busy
	m.recv.reset(false)
	dcpu, err := startCPU(m.dockerd)
	if err != nil {
		return err
	}
	b, err = m.e.startBerth(m.berth, "scale", []string{"quiet-", "busy-"}, m.berthConfig(readerGRPC, "end")...)
	if err != nil {
		return err
	}
	defer b.stop()
	sc := &res.Scale
	sc.Quiet, sc.Busy = q, m.s.busy
	err = b.waitFor(fmt.Sprintf("all %d containers attached", all), 5*time.Minute, func(st berthStatus) bool {
		n := 0
		for _, c := range st.Containers {
			if c.State == "streaming" {
				n++
			}
		}
		return n >= all
	})
	if err != nil {
		return fmt.Errorf("scale: %w", err)
	}
	sc.AttachTime = time.Since(b.started)
	if sc.AttachDockerdCPU, err = dcpu.since(); err != nil {
		return err
	}
	// Settled: every stream open, the busy ones writing.
	time.Sleep(5 * time.Second)
	st, err := b.status()
	if err != nil {
		return err
	}
	sc.Goroutines, sc.FDs, sc.Streams = st.Goroutines, st.OpenFDs, st.StreamsOpen
	if sc.RSSKiB, err = procStatusKB(b.pid(), "VmRSS"); err != nil {
		return err
	}
	if sc.HWMKiB, err = procStatusKB(b.pid(), "VmHWM"); err != nil {
		return err
	}
	// Silence: the busy ones stop; wait until berth has seen them stop.
	if err := m.e.kill(busy); err != nil {
		return err
	}
	err = b.waitFor("the busy containers to be seen stopped", 2*time.Minute, func(st berthStatus) bool {
		n := 0
		for _, c := range st.Containers {
			if c.State == "stopped" {
				n++
			}
		}
		return n >= m.s.busy
	})
	if err != nil {
		return fmt.Errorf("scale: %w", err)
	}
	m.say(fmt.Sprintf("scale: measuring %v of silence", m.s.idle))
	bcpu, err := startCPU(b.pid())
	if err != nil {
		return err
	}
	if dcpu, err = startCPU(m.dockerd); err != nil {
		return err
	}
	time.Sleep(m.s.idle)
	sc.IdleSeconds = m.s.idle.Seconds()
	if sc.IdleBerthCPU, err = bcpu.since(); err != nil {
		return err
	}
	if sc.IdleDockerdCPU, err = dcpu.since(); err != nil {
		return err
	}
	if st, err = b.status(); err != nil {
		return err
	}
	sc.IdleStreams = st.StreamsOpen
	m.lg.printf("scale: %+v", *sc)
	if err := b.stop(); err != nil {
		return err
	}
	return errors.Join(m.e.removeAll(true))
}
