// Command loggen writes sequence-numbered log lines for berth's e2e tests. It
// is built static (CGO_ENABLED=0) and shipped in an image FROM scratch.
//
// Every numbered line starts with "run=<id> stream=<out|err> seq=<%06d>" (see
// e2e/internal/lines). The run id is taken at process start, so each start
// of a restarted container writes a distinguishable run.
//
// Order of output: the -line-sizes lines (each followed by an empty line with
// -empty-after-big), then the -empty line, then the
// -invalid-utf8 line, then -n normal lines (0 = until SIGTERM/SIGINT), then
// the -progress bar and the -unterminated text, neither ending its line. Then,
// with -then-rate, it goes on writing numbered lines slowly; with
// -sleep-after, it stays alive quietly. With -trace NAME it writes only
// numbered stdout lines around a stack trace (see lines.Traces); with
// -structured NAME only the lines lines.Structured[NAME]. SIGTERM/SIGINT end it at a line
// boundary with exit status 0, after flushing.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/berthlog/berth/e2e/internal/lines"
)

type options struct {
	n           int
	stderrEvery int
	rate        float64
	both        bool
	size        int
	lineSizes   []int
	empty       bool
	emptyAfter  bool
	invalid     bool
	sleepAfter  time.Duration
	thenRate    float64
	runID       string
	waitUSR1    bool
	trace       string
	tracePause  time.Duration
	progress    int
	unterm      string
	structured  string
}

var (
	stop    atomic.Bool
	stopped = make(chan struct{})
)

func main() {
	var o options
	var sizes string
	flag.IntVar(&o.n, "n", 10, "normal lines to write per stream (0 = until signalled)")
	flag.IntVar(&o.stderrEvery, "stderr-every", 0, "write every Kth line to stderr (0 = never)")
	flag.Float64Var(&o.rate, "rate", 0, "lines per second per stream (0 = as fast as possible)")
	flag.BoolVar(&o.both, "both", false, "write stdout and stderr concurrently, each with its own sequence")
	flag.IntVar(&o.size, "size", 0, "pad normal lines to this many bytes")
	flag.StringVar(&sizes, "line-sizes", "", "comma-separated sizes of big lines to write first (e.g. 20480,204800,3145728)")
	flag.BoolVar(&o.empty, "empty", false, "write one empty line after the big lines")
	flag.BoolVar(&o.emptyAfter, "empty-after-big", false, "write an empty line after each big line (Docker 20.10's local driver drops the newline of a split line; the empty line restores it)")
	flag.BoolVar(&o.invalid, "invalid-utf8", false, "write one line that is not valid UTF-8 after the empty line")
	flag.DurationVar(&o.sleepAfter, "sleep-after", 0, "stay alive this long after writing (until signalled)")
	flag.Float64Var(&o.thenRate, "then-rate", 0, "after the -n lines, go on writing numbered stdout lines at this rate until signalled (instead of -sleep-after)")
	flag.StringVar(&o.runID, "run-id", "", "run id (default: nanoseconds since the epoch at process start)")
	flag.BoolVar(&o.waitUSR1, "wait-usr1", false, "write nothing until SIGUSR1 (a quiet container that speaks when the test says so)")
	flag.StringVar(&o.trace, "trace", "", "write, instead of the other output, lines.TracePlain numbered stdout lines, the stack trace lines.Traces[NAME] (java, python, go), and lines.TracePlain more")
	flag.DurationVar(&o.tracePause, "trace-pause", 0, "with -trace, pause this long after the trace's first lines.JavaHalf lines")
	flag.IntVar(&o.progress, "progress", 0, "after the -n lines, write lines.Progress(N) to stdout: a progress bar of at least N bytes, no newline")
	flag.StringVar(&o.unterm, "unterminated", "", "after the -n lines (and -progress), write this to stdout with no newline")
	flag.StringVar(&o.structured, "structured", "", "write, instead of the other output, the stdout lines lines.Structured[NAME] (json, logfmt)")
	flag.Parse()
	if o.runID == "" {
		o.runID = strconv.FormatInt(time.Now().UnixNano(), 10)
	}
	for _, s := range strings.Split(sizes, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "loggen: bad -line-sizes entry %q\n", s)
			os.Exit(2)
		}
		o.lineSizes = append(o.lineSizes, n)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			stop.Store(true)
			close(stopped)
		case <-done:
		}
	}()

	if o.waitUSR1 {
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		select {
		case <-usr1:
		case <-stopped:
			return
		}
	}
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "loggen: %v\n", err)
		os.Exit(1)
	}
	close(done)
}

