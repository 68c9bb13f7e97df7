// Command bench measures berth against the floor every reader of the Docker
// Engine API pays (the Docker Go client reading the same log to a discard
// writer), on the local daemon, in one run and on the same logs; it prints a
// table with ratios to the floor and writes bench.csv, bench-scale.csv and
// bench.md (docs/BENCHMARKS.md's tables) to BERTH_BENCH_OUT. docs/BENCHMARKS.md
// says what each figure is and how it is taken.
//
// Run it from the repository root with `make bench` (full run) or
// `make bench-ci` (the short variant CI runs, which fails on a gross
// regression against the limits table of docs/BENCHMARKS.md).
//
// Environment:
//
//	BERTH_BENCH_LINES       lines of the single-container rows (1000000)
//	BERTH_BENCH_CONTAINERS  quiet containers of the scale phase (500)
//	BERTH_BENCH_IDLE        how long the idle CPU is measured (60s)
//	BERTH_BENCH_OUT         directory of the CSV and markdown files (docs)
//	BERTH_BENCH_LOG         the run's detailed log ($TMPDIR/berth-bench.log)
//	BERTH_BENCH_CHECK       a BENCHMARKS.md whose limits table the ratios are
//	                        checked against (fail beyond twice the documented)
//	BERTH_BENCH_LOCK_WAIT   longest wait for the e2e suite's lock (30m)
//	BERTH_BENCH_PEERS       1: also measure peers (Telegraf's docker_log),
//	                        built outside berth's module into a cache; never in CI
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/docker/docker/client"
)

// settings are the run's sizes and outputs.
type settings struct {
	lines      int
	containers int
	busy       int
	idle       time.Duration
	latRate    int
	latSeconds int
	out        string
	logPath    string
	check      string
	lockWait   time.Duration
	peers      bool
}

func main() {
	floor := flag.String("floor", "", "internal: run the floor reader (drain or follow)")
	ids := flag.String("ids", "", "internal: the floor reader's container IDs, comma-separated")
	per := flag.Int64("per", 0, "internal: lines each container writes")
	flag.Parse()
	if *floor != "" {
		if err := floorMain(*floor, *ids, *per); err != nil {
			fmt.Fprintln(os.Stderr, "bench floor:", err)
			os.Exit(1)
		}
		return
	}
	s, err := readSettings()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if err := run(s); err != nil {
		fmt.Fprintln(os.Stderr, "bench: FAIL:", err)
		os.Exit(1)
	}
}

func envInt(key string, def int) (int, error) {
	v := os.Getenv(key)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive integer", key, v)
	}
	return n, nil
}

func envDuration(key string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(key)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive duration such as 60s", key, v)
	}
	return d, nil
}

func readSettings() (settings, error) {
	s := settings{busy: 10, latRate: 10000, out: "docs", check: os.Getenv("BERTH_BENCH_CHECK"), peers: os.Getenv("BERTH_BENCH_PEERS") == "1"}
	var errs []error
	var err error
	s.lines, err = envInt("BERTH_BENCH_LINES", 1000000)
	errs = append(errs, err)
	s.containers, err = envInt("BERTH_BENCH_CONTAINERS", 500)
	errs = append(errs, err)
	s.idle, err = envDuration("BERTH_BENCH_IDLE", 60*time.Second)
	errs = append(errs, err)
	s.lockWait, err = envDuration("BERTH_BENCH_LOCK_WAIT", 30*time.Minute)
	errs = append(errs, err)
	if v := os.Getenv("BERTH_BENCH_OUT"); v != "" {
		s.out = v
	}
	s.logPath = os.Getenv("BERTH_BENCH_LOG")
	if s.logPath == "" {
		s.logPath = filepath.Join(os.TempDir(), "berth-bench.log")
	}
	// The paced run lasts a tenth of the single-container rows' line count
	// at 10,000 lines/s: 10 s for 1M lines, 1 s for 100k (at least 3 s).
	s.latSeconds = max(3, s.lines/100000)
	if s.lines < 1000 {
		errs = append(errs, fmt.Errorf("BERTH_BENCH_LINES=%d: want at least 1000", s.lines))
	}
	return s, errors.Join(errs...)
}

// run takes the e2e lock, prepares the images and binaries, measures, and
// reports; every container it made is removed whatever happens.
func run(s settings) (err error) {
	logf, err := os.Create(s.logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	lg := &logger{w: logf}
	say := func(m string) { fmt.Fprintln(os.Stderr, "bench:", m); lg.printf("%s", m) }

	repo, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(repo, "cmd", "berth")); err != nil {
		return fmt.Errorf("run from berth's repository root (make bench): %w", err)
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	ctx, cancel := dctx(10 * time.Second)
	ver, err := cli.ServerVersion(ctx)
	cancel()
	if err != nil {
		return fmt.Errorf("the Docker daemon (%s) does not answer: %w", cli.DaemonHost(), err)
	}
	dpid, err := dockerdPID(cli.DaemonHost())
	if err != nil {
		return err
	}
	unlock, err := lockRun(s.lockWait, say)
	if err != nil {
		return err
	}
	defer unlock()

	tmp, err := os.MkdirTemp("", "berth-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	e := &env{docker: cli, runID: strconv.FormatInt(time.Now().UnixNano(), 36), tmp: tmp, repo: repo}
	if err := e.removeAll(false); err != nil {
		return err
	}
	defer func() {
		if rerr := e.removeAll(true); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	// Interrupted: remove this run's containers before going.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	defer func() { close(stopWatch); <-watchDone }()
	go func() {
		defer close(watchDone)
		select {
		case sig := <-sigs:
			fmt.Fprintf(os.Stderr, "bench: %v: removing this run's containers\n", sig)
			_ = e.removeAll(true)
			os.Exit(1)
		case <-stopWatch:
		}
	}()

	say(fmt.Sprintf("Docker %s (API %s), %d lines per single-container row, %d quiet containers; details in %s",
		ver.Version, ver.APIVersion, s.lines, s.containers, s.logPath))
	berthBin := filepath.Join(tmp, "berth")
	if err := e.goBuild(berthBin, "./cmd/berth"); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if err := e.buildLoggenImage(); err != nil {
		return err
	}
	recv, err := startReceiver()
	if err != nil {
		return err
	}
	defer recv.close()

	m := &measurer{s: s, e: e, lg: lg, say: say, recv: recv, berth: berthBin, self: self, dockerd: dpid}
	res := &results{Docker: ver.Version, API: ver.APIVersion, Settings: s, Start: time.Now()}
	if err := m.all(res); err != nil {
		// Said before the cleanup, which may take minutes.
		say("FAIL: " + err.Error() + " (removing this run's containers)")
		return err
	}
	res.finish()
	table := res.table()
	fmt.Print(table)
	lg.printf("\n%s", table)
	if err := res.write(s.out); err != nil {
		return err
	}
	say("wrote " + filepath.Join(s.out, "bench.csv") + ", bench-scale.csv, bench.md")
	if s.check != "" {
		if err := res.checkLimits(s.check, say); err != nil {
			return err
		}
	}
	return nil
}

// logger writes the run's details.
type logger struct{ w io.Writer }

func (l *logger) printf(format string, a ...any) {
	fmt.Fprintf(l.w, "%s "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05.000")}, a...)...)
}
