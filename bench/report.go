package main

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// row is one reader reading the same logs in one mode.
type row struct {
	Name       string
	Reader     string // readerFloor, readerJSON, readerGRPC, readerHTTP
	Mode       string // drain or follow
	Containers int
	Lines      int64
	Elapsed    time.Duration
	CPU        time.Duration // the reader's (floor or berth)
	DockerdCPU time.Duration
	RSSKiB     int64 // the reader's peak RSS (VmHWM)

	// Ratios to the floor row of the same mode and container count.
	RateRatio, CPURatio, DockerdRatio, RSSRatio float64
}

func (r row) linesPerSec() float64 { return float64(r.Lines) / r.Elapsed.Seconds() }
func (r row) cpuPer1M() float64    { return r.CPU.Seconds() * 1e6 / float64(r.Lines) }
func (r row) dockerdPer1M() float64 {
	return r.DockerdCPU.Seconds() * 1e6 / float64(r.Lines)
}
func (r row) rssMiB() float64 { return float64(r.RSSKiB) / 1024 }

type latencyResult struct {
	Rate, Lines int
	P50, P99    time.Duration
}

type reattachResult struct {
	Lines, Reattaches, SinceReads int
	// The daemon's CPU per request.
	BigReattach, SmallReattach, BigSinceRead time.Duration
}

type scaleSample struct {
	Containers, Goroutines, FDs, Streams int
	RSSKiB                               int64
}

type scaleResult struct {
	Quiet, Busy                  int
	AttachTime                   time.Duration
	AttachDockerdCPU             time.Duration
	Goroutines, FDs, Streams     int
	RSSKiB, HWMKiB               int64
	IdleSeconds                  float64
	IdleBerthCPU, IdleDockerdCPU time.Duration
	IdleStreams                  int
}

// results is everything one run measured.
type results struct {
	Docker, API string
	Settings    settings
	Start       time.Time
	Rows        []row
	Latency     latencyResult
	Reattach    reattachResult
	Scale       scaleResult
	Samples     []scaleSample
}

// finish computes each row's ratios to its floor.
func (res *results) finish() {
	for i := range res.Rows {
		r := &res.Rows[i]
		for _, f := range res.Rows {
			if f.Reader == readerFloor && f.Mode == r.Mode && f.Containers == r.Containers {
				r.RateRatio = r.linesPerSec() / f.linesPerSec()
				r.CPURatio = r.cpuPer1M() / f.cpuPer1M()
				r.DockerdRatio = r.dockerdPer1M() / f.dockerdPer1M()
				r.RSSRatio = r.rssMiB() / f.rssMiB()
			}
		}
	}
}

func pct(d time.Duration, over float64) float64 { return 100 * d.Seconds() / over }

// table is what the run prints: the rows, then the other phases.
func (res *results) table() string {
	var b strings.Builder
	b.WriteString(res.rowsMarkdown())
	b.WriteString("\n")
	b.WriteString(res.othersMarkdown())
	return b.String()
}

func (res *results) rowsMarkdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "| reader, mode | lines/s | reader CPU-s per 1M lines | dockerd CPU-s per 1M lines | peak RSS MiB | lines/s ÷ floor | CPU ÷ floor | dockerd ÷ floor | RSS ÷ floor |\n")
	fmt.Fprintf(&b, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range res.Rows {
		fmt.Fprintf(&b, "| %s | %.0f | %.2f | %.2f | %.1f | %.2f | %.2f | %.2f | %.2f |\n",
			r.Name, r.linesPerSec(), r.cpuPer1M(), r.dockerdPer1M(), r.rssMiB(), r.RateRatio, r.CPURatio, r.DockerdRatio, r.RSSRatio)
	}
	return b.String()
}

