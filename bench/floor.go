package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
)

// floorMain is the floor reader, run as a subprocess of the benchmark so
// that its CPU and peak RSS are its own: the Docker Go client reads each
// container's whole log (ContainerLogs with timestamps, as every collector
// asks, berth included; stdcopy.StdCopy), following it with follow, to a
// writer that only counts lines and keeps the last one's timestamp. A follow
// stream that ends before per lines (Docker 20.10 can end a follow stream at
// the container's exit before its last lines) is resumed, as berth does,
// with a read since the last timestamp. It prints {"lines": n}.
func floorMain(mode, ids string, per int64) error {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	list := strings.Split(ids, ",")
	counts := make([]lineCounter, len(list))
	errs := make([]error, len(list))
	for i, id := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &counts[i]
			opts := container.LogsOptions{ShowStdout: true, ShowStderr: true, Timestamps: true, Follow: mode == "follow"}
			for attempt := 0; ; attempt++ {
				if err := c.read(ctx, cli, id, opts); err != nil {
					errs[i] = err
					return
				}
				if mode != "follow" || c.n >= per || attempt == 3 {
					return
				}
				// Resume after the last line read: since is inclusive, so
				// lines at that very timestamp are skipped.
				opts.Follow, opts.Since, c.skipTS = false, string(c.last), string(c.last)
				c.resumed++
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var n, resumed int64
	for _, c := range counts {
		n += c.n
		resumed += c.resumed
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]int64{"lines": n, "resumed": resumed})
}

// lineCounter is the floor's writer: StdCopy writes it one frame, one line
// ("<timestamp> <line>\n"), at a time.
type lineCounter struct {
	n, resumed int64
	last       []byte // timestamp of the last line
	skipTS     string // on a resumed read: skip the lines of this timestamp
}

func (c *lineCounter) read(ctx context.Context, cli *client.Client, id string, opts container.LogsOptions) error {
	rc, err := cli.ContainerLogs(ctx, id, opts)
	if err != nil {
		return fmt.Errorf("logs of %s: %w", id, err)
	}
	defer rc.Close()
	if _, err := stdcopy.StdCopy(c, c, rc); err != nil {
		return fmt.Errorf("reading the logs of %s: %w", id, err)
	}
	c.skipTS = ""
	return nil
}

func (c *lineCounter) Write(p []byte) (int, error) {
	sp := bytes.IndexByte(p, ' ')
	if sp > 0 && c.skipTS != "" && string(p[:sp]) == c.skipTS {
		return len(p), nil
	}
	c.skipTS = ""
	c.n += int64(bytes.Count(p, []byte{'\n'}))
	if sp > 0 {
		c.last = append(c.last[:0], p[:sp]...)
	}
	return len(p), nil
}

// floorRun is what one run of the floor reader cost.
type floorRun struct {
	lines   int64
	resumed int64 // follow streams that ended early and were resumed
	cpu     time.Duration
	maxRSS  int64 // KiB
	elapsed time.Duration
}

// runFloor runs the floor reader over cs (mode drain or follow) and waits
// for it: the caller starts the containers to follow just before.
func runFloor(self, mode string, cs []ctr, per int, started time.Time) (floorRun, error) {
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	cmd := exec.Command(self, "-floor", mode, "-ids", strings.Join(ids, ","), "-per", strconv.Itoa(per))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		return floorRun{}, fmt.Errorf("floor reader: %w: %s", err, errb.String())
	}
	end := time.Now()
	var res struct{ Lines, Resumed int64 }
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return floorRun{}, fmt.Errorf("floor reader's output %q: %w", out.String(), err)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return floorRun{}, errors.New("floor reader: no rusage")
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return floorRun{lines: res.Lines, resumed: res.Resumed, cpu: cpu, maxRSS: ru.Maxrss, elapsed: end.Sub(started)}, nil
}
