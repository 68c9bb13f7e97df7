//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
)

func isNotFound(err error) bool { return client.IsErrNotFound(err) }

// ContainerSpec describes a loggen container.
type ContainerSpec struct {
	Name string   // default: uniqueName(t, "c")
	Args []string // loggen flags
	Tty  bool
	// LogDriver is "json-file" (default) or "local".
	LogDriver string
	// LogOpts are the driver's options (max-size, max-file, ...).
	LogOpts map[string]string
	// AutoRemove has the daemon remove the container, and its log, as soon
	// as it exits (docker run --rm).
	AutoRemove bool
}

// Ctr is a container the test created. It is force-removed at cleanup.
type Ctr struct {
	ID   string
	Name string
	Tty  bool
}

var nameRe = regexp.MustCompile(`[^a-z0-9_.-]+`)

// uniqueName returns a container name that says which test made it.
func uniqueName(t *testing.T, what string) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	tn := nameRe.ReplaceAllString(strings.ToLower(t.Name()), "-")
	if len(tn) > 40 {
		tn = tn[:40]
	}
	return fmt.Sprintf("berth-e2e-%s-%s-%s", tn, what, hex.EncodeToString(b))
}

func dctx(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// createContainer creates (does not start) a loggen container with the
// suite's label and no network, and registers its forced removal.
func createContainer(t *testing.T, spec ContainerSpec) *Ctr {
	t.Helper()
	if spec.Name == "" {
		spec.Name = uniqueName(t, "c")
	}
	if spec.LogDriver == "" {
		spec.LogDriver = "json-file"
	}
	ctx, cancel := dctx(30 * time.Second)
	defer cancel()
	resp, err := suite.docker.ContainerCreate(ctx,
		&container.Config{
			Image:  imageRef,
			Cmd:    spec.Args,
			Tty:    spec.Tty,
			Labels: map[string]string{labelKey: labelValue, runLabel: suite.runID},
		},
		&container.HostConfig{
			NetworkMode: "none",
			LogConfig:   container.LogConfig{Type: spec.LogDriver, Config: spec.LogOpts},
			AutoRemove:  spec.AutoRemove,
		},
		nil, nil, spec.Name)
	if err != nil {
		t.Fatalf("creating container %s: %v", spec.Name, err)
	}
	c := &Ctr{ID: resp.ID, Name: spec.Name, Tty: spec.Tty}
	t.Cleanup(func() { c.remove(t) })
	return c
}

func (c *Ctr) start(t *testing.T) {
	t.Helper()
	if err := c.startErr(); err != nil {
		t.Fatal(err)
	}
}

// startErr starts the container; safe to call from any goroutine.
func (c *Ctr) startErr() error {
	ctx, cancel := dctx(30 * time.Second)
	defer cancel()
	if err := suite.docker.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		return fmt.Errorf("starting %s: %w", c.Name, err)
	}
	return nil
}

// runContainer creates and starts a container.
func runContainer(t *testing.T, spec ContainerSpec) *Ctr {
	t.Helper()
	c := createContainer(t, spec)
	c.start(t)
	return c
}

func (c *Ctr) remove(t *testing.T) {
	ctx, cancel := dctx(30 * time.Second)
	defer cancel()
	if err := suite.docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !isNotFound(err) {
		t.Errorf("removing container %s: %v", c.Name, err)
	}
}

func (c *Ctr) inspect(t *testing.T) container.InspectResponse {
	t.Helper()
	ctx, cancel := dctx(30 * time.Second)
	defer cancel()
	info, err := suite.docker.ContainerInspect(ctx, c.ID)
	if err != nil {
		t.Fatalf("inspecting %s: %v", c.Name, err)
	}
	return info
}

// waitExited polls until the container is no longer running.
func (c *Ctr) waitExited(t *testing.T, timeout time.Duration) container.InspectResponse {
	t.Helper()
	var info container.InspectResponse
	waitFor(t, fmt.Sprintf("container %s to exit", c.Name), timeout, func() (bool, string) {
		info = c.inspect(t)
		return info.State != nil && !info.State.Running && !info.State.Restarting && info.State.Status != "created",
			fmt.Sprintf("state %+v", info.State)
	})
	return info
}

// restart restarts the container (SIGTERM, then SIGKILL after timeoutSec).
func (c *Ctr) restart(t *testing.T, timeoutSec int) {
	t.Helper()
	ctx, cancel := dctx(time.Duration(timeoutSec+30) * time.Second)
	defer cancel()
	if err := suite.docker.ContainerRestart(ctx, c.ID, container.StopOptions{Timeout: &timeoutSec}); err != nil {
		t.Fatalf("restarting %s: %v", c.Name, err)
	}
}