func (res *results) othersMarkdown() string {
	var b strings.Builder
	l, ra, sc := res.Latency, res.Reattach, res.Scale
	fmt.Fprintf(&b, "| figure | value |\n| --- | ---: |\n")
	fmt.Fprintf(&b, "| latency, Docker's timestamp to the receiver (OTLP gRPC), %d lines/s: p50 | %v |\n", l.Rate, l.P50.Round(time.Millisecond))
	fmt.Fprintf(&b, "| latency p99 | %v |\n", l.P99.Round(time.Millisecond))
	fmt.Fprintf(&b, "| re-attach (since + tail=100 + follow), %d-line log: dockerd CPU-ms each (mean of %d) | %.1f |\n", ra.Lines, ra.Reattaches, ms(ra.BigReattach))
	fmt.Fprintf(&b, "| re-attach, 10-line log: dockerd CPU-ms each (mean of %d) | %.1f |\n", ra.Reattaches, ms(ra.SmallReattach))
	fmt.Fprintf(&b, "| since-only read (no tail), %d-line log: dockerd CPU-ms each (mean of %d) | %.1f |\n", ra.Lines, ra.SinceReads, ms(ra.BigSinceRead))
	fmt.Fprintf(&b, "| scale: containers (quiet + busy) | %d + %d |\n", sc.Quiet, sc.Busy)
	fmt.Fprintf(&b, "| scale: time from berth's start until every container is attached | %.1f s |\n", sc.AttachTime.Seconds())
	fmt.Fprintf(&b, "| scale: dockerd CPU during that attach | %.2f CPU-s (%.0f%% of a core) |\n", sc.AttachDockerdCPU.Seconds(), pct(sc.AttachDockerdCPU, sc.AttachTime.Seconds()))
	fmt.Fprintf(&b, "| scale: goroutines (open streams) | %d (%d; target <= 50 + 3 x streams = %d) |\n", sc.Goroutines, sc.Streams, 50+3*sc.Streams)
	fmt.Fprintf(&b, "| scale: open FDs | %d |\n", sc.FDs)
	fmt.Fprintf(&b, "| scale: RSS (peak) | %.1f MiB (%.1f MiB) |\n", float64(sc.RSSKiB)/1024, float64(sc.HWMKiB)/1024)
	fmt.Fprintf(&b, "| scale: berth CPU while every container is silent (%.0f s, %d streams open) | %.2f%% of a core |\n", sc.IdleSeconds, sc.IdleStreams, pct(sc.IdleBerthCPU, sc.IdleSeconds))
	fmt.Fprintf(&b, "| scale: dockerd CPU meanwhile | %.2f%% of a core |\n", pct(sc.IdleDockerdCPU, sc.IdleSeconds))
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// write puts bench.csv (the rows), bench-scale.csv (RSS, goroutines and FDs
// against the number of containers) and bench.md (the tables and the run's
// facts) in dir.
func (res *results) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
	rows := [][]string{{"row", "reader", "mode", "containers", "lines", "seconds", "lines_per_s", "cpu_s_per_1m", "dockerd_cpu_s_per_1m", "peak_rss_mib", "rate_ratio", "cpu_ratio", "dockerd_ratio", "rss_ratio"}}
	for _, r := range res.Rows {
		rows = append(rows, []string{r.Name, r.Reader, r.Mode, strconv.Itoa(r.Containers), strconv.FormatInt(r.Lines, 10),
			f(r.Elapsed.Seconds()), f(r.linesPerSec()), f(r.cpuPer1M()), f(r.dockerdPer1M()), f(r.rssMiB()),
			f(r.RateRatio), f(r.CPURatio), f(r.DockerdRatio), f(r.RSSRatio)})
	}
	if err := writeCSV(filepath.Join(dir, "bench.csv"), rows); err != nil {
		return err
	}
	rows = [][]string{{"containers", "rss_mib", "goroutines", "open_fds", "streams_open"}}
	for _, s := range res.Samples {
		rows = append(rows, []string{strconv.Itoa(s.Containers), f(float64(s.RSSKiB) / 1024), strconv.Itoa(s.Goroutines), strconv.Itoa(s.FDs), strconv.Itoa(s.Streams)})
	}
	if err := writeCSV(filepath.Join(dir, "bench-scale.csv"), rows); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Run of %s UTC: Docker %s (API %s), %d CPU cores, %d lines per single-container row (87-byte lines), %d quiet containers.\n\n",
		res.Start.UTC().Format("2006-01-02 15:04"), res.Docker, res.API, numCPU(), res.Settings.lines, res.Settings.containers)
	b.WriteString(res.rowsMarkdown())
	b.WriteString("\n")
	b.WriteString(res.othersMarkdown())
	b.WriteString("\n")
	b.WriteString(res.targetsMarkdown())
	return os.WriteFile(filepath.Join(dir, "bench.md"), []byte(b.String()), 0o644)
}

