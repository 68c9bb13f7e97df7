//go:build e2e

package e2e

// TestQuickStart runs the README's quick start as written.

import (
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
)

// quickStartContainer is the name the README's quick start gives its
// container; the test removes it before and after.
const quickStartContainer = "berth-try"

// readmeBlock returns the code block of README.md between
// <!-- name:begin --> and <!-- name:end -->, without its fences.
func readmeBlock(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(suite.repo, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "<!-- "+name+":begin -->\n")
	block, _, ok2 := strings.Cut(rest, "<!-- "+name+":end -->")
	if !ok || !ok2 {
		t.Fatalf("README.md has no block between <!-- %s:begin --> and <!-- %s:end -->", name, name)
	}
	block = strings.TrimSpace(block)
	first, body, _ := strings.Cut(block, "\n")
	if !strings.HasPrefix(first, "```") || !strings.HasSuffix(body, "```") {
		t.Fatalf("README.md's %s block is not one fenced code block:\n%s", name, block)
	}
	return strings.TrimSuffix(body, "```")
}

// removeByName force-removes the container called name, if there is one.
func removeByName(t *testing.T, name string) {
	ctx, cancel := dctx(30 * time.Second)
	defer cancel()
	if err := suite.docker.ContainerRemove(ctx, name, container.RemoveOptions{Force: true}); err != nil && !isNotFound(err) {
		t.Errorf("removing container %s: %v", name, err)
	}
}

// ensureBusybox makes sure the daemon has the image the quick start runs,
// busybox. The suite uses no registry: when the daemon lacks it, it is built
// FROM scratch around this machine's static busybox (Debian's
// busybox-static, which make test installs), labelled as the suite's.
func ensureBusybox(t *testing.T) {
	t.Helper()
	ctx, cancel := dctx(30 * time.Second)
	defer cancel()
	if _, err := suite.docker.ImageInspect(ctx, "busybox"); err == nil {
		return
	} else if !isNotFound(err) {
		t.Fatalf("inspecting the busybox image: %v", err)
	}
	const bin = "/bin/busybox"
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("the daemon has no busybox image and %s is not usable to build one (%v); install busybox-static (apt-get install busybox-static) or docker pull busybox", bin, err)
	}
	interp := f.Section(".interp") != nil
	f.Close()
	if interp {
		t.Fatalf("%s is dynamically linked; install busybox-static to build the busybox image the quick start runs", bin)
	}
	exe, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	dockerfile := "FROM scratch\nLABEL " + labelKey + "=" + labelValue + "\nCOPY busybox /bin/busybox\n" +
		"RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCMD [\"sh\"]\n"
	if _, err := buildImage("busybox:latest", nil, []contextFile{{"Dockerfile", 0o644, []byte(dockerfile)}, {"busybox", 0o755, exe}}); err != nil {
		t.Fatalf("building the busybox image from %s: %v", bin, err)
	}
	t.Logf("built busybox:latest from %s (the suite uses no registry)", bin)
}

// promise is what the README says the quick start prints.
type promise struct {
	records []Record // the JSON lines (stdout)
	logMsgs []string // msg="..." of berth's own log lines (stderr)
}

func readPromise(t *testing.T) promise {
	t.Helper()
	var p promise
	msg := regexp.MustCompile(`\bmsg="([^"]*)"`)
	for _, line := range strings.Split(readmeBlock(t, "quickstart-output"), "\n") {
		switch {
		case strings.HasPrefix(line, "{"):
			var r Record
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("README.md's quick-start output has a JSON line that does not parse (%v): %s", err, line)
			}
			p.records = append(p.records, r)
		case msg.MatchString(line):
			p.logMsgs = append(p.logMsgs, msg.FindStringSubmatch(line)[1])
		}
	}
	if len(p.records) == 0 || len(p.logMsgs) == 0 {
		t.Fatalf("README.md's quick-start output promises %d records and %d log lines; want some of each", len(p.records), len(p.logMsgs))
	}
	return p
}

