//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
)

// privateDaemon is a dockerd of the test's own, never the system's: its own
// data root, exec root (and so its own containerd), pidfile and unix socket,
// no bridge, no iptables, the system daemon's storage driver, and an empty
// config file (the system's /etc/docker/daemon.json is not read). The test
// starts and stops it by PID; its directories are removed at cleanup, also
// when the test fails.
type privateDaemon struct {
	dir    string // holds data/, exec/, docker.pid, docker.sock, daemon.json, dockerd.log
	sock   string
	driver string
	cli    *client.Client

	// args are dockerd's arguments beyond the harness's own (e.g. a TLS
	// TCP listener).
	args []string

	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	starts  int
}

// newPrivateDaemon starts a private dockerd, loads the loggen image into it
// (saved from the system daemon, loaded through the private daemon's API),
// and points the suite's helpers (suite.docker, suite.sock: containers,
// ground truth, berth's docker_host) at it until the test ends. Tests using
// it must not run in parallel (none of the suite's do).
func newPrivateDaemon(t *testing.T) *privateDaemon {
	t.Helper()
	return newPrivateDaemonArgs(t)
}

// newPrivateDaemonArgs is newPrivateDaemon with more dockerd arguments,
// given at every start.
func newPrivateDaemonArgs(t *testing.T, args ...string) *privateDaemon {
	t.Helper()
	if _, err := exec.LookPath("dockerd"); err != nil {
		t.Fatalf("the private daemon tests need dockerd in PATH: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("the private daemon tests need root to run dockerd (euid %d)", os.Geteuid())
	}
	ctx, cancel := dctx(30 * time.Second)
	defer cancel()
	info, err := suite.docker.Info(ctx)
	if err != nil {
		t.Fatalf("docker info (for the storage driver): %v", err)
	}
	// A short path: the sockets (ours, containerd's under exec/) must fit
	// in sun_path's 108 bytes.
	dir, err := os.MkdirTemp("", "bpd")
	if err != nil {
		t.Fatal(err)
	}
	pd := &privateDaemon{dir: dir, sock: filepath.Join(dir, "docker.sock"), driver: info.Driver, args: args}
	t.Cleanup(func() { pd.destroy(t) })
	for _, d := range []string{"data", "exec"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pd.cli, err = client.NewClientWithOpts(client.WithHost("unix://"+pd.sock), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	pd.start(t)
	up := time.Since(start)
	pd.loadImage(t)
	t.Logf("private dockerd (pid %d, driver %s) in %s: up in %v, image loaded in %v",
		pd.cmd.Process.Pid, pd.driver, dir, up.Round(time.Millisecond), (time.Since(start) - up).Round(time.Millisecond))

	sysDocker, sysSock := suite.docker, suite.sock
	suite.docker, suite.sock = pd.cli, pd.sock
	t.Cleanup(func() { suite.docker, suite.sock = sysDocker, sysSock })
	return pd
}

// start runs dockerd and waits until it answers a ping.
func (pd *privateDaemon) start(t *testing.T) {
	t.Helper()
	if pd.running() {
		t.Fatal("private dockerd: start while running")
	}
	logf, err := os.OpenFile(filepath.Join(pd.dir, "dockerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	pd.starts++
	fmt.Fprintf(logf, "==== start %d at %s\n", pd.starts, time.Now().Format(time.RFC3339Nano))
	pd.cmd = exec.Command("dockerd", append([]string{
		"--config-file", filepath.Join(pd.dir, "daemon.json"),
		"--data-root", filepath.Join(pd.dir, "data"),
		"--exec-root", filepath.Join(pd.dir, "exec"),
		"--pidfile", filepath.Join(pd.dir, "docker.pid"),
		"-H", "unix://" + pd.sock,
		"--bridge=none", "--iptables=false", "--ip-masq=false", "--ip6tables=false",
		"--storage-driver", pd.driver,
	}, pd.args...)...)
	pd.cmd.Stdout, pd.cmd.Stderr = logf, logf
	// Killed with the test process, should that die first.
	pd.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := pd.cmd.Start(); err != nil {
		t.Fatalf("starting the private dockerd: %v", err)
	}
	exited := make(chan struct{})
	pd.exited = exited
	cmd := pd.cmd
	go func() { // owned: ends with the process; stop, kill and destroy wait for it
		pd.waitErr = cmd.Wait()
		close(exited)
	}()
	waitFor(t, "the private dockerd to answer a ping", 60*time.Second, func() (bool, string) {
		select {
		case <-exited:
			t.Fatalf("the private dockerd exited at start: %v\nits log:\n%s", pd.waitErr, pd.logTail(30))
		default:
		}
		ctx, cancel := dctx(2 * time.Second)
		defer cancel()
		_, err := pd.cli.Ping(ctx)
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
}

func (pd *privateDaemon) running() bool {
	if pd.exited == nil {
		return false
	}
	select {
	case <-pd.exited:
		return false
	default:
		return true
	}
}

// pid is the running dockerd's process ID.
func (pd *privateDaemon) pid() int { return pd.cmd.Process.Pid }

// stop sends dockerd SIGTERM (it stops its containers) and waits for it to
// exit; after timeout it kills it and fails the test.
func (pd *privateDaemon) stop(t *testing.T, timeout time.Duration) {
	t.Helper()
	if !pd.running() {
		return
	}
	ctrd := pd.containerdPID()
	_ = pd.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-pd.exited:
	case <-time.After(timeout):
		_ = pd.cmd.Process.Kill()
		<-pd.exited
		t.Errorf("the private dockerd did not exit within %v of SIGTERM (killed)\nits log:\n%s", timeout, pd.logTail(30))
	}
	pd.waitContainerdGone(t, ctrd)
}

// waitContainerdGone waits until the containerd process pid (0: none) has
// left /proc. dockerd stops its containerd on the way out (after a SIGKILL of
// dockerd, it was seen to end too, moments later) but does not wait for it
// to be gone: a dockerd started while it is still there (or not
// yet reaped) finds its pid alive, reuses it, and times out on its closed
// socket.
func (pd *privateDaemon) waitContainerdGone(t *testing.T, pid int) {
	t.Helper()
	if pid <= 0 {
		return
	}
	if ok, state := waitUntil(30*time.Second, func() (bool, string) {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		return os.IsNotExist(err), fmt.Sprintf("containerd pid %d: %v", pid, err)
	}); !ok {
		t.Errorf("the private dockerd's containerd is still there 30 s after dockerd ended: %s", state)
	}
}

// containerdPID is the pid of the containerd the daemon started (0: none).
func (pd *privateDaemon) containerdPID() int {
	data, err := os.ReadFile(filepath.Join(pd.dir, "exec", "containerd", "containerd.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

// kill sends dockerd SIGKILL and waits for it and its containerd to be gone.
// The containers' shims live on; the next start takes them over.
func (pd *privateDaemon) kill(t *testing.T) {
	t.Helper()
	if !pd.running() {
		return
	}
	ctrd := pd.containerdPID()
	_ = pd.cmd.Process.Kill()
	<-pd.exited
	pd.waitContainerdGone(t, ctrd)
}

// destroy removes what the daemon holds and the daemon itself: containers
// (force), then SIGTERM (SIGKILL after 30 s), then leftover mounts, then its
// directories.
func (pd *privateDaemon) destroy(t *testing.T) {
	if pd.running() {
		ctx, cancel := dctx(30 * time.Second)
		list, err := pd.cli.ContainerList(ctx, container.ListOptions{All: true})
		if err == nil {
			for _, c := range list {
				_ = pd.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
			}
		}
		cancel()
		pd.stop(t, 30*time.Second)
	}
	if pd.cli != nil {
		_ = pd.cli.Close()
	}
	if t.Failed() {
		t.Logf("private dockerd log (tail):\n%s", pd.logTail(40))
	}
	if os.Getenv("BERTH_E2E_KEEP") != "" {
		t.Logf("private dockerd directory kept: %s", pd.dir)
		return
	}
	// Whatever the daemon left mounted under its directory (a killed daemon
	// leaves its containers' rootfs and the exec root mounted).
	for _, m := range mountsUnder(pd.dir) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.Logf("unmounting %s: %v", m, err)
		}
	}
	if err := os.RemoveAll(pd.dir); err != nil {
		t.Errorf("removing the private dockerd's directory: %v", err)
	}
}

// mountsUnder lists the mount points under dir, deepest first.
func mountsUnder(dir string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

func (pd *privateDaemon) logTail(n int) string {
	data, err := os.ReadFile(filepath.Join(pd.dir, "dockerd.log"))
	if err != nil {
		return err.Error()
	}
	ls := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

// loadImage copies the loggen image from the system daemon into the private
// one: ImageSave there, ImageLoad here, streamed, through the APIs.
func (pd *privateDaemon) loadImage(t *testing.T) {
	t.Helper()
	ctx, cancel := dctx(2 * time.Minute)
	defer cancel()
	rc, err := suite.docker.ImageSave(ctx, []string{imageRef})
	if err != nil {
		t.Fatalf("saving %s from the system daemon: %v", imageRef, err)
	}
	defer rc.Close()
	resp, err := pd.cli.ImageLoad(ctx, rc, client.ImageLoadWithQuiet(true))
	if err != nil {
		t.Fatalf("loading %s into the private daemon: %v", imageRef, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if _, err := pd.cli.ImageInspect(ctx, imageRef); err != nil {
		t.Fatalf("%s is not in the private daemon after the load: %v", imageRef, err)
	}
}

// runAlways creates and starts a loggen container with restart policy
// "always", the suite's label and no network (createContainer's rules).
func runAlways(t *testing.T, args ...string) *Ctr {
	t.Helper()
	name := uniqueName(t, "always")
	ctx, cancel := dctx(30 * time.Second)
	defer cancel()
	resp, err := suite.docker.ContainerCreate(ctx,
		&container.Config{Image: imageRef, Cmd: args, Labels: map[string]string{labelKey: labelValue, runLabel: suite.runID}},
		&container.HostConfig{
			NetworkMode:   "none",
			LogConfig:     container.LogConfig{Type: "json-file"},
			RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyAlways},
		}, nil, nil, name)
	if err != nil {
		t.Fatalf("creating container %s: %v", name, err)
	}
	c := &Ctr{ID: resp.ID, Name: name}
	t.Cleanup(func() {
		ctx, cancel := dctx(30 * time.Second)
		defer cancel()
		if err := suite.docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !isNotFound(err) && !errors.Is(err, context.DeadlineExceeded) {
			t.Logf("removing container %s: %v", c.Name, err)
		}
	})
	c.start(t)
	return c
}

// readyz returns berth's GET /readyz status code and body.
func (b *Berth) readyz() (int, string) {
	resp, err := b.http.Get("http://" + b.httpAddr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}
