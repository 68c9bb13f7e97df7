//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/berthlog/berth/e2e/internal/otelcolrun"
)

// caBundle is the build host's CA certificates, which the image carries (as
// GoReleaser's build does: .goreleaser.yaml, dockers).
const caBundle = "/etc/ssl/certs/ca-certificates.crt"

// excludedLine is what berth in a container logs once the daemon has listed
// its own container: the subscription is made and the list reconciled, so
// any container started after it is read from its first line.
const excludedLine = "berth runs in this container: its log is not collected"

// buildBerthImage builds berth's container image from packaging/Dockerfile,
// with a static berth (no -race: the image has no C library) and the files
// GoReleaser puts in its context, tagged with the run's ID and the suite's
// label. The image is removed at the test's cleanup.
func buildBerthImage(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(suite.tmp, "berth-static")
	if err := goBuild(bin, "./cmd/berth", []string{"CGO_ENABLED=0", "GOOS=linux"}, "-trimpath", "-ldflags=-s -w"); err != nil {
		t.Fatalf("building a static berth: %v", err)
	}
	var files []contextFile
	for _, f := range []struct{ src, name string }{
		{filepath.Join(suite.repo, "packaging", "Dockerfile"), "Dockerfile"},
		{bin, "berth"},
		{filepath.Join(suite.repo, "packaging", "container.yaml"), "packaging/container.yaml"},
		{filepath.Join(suite.repo, "packaging", "state", "README"), "packaging/state/README"},
		{caBundle, strings.TrimPrefix(caBundle, "/")},
	} {
		data, err := os.ReadFile(f.src)
		if err != nil {
			t.Fatalf("the image's build context: %v (for %s: install ca-certificates)", err, caBundle)
		}
		mode := int64(0o644)
		if f.name == "berth" {
			mode = 0o755
		}
		files = append(files, contextFile{f.name, mode, data})
	}
	tag := "berth-e2e-image:" + strings.ReplaceAll(suite.runID, "+", "-")
	start := time.Now()
	id, err := buildImage(tag, map[string]string{labelKey: labelValue, runLabel: suite.runID}, files)
	if err != nil {
		t.Fatalf("building berth's image from packaging/Dockerfile: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := dctx(time.Minute)
		defer cancel()
		if _, err := suite.docker.ImageRemove(ctx, id, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil && !isNotFound(err) {
			t.Errorf("removing image %s: %v", tag, err)
		}
	})
	info, err := suite.docker.ImageInspect(t.Context(), id)
	if err != nil {
		t.Fatalf("inspecting %s: %v", tag, err)
	}
	if info.Config == nil || info.Config.User != "65532:65532" {
		t.Errorf("image user %+v, want 65532:65532 (non-root)", info.Config)
	}
	t.Logf("image %s (%s) built in %v, %d bytes", tag, short(id), time.Since(start).Round(time.Millisecond), info.Size)
	return tag
}

// berthContainer is berth running from its image.
type berthContainer struct {
	*Ctr
}

// runBerthImage creates and starts berth from its image as the README says
// (socket read-only, the socket's group added, state in the volume), with
// network mode none and the suite's label, and waits until berth has
// listed the containers.
func runBerthImage(t *testing.T, tag, vol string) *berthContainer {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(suite.sock, &st); err != nil {
		t.Fatalf("stat %s: %v", suite.sock, err)
	}
	name := uniqueName(t, "berth")
	ctx, cancel := dctx(30 * time.Second)
	defer cancel()
	resp, err := suite.docker.ContainerCreate(ctx,
		&container.Config{
			Image:  tag,
			Labels: map[string]string{labelKey: labelValue, runLabel: suite.runID},
		},
		&container.HostConfig{
			NetworkMode: "none",
			Binds:       []string{suite.sock + ":/var/run/docker.sock:ro", vol + ":/var/lib/berth"},
			GroupAdd:    []string{strconv.FormatUint(uint64(st.Gid), 10)},
			LogConfig:   container.LogConfig{Type: "json-file"},
		},
		nil, nil, name)
	if err != nil {
		t.Fatalf("creating berth's container: %v", err)
	}
	b := &berthContainer{&Ctr{ID: resp.ID, Name: name}}
	t.Cleanup(func() { b.remove(t) })
	b.startAndWait(t)
	return b
}

// startAndWait starts berth's container and waits for the line saying it
// has excluded itself: one more each start.
func (b *berthContainer) startAndWait(t *testing.T) {
	t.Helper()
	want := b.excludedCount(t) + 1
	b.start(t)
	b.waitLog(t, fmt.Sprintf("berth to list the containers and exclude its own (start %d)", want), 30*time.Second, func(recs []Record, stderr []string) (bool, string) {
		n := countContaining(stderr, excludedLine)
		return n >= want, fmt.Sprintf("%d exclusion lines; stderr tail: %s", n, head(lastLines(stderr, 5), 5))
	})
}

func (b *berthContainer) excludedCount(t *testing.T) int {
	_, stderr := b.output(t)
	return countContaining(stderr, excludedLine)
}

// output is what berth wrote, read through the daemon (docker logs): its
// stdout as records, its stderr as lines. A stdout line that is not a
// record fails the test.
func (b *berthContainer) output(t *testing.T) ([]Record, []string) {
	t.Helper()
	var recs []Record
	var stderr []string
	for i, l := range dockerLog(t, b.Ctr) {
		if l.Stream == "stderr" {
			stderr = append(stderr, l.Body)
			continue
		}
		var r Record
		if err := json.Unmarshal([]byte(l.Body), &r); err != nil || r.Resource == nil || r.Attributes == nil {
			t.Fatalf("berth's stdout line %d is not a JSON record: %.200q", i+1, l.Body)
		}
		r.Line = i + 1
		recs = append(recs, r)
	}
	return recs, stderr
}

// waitLog polls berth's output every 300 ms (a whole docker logs each time)
// until cond holds.
func (b *berthContainer) waitLog(t *testing.T, what string, timeout time.Duration, cond func([]Record, []string) (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond(b.output(t))
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last state: %s", timeout, what, state)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// stopExpectZero stops berth's container with SIGTERM (ContainerStop) and
// checks it exited 0, not killed.
func (b *berthContainer) stopExpectZero(t *testing.T) {
	t.Helper()
	start := time.Now()
	b.stop(t, 20)
	info := b.inspect(t)
	if info.State.ExitCode != 0 || info.State.OOMKilled {
		_, stderr := b.output(t)
		t.Fatalf("berth's container exited %d (OOM killed %v) after SIGTERM, want 0; stderr tail:\n%s",
			info.State.ExitCode, info.State.OOMKilled, strings.Join(lastLines(stderr, 10), "\n"))
	}
	t.Logf("berth's container stopped with exit code 0 in %v", time.Since(start).Round(time.Millisecond))
}

func recordsOf(recs []Record, c *Ctr) []Record {
	var out []Record
	for _, r := range recs {
		if r.res("container.id") == c.ID {
			out = append(out, r)
		}
	}
	return out
}

func countContaining(lines []string, s string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

func lastLines(xs []string, n int) []string { return xs[max(0, len(xs)-n):] }

// TestImage: berth's image (packaging/Dockerfile, built here with the
// classic builder) run as README's "Run as a container" says, network none,
// JSON lines on its stdout. A container's sequence-numbered lines, written
// across a stop (SIGTERM, exit 0) and a start of berth's container, arrive
// each exactly once, read through the berth container's own log; berth's
// own container is excluded and none of its lines is a record; its state is
// in the named volume.
func TestImage(t *testing.T) {
	needDocker(t)
	tag := buildBerthImage(t)

	vol := uniqueName(t, "state")
	ctx, cancel := dctx(30 * time.Second)
	defer cancel()
	if _, err := suite.docker.VolumeCreate(ctx, volume.CreateOptions{Name: vol, Labels: map[string]string{labelKey: labelValue, runLabel: suite.runID}}); err != nil {
		t.Fatalf("creating volume %s: %v", vol, err)
	}
	// Registered first, so it runs after the containers' removal.
	t.Cleanup(func() {
		ctx, cancel := dctx(30 * time.Second)
		defer cancel()
		if err := suite.docker.VolumeRemove(ctx, vol, true); err != nil && !isNotFound(err) {
			t.Errorf("removing volume %s: %v", vol, err)
		}
	})

	b := runBerthImage(t, tag, vol)
	_, stderr := b.output(t)
	if n := countContaining(stderr, "id="+short(b.ID)); n == 0 {
		t.Errorf("berth did not name its own container %s as excluded; stderr:\n%s", short(b.ID), strings.Join(lastLines(stderr, 10), "\n"))
	}

	// berth status, run inside its container, shows its own container
	// excluded.
	st := b.exec(t, "/usr/bin/berth", "status", "--config", "/etc/berth/berth.yaml")
	if !statusShows(st, short(b.ID), "excluded") {
		t.Errorf("berth status does not show its own container %s excluded:\n%s", short(b.ID), st)
	}

	const n, every = 3000, 7
	c := runContainer(t, ContainerSpec{Args: []string{"-n", strconv.Itoa(n), "-stderr-every", strconv.Itoa(every), "-rate", "400"}})
	b.waitLog(t, "a third of the lines before berth's stop", time.Minute, func(recs []Record, _ []string) (bool, string) {
		got := len(recordsOf(recs, c))
		return got >= n/3, fmt.Sprintf("%d records of %s", got, c.Name)
	})
	b.stopExpectZero(t)
	recs, _ := b.output(t)
	first := len(recordsOf(recs, c))
	if first >= n {
		t.Fatalf("all %d lines arrived before the stop: the restart was not tested (raise -n or lower -rate)", first)
	}
	if mp, err := b.volumeFile(t, vol, "checkpoints.json"); err != nil {
		t.Errorf("berth's state in volume %s: %v", vol, err)
	} else {
		t.Logf("state saved: %s", mp)
	}

	b.startAndWait(t)
	c.waitExited(t, time.Minute)
	b.waitLog(t, fmt.Sprintf("all %d lines of %s", n, c.Name), time.Minute, func(recs []Record, _ []string) (bool, string) {
		got := len(recordsOf(recs, c))
		return got >= n, fmt.Sprintf("%d records of %s", got, c.Name)
	})
	b.stopExpectZero(t)

	recs, stderr = b.output(t)
	mine := recordsOf(recs, c)
	checkShared(t, c, mine, n, every)
	t.Logf("%d lines: %d before berth's stop, %d after its start; %d records in all on berth's stdout", n, first, len(mine)-first, len(recs))
	for _, r := range recs {
		if r.res("container.id") == b.ID || r.res("container.name") == b.Name {
			t.Fatalf("berth collected its own log: record at line %d: %.200s", r.Line, r.Body)
		}
	}
	if got := countContaining(stderr, excludedLine); got != 2 {
		t.Errorf("%d exclusion lines in berth's stderr, want 2 (one per start)", got)
	}
}

// volumeFile checks that the local volume holds the file, through its mount
// point on this host (the tests run on the daemon's host).
func (b *berthContainer) volumeFile(t *testing.T, vol, name string) (string, error) {
	t.Helper()
	ctx, cancel := dctx(30 * time.Second)
	defer cancel()
	v, err := suite.docker.VolumeInspect(ctx, vol)
	if err != nil {
		return "", err
	}
	p := filepath.Join(v.Mountpoint, name)
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrPermission) {
		t.Logf("cannot read %s as this user: the state file is not checked (the restart's exactly-once is)", p)
		return p, nil
	}
	if err != nil {
		return "", err
	}
	if fi.Size() == 0 {
		return "", fmt.Errorf("%s is empty", p)
	}
	return p, nil
}

// exec runs a command in berth's container and returns its output; a
// non-zero exit fails the test.
func (b *berthContainer) exec(t *testing.T, cmd ...string) string {
	t.Helper()
	ctx, cancel := dctx(30 * time.Second)
	defer cancel()
	ex, err := suite.docker.ContainerExecCreate(ctx, b.ID, container.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		t.Fatalf("exec %v in berth's container: %v", cmd, err)
	}
	att, err := suite.docker.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		t.Fatalf("exec %v in berth's container: %v", cmd, err)
	}
	defer att.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, att.Reader); err != nil {
		t.Fatalf("exec %v in berth's container: reading its output: %v", cmd, err)
	}
	info, err := suite.docker.ContainerExecInspect(ctx, ex.ID)
	if err != nil || info.Running || info.ExitCode != 0 {
		t.Fatalf("exec %v in berth's container: exit %d (running %v), err %v:\n%s", cmd, info.ExitCode, info.Running, err, out.String())
	}
	return out.String()
}

// statusShows reports whether berth status's table has a row with the
// container ID in the state.
func statusShows(status, id, state string) bool {
	for _, l := range strings.Split(status, "\n") {
		f := strings.Fields(l)
		if slices.Contains(f, id) && slices.Contains(f, state) {
			return true
		}
	}
	return false
}

// TestComposeCollectorConfig: the Collector config of README's compose
// quick start (packaging/otelcol.yaml) is valid for a Collector of the
// version compose.yaml runs (the suite's collector, e2e/otelcol, is built
// from the same release's components): `otelcol validate`.
func TestComposeCollectorConfig(t *testing.T) {
	ctx, cancel := dctx(10 * time.Minute)
	defer cancel()
	bin, err := otelcolrun.Build(ctx) // cached; a cold build takes minutes
	if err != nil {
		t.Fatalf("building the collector: %v", err)
	}
	conf := filepath.Join(suite.repo, "packaging", "otelcol.yaml")
	out, err := exec.CommandContext(ctx, bin, "validate", "--config="+conf).CombinedOutput()
	if err != nil {
		t.Fatalf("otelcol validate --config=%s: %v\n%s", conf, err, out)
	}
}
