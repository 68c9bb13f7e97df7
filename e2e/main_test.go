//go:build e2e

package e2e

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
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"go.uber.org/goleak"
)

const (
	// Label carried by every container (and the image) the suite creates.
	labelKey   = "berth.e2e"
	labelValue = "1"
	// runLabel names the run (pid and start time) that made a container.
	runLabel = "berth.e2e.run"
	// The generator image, built FROM scratch at the start of each run.
	imageRepo = "berth-e2e-loggen"
	imageRef  = imageRepo + ":latest"
)

// suite is the state shared by every test of one run.
var suite struct {
	docker  *client.Client
	up      bool   // the daemon answered the ping
	runID   string // value of the label runLabel on this run's containers
	unlock  func() // releases the machine-wide run lock
	sock    string // the daemon's unix socket path (for the proxy)
	skip    string // non-empty: why every test skips (no daemon, not required)
	fail    string // non-empty: why every test fails (no daemon, required)
	repo    string // repository root
	tmp     string // run's scratch directory
	goBin   string
	imageID string

	berthOnce sync.Once
	berthBin  string
	berthErr  error
}

// required reports whether a daemon that does not answer must fail the suite
// rather than skip it.
func required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("BERTH_E2E") == "1"
}

type mainRunner struct{ m *testing.M }

func (r mainRunner) Run() int {
	code := setup()
	if code == 0 {
		code = r.m.Run()
	}
	teardown()
	return code
}

func TestMain(m *testing.M) {
	// goleak checks the test process itself: the harness (proxy, berth
	// process waiters, docker client) owns every goroutine it starts.
	goleak.VerifyTestMain(mainRunner{m},
		// net/http's idle-connection reaper of the default transport, used by
		// nothing of ours but started by package init of some dependencies.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

func setup() int {
	repo, err := filepath.Abs("..")
	if err == nil {
		_, err = os.Stat(filepath.Join(repo, "go.mod"))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: cannot find the repository root from %s: %v\n", mustWd(), err)
		return 1
	}
	suite.repo = repo
	if suite.tmp, err = os.MkdirTemp("", "berth-e2e-"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	suite.goBin = goBinary()

	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return noDaemon(fmt.Sprintf("docker client: %v", err))
	}
	suite.docker = cli
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		return noDaemon(fmt.Sprintf("the Docker daemon (%s) does not answer: %v", cli.DaemonHost(), err))
	}
	suite.up = true
	host := cli.DaemonHost()
	if !strings.HasPrefix(host, "unix://") {
		fmt.Fprintf(os.Stderr, "e2e: the daemon must be on a unix socket (the proxy and the CPU figures need it), not %s\n", host)
		return 1
	}
	suite.sock = strings.TrimPrefix(host, "unix://")
	// One run of the suite at a time on a machine: runs share the daemon,
	// its CPU (TestReattachCost), the image tag, and every berth sees every
	// container (goroutine baselines).
	if err := lockRun(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	removeStaleContainers(context.Background(), false)

	start := time.Now()
	if err := buildLoggenImage(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building the loggen image: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: image %s (%s) built in %v\n", imageRef, short(suite.imageID), time.Since(start).Round(time.Millisecond))
	return 0
}

func noDaemon(why string) int {
	if required() {
		suite.fail = why + " (CI=true or BERTH_E2E=1: failing)"
		fmt.Fprintln(os.Stderr, "e2e: FAIL:", suite.fail)
		return 0 // each test fails with the reason
	}
	suite.skip = why + " (set BERTH_E2E=1 or CI=true to make this a failure)"
	fmt.Fprintln(os.Stderr, "e2e: skipping:", suite.skip)
	return 0
}

func teardown() {
	if suite.up {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		removeStaleContainers(ctx, true)
		cancel()
	}
	if suite.unlock != nil {
		suite.unlock()
	}
	if suite.docker != nil {
		_ = suite.docker.Close()
	}
	if suite.tmp != "" && os.Getenv("BERTH_E2E_KEEP") == "" {
		_ = os.RemoveAll(suite.tmp)
	}
}

// needDocker is the first call of every test.
func needDocker(t *testing.T) {
	t.Helper()
	if suite.fail != "" {
		t.Fatal(suite.fail)
	}
	if suite.skip != "" {
		t.Skip(suite.skip)
	}
}

func mustWd() string {
	wd, _ := os.Getwd()
	return wd
}

func goBinary() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if gr := os.Getenv("GOROOT"); gr != "" {
		return filepath.Join(gr, "bin", "go")
	}
	return "/usr/local/go/bin/go"
}

func short(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// removeStaleContainers force-removes the containers carrying the suite's
// label: with ownOnly, those of this run (at its end); else all of them
// (at the start, holding the run lock: leftovers of an interrupted run).
func removeStaleContainers(ctx context.Context, ownOnly bool) {
	f := filters.NewArgs(filters.Arg("label", labelKey+"="+labelValue))
	if ownOnly {
		f.Add("label", runLabel+"="+suite.runID)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	list, err := suite.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: listing labelled containers:", err)
		return
	}
	for _, c := range list {
		if err := suite.docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !isNotFound(err) {
			fmt.Fprintf(os.Stderr, "e2e: removing %s: %v\n", short(c.ID), err)
		}
	}
}

// lockRun takes an exclusive flock on $TMPDIR/berth-e2e.lock, waiting (and
// saying so) while another run holds it, for at most BERTH_E2E_LOCK_WAIT
// (default 15m).
func lockRun() error {
	path := filepath.Join(os.TempDir(), "berth-e2e.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	wait := 15 * time.Minute
	if d, err := time.ParseDuration(os.Getenv("BERTH_E2E_LOCK_WAIT")); err == nil {
		wait = d
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
			return fmt.Errorf("locking %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			holder, _ := os.ReadFile(path)
			f.Close()
			return fmt.Errorf("timed out after %v waiting for another e2e run to finish (%s holds %s)", wait, strings.TrimSpace(string(holder)), path)
		}
		if !said {
			holder, _ := os.ReadFile(path)
			fmt.Fprintf(os.Stderr, "e2e: waiting for another e2e run to finish (%s holds %s)\n", strings.TrimSpace(string(holder)), path)
			said = true
		}
		time.Sleep(200 * time.Millisecond)
	}
	suite.runID = fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano())
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintf("pid %d since %s\n", os.Getpid(), time.Now().Format(time.RFC3339))), 0)
	suite.unlock = func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}
	return nil
}

