//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthlog/berth/e2e/internal/lines"
)

// podmanService is a rootful `podman system service` the test started: its
// own socket, storage, run and temp directories under dir, file events,
// cgroupfs, no network configuration; stopped by its PID at cleanup.
type podmanService struct {
	dir   string
	sock  string
	flags []string // the global flags every podman command must share with the service
	env   []string
	cmd   *exec.Cmd
	done  chan struct{}
}

// containersConf is the service's containers.conf: the k8s-file log driver
// (Podman's own; json-file is an alias of it), ulimits this machine's hard
// limits allow (Podman's defaults make crun fail with "error setting rlimit"
// here), events in a file (journald needs systemd), cgroupfs.
const containersConf = `[containers]
log_driver = "k8s-file"
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
events_logger = "file"
cgroup_manager = "cgroupfs"
`

// startPodman starts the service and waits until /_ping answers. Without a
// podman binary the test fails: CI installs Debian's package (.ci/run).
func startPodman(t *testing.T) *podmanService {
	t.Helper()
	bin, err := exec.LookPath("podman")
	if err != nil {
		t.Fatalf("podman is not installed (%v): install Debian's package (apt-get install podman), as .ci/run does", err)
	}
	// A short path: the socket's must fit in sun_path.
	dir, err := os.MkdirTemp("/tmp", "berth-podman-")
	if err != nil {
		t.Fatal(err)
	}
	p := &podmanService{dir: dir, sock: filepath.Join(dir, "podman.sock"), done: make(chan struct{})}
	for _, d := range []string{"net"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "containers.conf")
	if err := os.WriteFile(conf, []byte(containersConf), 0o644); err != nil {
		t.Fatal(err)
	}
	p.env = append(os.Environ(), "CONTAINERS_CONF="+conf)
	p.flags = []string{
		"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"), "--tmpdir", filepath.Join(dir, "tmp"),
		"--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
		"--network-config-dir", filepath.Join(dir, "net"),
	}
	logf, err := os.Create(filepath.Join(dir, "service.log"))
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, append(slicesClone(p.flags), "system", "service", "--time=0", "unix://"+p.sock)...)
	p.cmd.Env = p.env
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting podman system service: %v", err)
	}
	_ = logf.Close()
	go func() { // owned: ends with the service; cleanup waits for it
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	t.Logf("podman service pid %d, socket %s, %s", p.cmd.Process.Pid, p.sock, p.version(t, bin))

	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", p.sock)
		},
		DisableKeepAlives: true,
	}}
	waitFor(t, "podman's /_ping to answer OK on "+p.sock, 60*time.Second, func() (bool, string) {
		select {
		case <-p.done:
			t.Fatalf("podman system service exited at start:\n%s", p.serviceLog())
		default:
		}
		resp, err := hc.Get("http://d/_ping")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})
	return p
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