func writeCSV(path string, rows [][]string) error {
	fh, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(fh)
	if err := w.WriteAll(rows); err != nil {
		fh.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return fh.Close()
}

// limit is one line of the limits table of docs/BENCHMARKS.md: the
// documented figure of a row's metric. The check fails a run whose figure
// is more than twice as bad.
type limit struct {
	row, metric string
	documented  float64
}

// Markers around the limits table in docs/BENCHMARKS.md.
const (
	limitsBegin = "<!-- bench-limits:begin -->"
	limitsEnd   = "<!-- bench-limits:end -->"
)

// readLimits reads the table between the markers: "| row | metric |
// documented |" lines (a header and a separator line first).
func readLimits(path string) ([]limit, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var out []limit
	in := false
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == limitsBegin:
			in = true
			continue
		case line == limitsEnd:
			in = false
			continue
		}
		if !in || !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 3 {
			return nil, fmt.Errorf("%s: limits line %q: want | row | metric | documented |", path, line)
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		v, err := strconv.ParseFloat(cells[2], 64)
		if err != nil {
			continue // the header and the separator
		}
		out = append(out, limit{cells[0], cells[1], v})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no limits table between %s and %s", path, limitsBegin, limitsEnd)
	}
	return out, sc.Err()
}

// checkLimits fails on a figure more than twice as bad as documented:
// above twice for costs (cpu_ratio, rss_mib, goroutines), below half for
// speeds (rate_ratio).
func (res *results) checkLimits(path string, say func(string)) error {
	lims, err := readLimits(path)
	if err != nil {
		return err
	}
	var errs []error
	for _, l := range lims {
		got, higherIsWorse, ok := res.metric(l.row, l.metric)
		if !ok {
			errs = append(errs, fmt.Errorf("limits table of %s: no figure %q of row %q in this run", path, l.metric, l.row))
			continue
		}
		bad := got > 2*l.documented
		bound := fmt.Sprintf("<= %.2f", 2*l.documented)
		if !higherIsWorse {
			bad = got < l.documented/2
			bound = fmt.Sprintf(">= %.2f", l.documented/2)
		}
		verdict := "ok"
		if bad {
			verdict = "REGRESSION"
			errs = append(errs, fmt.Errorf("%s %s: %.2f, documented %.2f, allowed %s", l.row, l.metric, got, l.documented, bound))
		}
		say(fmt.Sprintf("limit %s %s: %.2f (documented %.2f, allowed %s): %s", l.row, l.metric, got, l.documented, bound, verdict))
	}
	return errors.Join(errs...)
}

// metric returns a figure of the run by row and metric name.
func (res *results) metric(rowName, metric string) (v float64, higherIsWorse, ok bool) {
	if rowName == "scale" {
		sc := res.Scale
		switch metric {
		case "rss_mib":
			return float64(sc.RSSKiB) / 1024, true, true
		case "goroutines_per_stream":
			if sc.Streams == 0 {
				return 0, true, false
			}
			return float64(sc.Goroutines) / float64(sc.Streams), true, true
		}
		return 0, false, false
	}
	for _, r := range res.Rows {
		if r.Name != rowName {
			continue
		}
		switch metric {
		case "cpu_ratio":
			return r.CPURatio, true, true
		case "rate_ratio":
			return r.RateRatio, false, true
		case "rss_mib":
			return r.rssMiB(), true, true
		}
	}
	return 0, false, false
}