// goBuild builds pkg into out with extra flags and environment.
func goBuild(out, pkg string, env []string, flags ...string) error {
	args := append([]string{"build", "-o", out}, flags...)
	args = append(args, pkg)
	cmd := exec.Command(suite.goBin, args...)
	cmd.Dir = suite.repo
	cmd.Env = append(os.Environ(), env...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, buf.String())
	}
	return nil
}

// buildLoggenImage builds the static generator and an image FROM scratch
// around it, through the API with an in-memory tar context.
func buildLoggenImage() error {
	bin := filepath.Join(suite.tmp, "loggen")
	if err := goBuild(bin, "./e2e/loggen", []string{"CGO_ENABLED=0", "GOOS=linux"}, "-trimpath", "-ldflags=-s -w"); err != nil {
		return err
	}
	exe, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	dockerfile := []byte("FROM scratch\nLABEL " + labelKey + "=" + labelValue + "\nCOPY loggen /loggen\nENTRYPOINT [\"/loggen\"]\n")
	id, err := buildImage(imageRef, nil, []contextFile{{"Dockerfile", 0o644, dockerfile}, {"loggen", 0o755, exe}})
	if err != nil {
		return err
	}
	suite.imageID = id
	return nil
}

// contextFile is one file of an image's build context.
type contextFile struct {
	name string
	mode int64
	data []byte
}

// buildImage builds the image tag from an in-memory tar context holding
// files (Dockerfile among them) with the classic builder, through the API,
// without network: no registry is ever asked. labels are set on the image.
// It returns the image's ID.
func buildImage(tag string, labels map[string]string, files []contextFile) (string, error) {
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	dirs := map[string]bool{}
	for _, f := range files {
		// Parent directories first, so that the context is a proper tree.
		for d := filepath.Dir(f.name); d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: time.Unix(0, 0)}); err != nil {
				return "", err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}); err != nil {
			return "", err
		}
		if _, err := tw.Write(f.data); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	resp, err := suite.docker.ImageBuild(ctx, &ctxTar, build.ImageBuildOptions{
		Tags:        []string{tag},
		Dockerfile:  "Dockerfile",
		Labels:      labels,
		Remove:      true,
		ForceRemove: true,
		NetworkMode: "none",
		Version:     build.BuilderV1,
	})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	var tail []string
	for {
		var msg struct {
			Stream string `json:"stream"`
			Error  string `json:"error"`
			Aux    *struct {
				ID string `json:"ID"`
			} `json:"aux"`
		}
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return "", fmt.Errorf("reading build output: %w", err)
		}
		if msg.Error != "" {
			return "", fmt.Errorf("build: %s\n%s", msg.Error, strings.Join(tail, ""))
		}
		if msg.Stream != "" {
			tail = append(tail, msg.Stream)
		}
	}
	img, err := suite.docker.ImageInspect(ctx, tag)
	if err != nil {
		return "", fmt.Errorf("inspecting the built image: %w\n%s", err, strings.Join(tail, ""))
	}
	return img.ID, nil
}

// berthBinary builds berth once per run (with -race when the tests run with
// -race, unless BERTH_E2E_BERTH_RACE says otherwise). A build failure fails
// the calling test with the compiler's output.
func berthBinary(t *testing.T) string {
	t.Helper()
	suite.berthOnce.Do(func() {
		suite.berthBin = filepath.Join(suite.tmp, "berth")
		flags := []string{}
		race := raceEnabled
		switch os.Getenv("BERTH_E2E_BERTH_RACE") {
		case "0":
			race = false
		case "1":
			race = true
		}
		if race {
			flags = append(flags, "-race")
		}
		start := time.Now()
		suite.berthErr = goBuild(suite.berthBin, "./cmd/berth", nil, flags...)
		if suite.berthErr == nil {
			fmt.Fprintf(os.Stderr, "e2e: berth built (race=%v) in %v\n", race, time.Since(start).Round(time.Millisecond))
		}
	})
	if suite.berthErr != nil {
		t.Fatalf("building berth: %v", suite.berthErr)
	}
	return suite.berthBin
}