func (p *podmanService) version(t *testing.T, bin string) string {
	cmd := exec.Command(bin, "--version")
	cmd.Env = p.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("podman --version: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

func (p *podmanService) serviceLog() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "service.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// podman runs a podman command against the service's store.
func (p *podmanService) podman(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "podman", append(slicesClone(p.flags), args...)...)
	cmd.Env = p.env
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// stop removes the service's containers, ends the service by its PID
// (SIGTERM, then SIGKILL after 20 s) and removes its directory.
func (p *podmanService) stop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rm := exec.CommandContext(ctx, "podman", append(slicesClone(p.flags), "rm", "-af", "-t", "0")...)
	rm.Env = p.env
	if out, err := rm.CombinedOutput(); err != nil {
		t.Errorf("removing the podman containers: %v: %s", err, out)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("podman system service did not exit within 20s of SIGTERM (killed)")
	}
	if t.Failed() {
		t.Logf("podman service log (tail):\n%s", p.serviceLog())
	}
	if err := os.RemoveAll(p.dir); err != nil {
		t.Errorf("removing %s: %v", p.dir, err)
	}
}

// loadLoggen imports the suite's static generator into the service's store
// as an image FROM scratch (a tar of /loggen), with the suite's label.
func (p *podmanService) loadLoggen(t *testing.T) string {
	t.Helper()
	exe, err := os.ReadFile(filepath.Join(suite.tmp, "loggen"))
	if err != nil {
		t.Fatalf("the suite's loggen binary: %v", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "loggen", Mode: 0o755, Size: int64(len(exe)), ModTime: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(exe); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	const ref = "localhost/berth-e2e-loggen:latest"
	p.podman(t, buf.Bytes(), "import", "--change", `ENTRYPOINT ["/loggen"]`, "--change", "LABEL "+labelKey+"="+labelValue, "-", ref)
	return ref
}

// run starts a container of image with network none and the suite's
// labels; it returns its ID.
func (p *podmanService) run(t *testing.T, name, image string, args ...string) *Ctr {
	t.Helper()
	id := p.podman(t, nil, append([]string{"run", "-d", "--name", name, "--network", "none",
		"--label", labelKey + "=" + labelValue, "--label", runLabel + "=" + suite.runID, image}, args...)...)
	return &Ctr{ID: id, Name: name}
}

// TestPodman: berth collects from Podman's Docker-compatible API (a rootful
// `podman system service` the test starts from Debian's package): two
// containers writing sequence-numbered lines on stdout and stderr at once,
// one started before berth and one while berth is stopped mid-stream; every
// line arrives exactly once, on its stream, across the restart of berth.
// Podman's whole-second timestamps make every re-attach land inside a second
// whose lines were partly read.
func TestPodman(t *testing.T) {
	needDocker(t) // the suite's loggen binary is built in TestMain
	const n, rate = 2000, 200.0
	p := startPodman(t)
	image := p.loadLoggen(t)

	state := filepath.Join(testDir(t), "state") // berth creates it
	for _, d := range []string{"1", "2"} {
		if err := os.MkdirAll(filepath.Join(testDir(t), d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := BerthConfig{DockerHost: "unix://" + p.sock, InitialPosition: "beginning", IdleTimeout: "2s"}
	args := []string{"-n", fmt.Sprint(n), "-both", "-rate", fmt.Sprint(rate)}
	a := p.run(t, uniqueName(t, "a"), image, args...)
	b1 := startBerthProc(t, cfg, berthProc{Dir: filepath.Join(testDir(t), "1"), StateDir: state})
	b1.waitRecords(t, a.Name, 600, time.Minute)
	b1.stop(t)
	n1 := len(b1.out.records(a.Name))

	// While berth is down: a writes on, c starts.
	c := p.run(t, uniqueName(t, "c"), image, args...)
	waitFor(t, c.Name+" to write 200 lines while berth is down", time.Minute, func() (bool, string) {
		got := strings.Count(p.podman(t, nil, "logs", c.Name), "\n")
		return got >= 200, fmt.Sprintf("%d lines", got)
	})

	b2 := startBerthProc(t, cfg, berthProc{Dir: filepath.Join(testDir(t), "2"), StateDir: state})
	p.podman(t, nil, "wait", a.Name, c.Name)
	for _, ct := range []*Ctr{a, c} {
		want := 2 * n
		if ct == a {
			want -= n1
		}
		// Not fatal: the checks below say which lines are missing.
		ok, last := waitUntil(30*time.Second, func() (bool, string) {
			b2.poll(t)
			got := len(b2.out.records(ct.Name))
			return got >= want, fmt.Sprintf("%d records", got)
		})
		if !ok {
			t.Errorf("timed out after 30s waiting for %d records of %s: %s", want, ct.Name, last)
		}
	}
	b2.stop(t) // reads the rest of stdout

	recsA := append(b1.out.records(a.Name), b2.out.records(a.Name)...)
	checkPerStream(t, a, recsA, map[string]int{"out": n, "err": n})
	groups := checkPerStream(t, c, b2.out.records(c.Name), map[string]int{"out": n, "err": n})
	if len(groups) != 2 {
		t.Errorf("%s: %d (run, stream) groups, want 2 (one run, stdout and stderr)", c.Name, len(groups))
	}
	for _, r := range recsA[:1] {
		if got := r.res("container.image.name"); got != "localhost/berth-e2e-loggen" {
			t.Errorf("container.image.name %q, want Podman's fully qualified localhost/berth-e2e-loggen", got)
		}
		if _, ok := lines.Parse(r.Body); !ok {
			t.Errorf("first record %.100q is not a loggen line", r.Body)
		}
	}
	if !t.Failed() {
		t.Logf("figure: Podman, berth restarted mid-stream: %s %d lines (%d before the restart), %s %d lines; 0 lost, 0 duplicated",
			a.Name, len(recsA), n1, c.Name, len(b2.out.records(c.Name)))
	}
}