// targetsMarkdown is issue 12's targets, each with this run's figure and
// met or missed.
func (res *results) targetsMarkdown() string {
	var b strings.Builder
	b.WriteString("| target | this run | verdict |\n| --- | --- | --- |\n")
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "missed"
	}
	add := func(target, figure string, ok bool) {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", target, figure, verdict(ok))
	}
	byName := map[string]row{}
	for _, r := range res.Rows {
		byName[r.Name] = r
	}
	json, jok := byName["json follow"]
	for _, name := range []string{"otlp-grpc follow", "otlp-http follow"} {
		r, ok := byName[name]
		if !ok {
			continue
		}
		add(name+": CPU per line <= 1.3x the floor", fmt.Sprintf("%.2fx", r.CPURatio), r.CPURatio <= 1.3)
		if jok {
			d := r.rssMiB() - json.rssMiB()
			add(name+": peak RSS within 10 MB of JSON lines", fmt.Sprintf("%.1f MiB vs %.1f MiB (%+.1f)", r.rssMiB(), json.rssMiB(), d), d <= 10*1e6/(1<<20))
		}
		add(name+": lines/s >= the floor follower's", fmt.Sprintf("%.2fx", r.RateRatio), r.RateRatio >= 1)
	}
	if jok {
		add("json follow: CPU per line <= 1.1x the floor", fmt.Sprintf("%.2fx", json.CPURatio), json.CPURatio <= 1.1)
	}
	for _, r := range res.Rows {
		if r.Mode == "drain" && r.Reader != readerFloor {
			add(r.Name+": lines/s >= 0.9x the floor's drain", fmt.Sprintf("%.2fx", r.RateRatio), r.RateRatio >= 0.9)
		}
	}
	for _, r := range res.Rows {
		if r.Reader != readerFloor && r.Reader != "telegraf" {
			add(r.Name+": dockerd CPU per line no higher than under the floor", fmt.Sprintf("%.2fx", r.DockerdRatio), r.DockerdRatio <= 1)
		}
	}
	ra := res.Reattach
	flat := float64(ra.BigReattach) <= 2*float64(ra.SmallReattach)+float64(10*time.Millisecond)
	add("re-attach cost flat in the log's size", fmt.Sprintf("%.1f ms (%d lines) vs %.1f ms (10 lines)", ms(ra.BigReattach), ra.Lines, ms(ra.SmallReattach)), flat)
	sc := res.Scale
	n := sc.Quiet + sc.Busy
	add(fmt.Sprintf("%d containers: RSS <= 100 MiB", n), fmt.Sprintf("%.1f MiB", float64(sc.RSSKiB)/1024), sc.RSSKiB <= 100*1024)
	add(fmt.Sprintf("%d containers: goroutines <= 50 + 3 x open streams", n), fmt.Sprintf("%d <= %d", sc.Goroutines, 50+3*sc.Streams), sc.Goroutines <= 50+3*sc.Streams)
	add("berth idle CPU under 1% of a core", fmt.Sprintf("%.2f%%", pct(sc.IdleBerthCPU, sc.IdleSeconds)), pct(sc.IdleBerthCPU, sc.IdleSeconds) < 1)
	add("dockerd CPU while every container is silent under 1% of a core", fmt.Sprintf("%.2f%%", pct(sc.IdleDockerdCPU, sc.IdleSeconds)), pct(sc.IdleDockerdCPU, sc.IdleSeconds) < 1)
	add("every container attached within 30 s of start", fmt.Sprintf("%.1f s", sc.AttachTime.Seconds()), sc.AttachTime <= 30*time.Second)
	return b.String()
}