// signal sends the container's main process a signal (e.g. "USR1").
func (c *Ctr) signal(t *testing.T, sig string) {
	t.Helper()
	ctx, cancel := dctx(30 * time.Second)
	defer cancel()
	if err := suite.docker.ContainerKill(ctx, c.ID, sig); err != nil {
		t.Fatalf("sending SIG%s to %s: %v", sig, c.Name, err)
	}
}

// stop stops the container (SIGTERM, then SIGKILL after timeoutSec).
func (c *Ctr) stop(t *testing.T, timeoutSec int) {
	t.Helper()
	ctx, cancel := dctx(time.Duration(timeoutSec+30) * time.Second)
	defer cancel()
	if err := suite.docker.ContainerStop(ctx, c.ID, container.StopOptions{Timeout: &timeoutSec}); err != nil {
		t.Fatalf("stopping %s: %v", c.Name, err)
	}
}

// LogLine is one line of a container's log as the daemon itself returns it.
type LogLine struct {
	Stream string // "stdout" or "stderr" (TTY: always "stdout")
	Body   string // without the newline (TTY: one trailing "\r" removed)
}

// dockerLog reads the container's whole log from the daemon (no follow): the
// ground truth the records of berth are compared with. Docker's 16 KiB
// partial chunks come back without newlines between them, so lines are whole.
func dockerLog(t *testing.T, c *Ctr) []LogLine {
	t.Helper()
	ctx, cancel := dctx(2 * time.Minute)
	defer cancel()
	rc, err := suite.docker.ContainerLogs(ctx, c.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatalf("docker logs %s: %v", c.Name, err)
	}
	defer rc.Close()
	var out []LogLine
	if c.Tty {
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatalf("reading docker logs %s: %v", c.Name, err)
		}
		for _, l := range splitLines(b) {
			out = append(out, LogLine{"stdout", strings.TrimSuffix(l, "\r")})
		}
		return out
	}
	var so, se bytes.Buffer
	if _, err := stdcopy.StdCopy(&so, &se, rc); err != nil {
		t.Fatalf("reading docker logs %s: %v", c.Name, err)
	}
	for _, l := range splitLines(so.Bytes()) {
		out = append(out, LogLine{"stdout", l})
	}
	for _, l := range splitLines(se.Bytes()) {
		out = append(out, LogLine{"stderr", l})
	}
	return out
}

func splitLines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	s := string(b)
	s = strings.TrimSuffix(s, "\n")
	return strings.Split(s, "\n")
}

// lastLogLine returns the last line of the container's log with its
// timestamp (tail=1).
func lastLogLine(t *testing.T, c *Ctr) (time.Time, string) {
	t.Helper()
	ctx, cancel := dctx(time.Minute)
	defer cancel()
	rc, err := suite.docker.ContainerLogs(ctx, c.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true, Timestamps: true, Tail: "1"})
	if err != nil {
		t.Fatalf("docker logs tail=1 %s: %v", c.Name, err)
	}
	defer rc.Close()
	var so, se bytes.Buffer
	if _, err := stdcopy.StdCopy(&so, &se, rc); err != nil {
		t.Fatalf("reading docker logs tail=1 %s: %v", c.Name, err)
	}
	l := strings.TrimSuffix(so.String()+se.String(), "\n")
	ts, body, _ := strings.Cut(l, " ")
	tm, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil && l != "" {
		t.Fatalf("parsing the timestamp of %q: %v", l, err)
	}
	return tm, body
}

// waitFor polls cond every 50 ms until it holds or timeout passes; then it
// fails the test, saying what it waited for and the last state cond gave.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	if ok, state := waitUntil(timeout, cond); !ok {
		t.Fatalf("timed out after %v waiting for %s; last state: %s", timeout, what, state)
	}
}

// waitUntil polls cond every 50 ms until it holds or timeout passes, and
// returns whether it held and the last state it gave.
func waitUntil(timeout time.Duration, cond func() (bool, string)) (bool, string) {
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return true, state
		}
		if time.Now().After(deadline) {
			return false, state
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// parallel runs f(i) for i in [0,n) on n goroutines and waits for them all.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func() { defer wg.Done(); f(i) }()
	}
	wg.Wait()
}