// TestQuickStart runs the README's quick-start block (extracted from
// README.md, not a copy) with bash from the repository root, as a user
// would, and checks that it prints what the README promises: berth's log
// lines (by message) and records of the container with the promised body,
// stream and resource (ids and times aside). Then it presses Ctrl-C (SIGINT
// to the block's process group), runs the README's clean-up block, and
// checks that the container is gone. make run serves on 127.0.0.1:9477, so
// that port must be free.
func TestQuickStart(t *testing.T) {
	needDocker(t)
	block, cleanup := readmeBlock(t, "quickstart"), readmeBlock(t, "quickstart-cleanup")
	want := readPromise(t)
	if !strings.Contains(block, "--name "+quickStartContainer) || !strings.Contains(cleanup, quickStartContainer) {
		t.Fatalf("the quick start must name its container %s (the test removes it by that name):\n%s", quickStartContainer, block)
	}
	if l, err := net.Listen("tcp", "127.0.0.1:9477"); err != nil {
		t.Fatalf("make run serves on 127.0.0.1:9477, which is taken: %v", err)
	} else {
		l.Close()
	}
	ensureBusybox(t)
	removeByName(t, quickStartContainer) // a leftover of an interrupted run
	t.Cleanup(func() { removeByName(t, quickStartContainer) })

	dir := testDir(t)
	stdoutPath, stderrPath := filepath.Join(dir, "quickstart.stdout"), filepath.Join(dir, "quickstart.stderr")
	stdout, err := os.Create(stdoutPath)
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.Create(stderrPath)
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	env := berthEnv()
	if suite.sock != "/var/run/docker.sock" {
		env = append(env, "DOCKER_HOST=unix://"+suite.sock)
	}
	cmd := exec.Command("bash", "-e", "-c", block)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = suite.repo, env, stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	t.Logf("running README.md's quick start in %s:\n%s", suite.repo, block)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	killed := false
	defer func() {
		if !killed {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}()

	out := newOutput(stdoutPath)
	defer out.close()
	// The first run builds berth (and may install Go): minutes.
	waitFor(t, "berth's promised log lines and 3 records of "+quickStartContainer+" from the quick start", 5*time.Minute, func() (bool, string) {
		select {
		case err := <-exited:
			killed = true
			t.Fatalf("the quick start ended by itself (%v); stderr:\n%s", err, tailFile(stderrPath, 3000))
		default:
		}
		if err := out.poll(); err != nil {
			t.Fatalf("reading the quick start's stdout: %v", err)
		}
		errText, _ := os.ReadFile(stderrPath)
		var missing []string
		for _, m := range want.logMsgs {
			if !strings.Contains(string(errText), `msg="`+m+`"`) {
				missing = append(missing, fmt.Sprintf("log msg=%q", m))
			}
		}
		n := out.count(quickStartContainer)
		if n < 3 {
			missing = append(missing, fmt.Sprintf("records of %s: %d/3", quickStartContainer, n))
		}
		return len(missing) == 0, "missing " + strings.Join(missing, ", ")
	})
	recs := out.records(quickStartContainer)
	for _, w := range want.records {
		for i, r := range recs {
			for _, check := range []struct{ what, got, want string }{
				{"body", fmt.Sprint(r.Body), fmt.Sprint(w.Body)},
				{"log.iostream", r.Stream(), w.Stream()},
				{"container.name", r.res("container.name"), w.res("container.name")},
				{"container.image.name", r.res("container.image.name"), w.res("container.image.name")},
				{"container.runtime", r.res("container.runtime"), w.res("container.runtime")},
				{"service.name", r.res("service.name"), w.res("service.name")},
			} {
				if check.got != check.want {
					t.Errorf("record %d of %s: %s = %q; README.md promises %q", i, quickStartContainer, check.what, check.got, check.want)
				}
			}
			if _, err := time.Parse(time.RFC3339Nano, r.Timestamp); err != nil {
				t.Errorf("record %d: timestamp %q: %v", i, r.Timestamp, err)
			}
		}
	}
	t.Logf("%d records of %s; first: %+v", len(recs), quickStartContainer, recs[0])

	// Ctrl-C: SIGINT to the foreground process group (bash, make, berth).
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		killed = true
		t.Logf("after Ctrl-C the quick start ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatalf("the quick start did not end within 30s of Ctrl-C; stderr:\n%s", tailFile(stderrPath, 3000))
	}
	errText, _ := os.ReadFile(stderrPath)
	for _, m := range []string{"shutting down", "stopped"} {
		if !strings.Contains(string(errText), `msg=`+m) && !strings.Contains(string(errText), `msg="`+m+`"`) {
			t.Errorf("after Ctrl-C berth did not log %q, as the README says; stderr:\n%s", m, tailFile(stderrPath, 3000))
		}
	}

	clean := exec.Command("bash", "-e", "-c", cleanup)
	clean.Dir, clean.Env = suite.repo, env
	if b, err := clean.CombinedOutput(); err != nil {
		t.Fatalf("README.md's clean-up block failed: %v\n%s", err, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := suite.docker.ContainerInspect(ctx, quickStartContainer); !isNotFound(err) {
		t.Errorf("after README.md's clean-up block, container %s is still there (inspect: %v)", quickStartContainer, err)
	}
}

func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err.Error()
	}
	return tailString(string(data), n)
}
