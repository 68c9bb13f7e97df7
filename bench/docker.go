package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
)

const (
	// labelKey is carried by every container the benchmark creates (and by
	// its image); runLabel names the run, and berth collects only the
	// containers carrying it.
	labelKey = "berth.bench"
	runLabel = "berth.bench.run"
	imageRef = "berth-bench-loggen:latest"
	// lineSize is the length of every generated line, newline excluded.
	lineSize = 87
)

// env is the benchmark's Docker side: the client, the run's id and scratch
// directory.
type env struct {
	docker *client.Client
	runID  string
	tmp    string
	repo   string
}

// dctx is a context bounded by d.
func dctx(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// goBuild builds pkg (relative to the repository root) into out.
func (e *env) goBuild(out, pkg string, extraEnv ...string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = e.repo
	cmd.Env = append(os.Environ(), extraEnv...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, buf.String())
	}
	return nil
}

// buildLoggenImage builds e2e/loggen static and an image FROM scratch around
// it, through the API with an in-memory context: no registry is asked.
func (e *env) buildLoggenImage() error {
	bin := filepath.Join(e.tmp, "loggen")
	if err := e.goBuild(bin, "./e2e/loggen", "CGO_ENABLED=0", "GOOS=linux"); err != nil {
		return err
	}
	exe, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	dockerfile := "FROM scratch\nLABEL " + labelKey + "=1\nCOPY loggen /loggen\nENTRYPOINT [\"/loggen\"]\n"
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, []byte(dockerfile)}, {"loggen", 0o755, exe}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	ctx, cancel := dctx(5 * time.Minute)
	defer cancel()
	resp, err := e.docker.ImageBuild(ctx, &tb, build.ImageBuildOptions{
		Tags: []string{imageRef}, Dockerfile: "Dockerfile", Remove: true, ForceRemove: true,
		NetworkMode: "none", Version: build.BuilderV1,
	})
	if err != nil {
		return fmt.Errorf("building %s: %w", imageRef, err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var msg struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("building %s: reading its output: %w", imageRef, err)
		}
		if msg.Error != "" {
			return fmt.Errorf("building %s: %s", imageRef, msg.Error)
		}
	}
}

// logOpts keep a container's whole log in one file: the daemon's own
// log-opts may rotate it (max-size 10m here), and a drained log must hold
// every line.
func logOpts() map[string]string { return map[string]string{"max-size": "4g", "max-file": "1"} }

// ctr is one generator container.
type ctr struct {
	ID   string
	Name string
}

// create creates a loggen container with args, labelled, network none,
// json-file (the daemon's default driver for this benchmark).
func (e *env) create(name string, args ...string) (ctr, error) {
	ctx, cancel := dctx(time.Minute)
	defer cancel()
	resp, err := e.docker.ContainerCreate(ctx,
		&container.Config{Image: imageRef, Cmd: args, Labels: map[string]string{labelKey: "1", runLabel: e.runID}},
		&container.HostConfig{NetworkMode: "none", LogConfig: container.LogConfig{Type: "json-file", Config: logOpts()}},
		nil, nil, e.name(name))
	if err != nil {
		return ctr{}, fmt.Errorf("creating container %s: %w", name, err)
	}
	return ctr{ID: resp.ID, Name: name}, nil
}

// name is the name of the run's container called short.
func (e *env) name(short string) string { return "berth-bench-" + e.runID + "-" + short }

func (e *env) start(c ctr) error {
	ctx, cancel := dctx(time.Minute)
	defer cancel()
	if err := e.docker.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		return fmt.Errorf("starting container %s: %w", c.Name, err)
	}
	return nil
}

// startAll starts the containers cs at once.
func (e *env) startAll(cs []ctr) error {
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = e.start(c) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// run creates and starts a loggen container.
func (e *env) run(name string, args ...string) (ctr, error) {
	c, err := e.create(name, args...)
	if err != nil {
		return c, err
	}
	return c, e.start(c)
}

// runMany creates and starts n containers named prefix-i, four at a time.
func (e *env) runMany(prefix string, n int, args ...string) ([]ctr, error) {
	out := make([]ctr, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i], errs[i] = e.run(fmt.Sprintf("%s-%d", prefix, i), args...)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return out, errors.Join(errs...)
}

// waitExited waits until every container has exited with status 0.
func (e *env) waitExited(cs []ctr, within time.Duration) error {
	deadline := time.Now().Add(within)
	for _, c := range cs {
		for {
			ctx, cancel := dctx(30 * time.Second)
			info, err := e.docker.ContainerInspect(ctx, c.ID)
			cancel()
			if err != nil {
				return fmt.Errorf("inspecting %s: %w", c.Name, err)
			}
			if info.State != nil && !info.State.Running && info.State.Status == "exited" {
				if info.State.ExitCode != 0 {
					return fmt.Errorf("container %s exited with status %d", c.Name, info.State.ExitCode)
				}
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("container %s still %s after %v", c.Name, info.State.Status, within)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// kill stops containers (SIGKILL) one after the other: Docker 20.10 hung
// here (every later kill, start and removal of any container blocked in the
// daemon) after ten kills at once of followed containers among 500.
func (e *env) kill(cs []ctr) error {
	var errs []error
	for _, c := range cs {
		ctx, cancel := dctx(time.Minute)
		if err := e.docker.ContainerKill(ctx, c.ID, "KILL"); err != nil && !errdefs.IsConflict(err) {
			errs = append(errs, fmt.Errorf("killing %s: %w", c.Name, err))
		}
		cancel()
	}
	return errors.Join(errs...)
}

// removeAll force-removes the containers labelled labelKey: with own, only
// this run's; else every one (leftovers of an interrupted run).
func (e *env) removeAll(own bool) error {
	f := filters.NewArgs(filters.Arg("label", labelKey+"=1"))
	if own {
		f.Add("label", runLabel+"="+e.runID)
	}
	ctx, cancel := dctx(5 * time.Minute)
	defer cancel()
	list, err := e.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return fmt.Errorf("listing the benchmark's containers: %w", err)
	}
	var errs []error
	var mu sync.Mutex
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, c := range list {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := e.docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
				mu.Lock()
				errs = append(errs, fmt.Errorf("removing %s: %w", c.ID[:12], err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// lockRun takes the e2e suite's machine-wide lock ($TMPDIR/berth-e2e.lock):
// the benchmark shares the daemon and its CPU with the suite, and any berth
// of the suite would see the benchmark's containers. It waits at most wait.
func lockRun(wait time.Duration, say func(string)) (func(), error) {
	path := filepath.Join(os.TempDir(), "berth-e2e.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	said := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("timed out after %v waiting for the lock %s (an e2e run holds it)", wait, path)
		}
		if !said {
			holder, _ := os.ReadFile(path)
			say(fmt.Sprintf("waiting for %s (held by %s)", path, strings.TrimSpace(string(holder))))
			said = true
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = f.Truncate(0)
	_, _ = fmt.Fprintf(f, "berth bench pid %d since %s\n", os.Getpid(), time.Now().Format(time.RFC3339))
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