func run(o options) error {
	if o.trace != "" {
		return traces(o)
	}
	if o.structured != "" {
		ls, ok := lines.Structured[o.structured]
		if !ok {
			return fmt.Errorf("-structured %q: no such lines; use json or logfmt", o.structured)
		}
		out := newWriter(os.Stdout, true)
		for _, l := range ls {
			if err := out.line(l); err != nil {
				return err
			}
		}
		return nil
	}
	out := newWriter(os.Stdout, o.rate > 0)
	errw := newWriter(os.Stderr, o.rate > 0)

	seq := 0
	for _, sz := range o.lineSizes {
		if err := out.line(lines.Big(o.runID, lines.Out, seq, sz)); err != nil {
			return err
		}
		if o.emptyAfter {
			if err := out.line(""); err != nil {
				return err
			}
		}
		seq++
	}
	if o.empty {
		if err := out.line(""); err != nil {
			return err
		}
	}
	if o.invalid {
		if err := out.line(lines.InvalidUTF8(o.runID, lines.Out, seq)); err != nil {
			return err
		}
		seq++
	}

	var err error
	if o.both {
		var wg sync.WaitGroup
		var errOut, errErr error
		wg.Add(2)
		go func() { defer wg.Done(); errOut = sequence(o, out, out, lines.Out, seq, 0) }()
		go func() { defer wg.Done(); errErr = sequence(o, errw, errw, lines.Err, 0, 0) }()
		wg.Wait()
		if errOut != nil {
			err = errOut
		} else {
			err = errErr
		}
	} else {
		err = sequence(o, out, errw, "", seq, o.stderrEvery)
	}
	if err != nil {
		return err
	}
	if err := out.flush(); err != nil {
		return err
	}
	if err := errw.flush(); err != nil {
		return err
	}
	if o.progress > 0 {
		if _, err := io.WriteString(os.Stdout, lines.Progress(o.progress)); err != nil {
			return err
		}
	}
	if o.unterm != "" {
		if _, err := io.WriteString(os.Stdout, o.unterm); err != nil {
			return err
		}
	}
	if o.thenRate > 0 && o.n > 0 && !stop.Load() {
		tail := o
		tail.n, tail.rate = 0, o.thenRate
		w := newWriter(os.Stdout, true)
		return sequence(tail, w, w, lines.Out, seq+o.n, 0)
	}
	if o.sleepAfter > 0 && !stop.Load() {
		t := time.NewTimer(o.sleepAfter)
		defer t.Stop()
		select {
		case <-t.C:
		case <-stopped:
		}
	}
	return nil
}

// sequence writes o.n lines (forever with 0) numbered from first. With
// every > 0 each every-th line goes to errw instead of out; stream "" means
// the label follows the writer ("out" or "err").
func sequence(o options, out, errw *writer, stream string, first, every int) error {
	start := time.Now()
	for i := 0; o.n == 0 || i < o.n; i++ {
		if stop.Load() {
			break
		}
		if o.rate > 0 {
			due := start.Add(time.Duration(float64(i) / o.rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
		w, label := out, stream
		if every > 0 && (i+1)%every == 0 {
			w = errw
		}
		if label == "" {
			label = lines.Out
			if w == errw {
				label = lines.Err
			}
		}
		if err := w.line(lines.Format(o.runID, label, first+i, o.size)); err != nil {
			return err
		}
	}
	if err := out.flush(); err != nil {
		return err
	}
	return errw.flush()
}

// writer writes whole lines: buffered when writing as fast as possible,
// flushed after each line when rate-limited.
type writer struct {
	mu       sync.Mutex
	w        *bufio.Writer
	eachLine bool
}

func newWriter(f io.Writer, eachLine bool) *writer {
	return &writer{w: bufio.NewWriterSize(f, 64*1024), eachLine: eachLine}
}

func (w *writer) line(s string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.w.WriteString(s); err != nil {
		return err
	}
	if err := w.w.WriteByte('\n'); err != nil {
		return err
	}
	if w.eachLine {
		return w.w.Flush()
	}
	return nil
}

func (w *writer) flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Flush()
}

// traces writes the -trace output: numbered lines, a stack trace (paused in
// the middle with -trace-pause), numbered lines; every line flushed.
func traces(o options) error {
	trace, ok := lines.Traces[o.trace]
	if !ok {
		return fmt.Errorf("-trace %q: no such trace; use java, python or go", o.trace)
	}
	out := newWriter(os.Stdout, true)
	for i := range lines.TracePlain {
		if err := out.line(lines.Format(o.runID, lines.Out, i, 0)); err != nil {
			return err
		}
	}
	for i, l := range strings.Split(trace, "\n") {
		if i == lines.JavaHalf && o.tracePause > 0 {
			time.Sleep(o.tracePause)
		}
		if err := out.line(l); err != nil {
			return err
		}
	}
	for i := range lines.TracePlain {
		if err := out.line(lines.Format(o.runID, lines.Out, lines.TracePlain+i, 0)); err != nil {
			return err
		}
	}
	return nil
}
