package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
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
// container's whole log (ContainerLogs, stdcopy.StdCopy), following it with
// follow, to a writer that only counts newlines. It prints {"lines": n}.
func floorMain(mode, ids string) error {
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
			rc, err := cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: mode == "follow"})
			if err != nil {
				errs[i] = fmt.Errorf("logs of %s: %w", id, err)
				return
			}
			defer rc.Close()
			if _, err := stdcopy.StdCopy(&counts[i], &counts[i], rc); err != nil {
				errs[i] = fmt.Errorf("reading the logs of %s: %w", id, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var n int64
	for _, c := range counts {
		n += c.n
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]int64{"lines": n})
}

// lineCounter is an io.Writer that counts newlines (the floor's only work).
type lineCounter struct{ n int64 }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.n += int64(bytes.Count(p, []byte{'\n'}))
	return len(p), nil
}

// floorRun is what one run of the floor reader cost.
type floorRun struct {
	lines   int64
	cpu     time.Duration
	maxRSS  int64 // KiB
	elapsed time.Duration
}

// runFloor runs the floor reader over cs (mode drain or follow) and waits
// for it: the caller starts the containers to follow just before.
func runFloor(self, mode string, cs []ctr, started time.Time) (floorRun, error) {
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	cmd := exec.Command(self, "-floor", mode, "-ids", strings.Join(ids, ","))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		return floorRun{}, fmt.Errorf("floor reader: %w: %s", err, errb.String())
	}
	end := time.Now()
	var res struct{ Lines int64 }
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return floorRun{}, fmt.Errorf("floor reader's output %q: %w", out.String(), err)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return floorRun{}, errors.New("floor reader: no rusage")
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return floorRun{lines: res.Lines, cpu: cpu, maxRSS: ru.Maxrss, elapsed: end.Sub(started)}, nil
}
