//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthlog/berth/internal/testpki"
)

// tlsDaemonCerts are the files of TestDaemonTLS: the daemon's (dockerd
// --tlscacert/--tlscert/--tlskey) and DOCKER_CERT_PATH directories.
type tlsDaemonCerts struct {
	daemonCA, daemonCert, daemonKey string
	// good holds ca.pem (the daemon's CA), cert.pem and key.pem (a client
	// certificate of that CA).
	good string
	// wrongCA holds another CA's ca.pem with the same good client
	// certificate: only the daemon's verification fails.
	wrongCA string
	// empty has no file.
	empty string
}

func makeTLSDaemonCerts(t *testing.T) tlsDaemonCerts {
	t.Helper()
	ca, err := testpki.NewCA("berth e2e CA")
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.Server(net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Client()
	if err != nil {
		t.Fatal(err)
	}
	other, err := testpki.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := tlsDaemonCerts{
		daemonCA: filepath.Join(dir, "daemon", "ca.pem"), daemonCert: filepath.Join(dir, "daemon", "server-cert.pem"),
		daemonKey: filepath.Join(dir, "daemon", "server-key.pem"),
		good:      filepath.Join(dir, "good"), wrongCA: filepath.Join(dir, "wrong-ca"), empty: filepath.Join(dir, "empty"),
	}
	if err := testpki.WriteCertPath(c.good, ca, client); err != nil {
		t.Fatal(err)
	}
	if err := testpki.WriteCertPath(c.wrongCA, other, client); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(c.daemonCA), c.empty} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for path, data := range map[string][]byte{c.daemonCA: ca.PEM, c.daemonCert: server.CertPEM, c.daemonKey: server.KeyPEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// TestDaemonTLS: a private dockerd with --tlsverify on a TCP port of
// 127.0.0.1 (and its unix socket, which the harness uses), with a CA, server
// and client certificates made here. With DOCKER_HOST=tcp://...,
// DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH as the docker CLI takes them,
// berth collects a container's every numbered line exactly once. A
// DOCKER_CERT_PATH whose CA did not sign the daemon's certificate is refused,
// and /readyz and the log say so; plaintext to the TLS port is refused with
// the fix; DOCKER_TLS_VERIFY with a certificate directory without ca.pem is an
// error at start naming it, never a plaintext connection.
func TestDaemonTLS(t *testing.T) {
	needDocker(t)
	certs := makeTLSDaemonCerts(t)
	addr := freePort(t)
	newPrivateDaemonArgs(t, "--tlsverify", "--tlscacert", certs.daemonCA, "--tlscert", certs.daemonCert,
		"--tlskey", certs.daemonKey, "-H", "tcp://"+addr)
	env := func(certPath string, verify bool) []string {
		e := []string{"DOCKER_HOST=tcp://" + addr, "DOCKER_CERT_PATH=" + certPath}
		if verify {
			e = append(e, "DOCKER_TLS_VERIFY=1")
		}
		return e
	}

	// TLS asked for without certificates: berth does not start.
	startErr := berthStartError(t, env(certs.empty, true))
	for _, want := range []string{"DOCKER_CERT_PATH=" + certs.empty, filepath.Join(certs.empty, "ca.pem") + " is missing"} {
		if !strings.Contains(startErr, want) {
			t.Errorf("berth with DOCKER_TLS_VERIFY=1 and an empty DOCKER_CERT_PATH: its error does not contain %q:\n%s", want, startErr)
		}
	}

	// The wrong CA, and plaintext: refused, and said so.
	refusals := map[string]string{}
	for _, tc := range []struct {
		name string
		env  []string
		want []string
	}{
		{"wrong CA", env(certs.wrongCA, true), []string{"not signed by the CA berth trusts", "DOCKER_CERT_PATH=" + certs.wrongCA, "unknown authority"}},
		{"plaintext", []string{"DOCKER_HOST=tcp://" + addr}, []string{"speaks TLS", "DOCKER_TLS_VERIFY=1"}},
	} {
		b := startBerthProc(t, BerthConfig{NoDockerHost: true, Extra: daemonBackoff}, berthProc{Env: tc.env, Dir: subDir(t, tc.name)})
		var body string
		waitFor(t, "/readyz to answer 503 ("+tc.name+")", 15*time.Second, func() (bool, string) {
			code, s := b.readyz()
			body = s
			return code == 503 && !strings.Contains(s, "connecting"), fmt.Sprintf("%d %s", code, s)
		})
		stderr, _ := os.ReadFile(b.stderrPath)
		for _, want := range tc.want {
			if !strings.Contains(body, want) {
				t.Errorf("%s: /readyz says %q; want it to contain %q", tc.name, body, want)
			}
			if !strings.Contains(string(stderr), want) {
				t.Errorf("%s: berth's log does not contain %q:\n%s", tc.name, want, b.stderrTail(10))
			}
		}
		b.stop(t)
		refusals[tc.name] = body
	}

	// The right certificates: every line once.
	b := startBerthProc(t, BerthConfig{NoDockerHost: true, Extra: daemonBackoff}, berthProc{Env: env(certs.good, true), Dir: subDir(t, "good")})
	start := time.Now()
	waitFor(t, "/readyz to answer 200 over TLS", 30*time.Second, func() (bool, string) {
		code, body := b.readyz()
		return code == 200, fmt.Sprintf("%d %s", code, body)
	})
	ready := time.Since(start)
	c := runContainer(t, ContainerSpec{Args: []string{"-n", "3000", "-stderr-every", "7"}})
	c.waitExited(t, time.Minute)
	b.waitRecords(t, c.Name, 3000, time.Minute)
	b.stop(t)
	recs := b.out.records(c.Name)
	checkShared(t, c, recs, 3000, 7)
	compareWithDocker(t, c, recs)
	stderr, _ := os.ReadFile(b.stderrPath)
	if !strings.Contains(string(stderr), "docker_host=tcp://"+addr) {
		t.Errorf("berth's start line does not name docker_host=tcp://%s:\n%s", addr, b.stderrTail(10))
	}
	t.Logf("TLS daemon at %s: ready in %v, %d records of 3000 lines; refused: wrong CA %q; plaintext %q; empty DOCKER_CERT_PATH: %q",
		addr, ready.Round(time.Millisecond), len(recs), refusals["wrong CA"], refusals["plaintext"], lastLine(startErr))
}

// subDir is a directory of its own under the test's, for one berth.
func subDir(t *testing.T, name string) string {
	t.Helper()
	d := filepath.Join(testDir(t), strings.ReplaceAll(name, " ", "-"))
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	return ls[len(ls)-1]
}

// berthStartError runs berth with env (docker_host unset) and returns what
// it wrote, requiring that it exits at once with status 2 (a configuration
// it cannot use).
func berthStartError(t *testing.T, env []string) string {
	t.Helper()
	dir := subDir(t, "start-error")
	cfg := filepath.Join(dir, "berth.yaml")
	yaml := fmt.Sprintf("state_dir: %s\nhttp_addr: %s\n", quote(filepath.Join(dir, "state")), quote(freePort(t)))
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, berthBinary(t), "--config", cfg)
	cmd.Env = append(berthEnv(), env...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Errorf("berth with unusable TLS settings ended with %v, want exit status 2:\n%s", err, out)
	}
	return string(out)
}

// TestSocketPermissionDenied: berth run as an unprivileged user (nobody, not
// in the docker group) against the system's socket, which it may not open
// (its mode is not changed). It stays up, /readyz answers 503 and /status
// has events_error, both naming the socket and the fix; it keeps retrying
// with backoff, but its log warns once, not at every retry.
func TestSocketPermissionDenied(t *testing.T) {
	needDocker(t)
	const sock = "/var/run/docker.sock"
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("user nobody: %v", err)
	}
	uid, _ := strconv.ParseUint(nobody.Uid, 10, 32)
	gid, _ := strconv.ParseUint(nobody.Gid, 10, 32)
	var st syscall.Stat_t
	if err := syscall.Stat(sock, &st); err != nil {
		t.Fatalf("stat %s: %v", sock, err)
	}
	if st.Mode&0o006 != 0 || st.Uid == uint32(uid) || st.Gid == uint32(gid) {
		t.Fatalf("%s (mode %o, owner %d:%d) would let nobody (%d:%d) in: this test needs a socket it may not open", sock, st.Mode&0o777, st.Uid, st.Gid, uid, gid)
	}

	// A directory nobody can read: the binary (0755) and the config;
	// the state directory is nobody's.
	dir, err := os.MkdirTemp("", "berth-nobody")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "berth")
	copyFile(t, berthBinary(t), bin, 0o755)
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(state, int(uid), int(gid)); err != nil {
		t.Fatal(err)
	}
	// Debug level: the retries that are not warned of are logged there,
	// which proves berth keeps trying.
	b := startBerthProc(t, BerthConfig{DockerHost: "unix://" + sock, LogLevel: "debug"}, berthProc{
		Bin: bin, Dir: dir, StateDir: state,
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}},
	})
	start := time.Now()
	want := []string{"permission denied on the Docker socket " + sock, "docker group", "SupplementaryGroups=docker"}
	var readyz string
	waitFor(t, "/readyz to answer 503 with the permission error", 15*time.Second, func() (bool, string) {
		code, body := b.readyz()
		readyz = body
		return code == 503 && strings.Contains(body, "permission denied"), fmt.Sprintf("%d %s", code, body)
	})
	status, err := b.status()
	if err != nil {
		t.Fatal(err)
	}
	eventsErr, _ := status["events_error"].(string)
	for _, w := range want {
		if !strings.Contains(readyz, w) {
			t.Errorf("/readyz says %q; want it to contain %q", readyz, w)
		}
		if !strings.Contains(eventsErr, w) {
			t.Errorf("/status events_error is %q; want it to contain %q", eventsErr, w)
		}
	}

	// At least 10 s and 4 attempts (the default backoff: 0.5 s doubling,
	// jittered, so about 5 in 10 s).
	const window = 10 * time.Second
	var warns, retries int
	count := func() {
		stderr, _ := os.ReadFile(b.stderrPath)
		warns, retries = 0, 0
		for _, l := range strings.Split(string(stderr), "\n") {
			if !strings.Contains(l, "docker events unavailable") || !strings.Contains(l, "permission denied on the Docker socket") {
				continue
			}
			retries++
			if strings.Contains(l, "level=WARN") {
				warns++
			}
		}
	}
	waitFor(t, "10 s and 4 attempts to connect", 30*time.Second, func() (bool, string) {
		b.checkAlive(t)
		count()
		return time.Since(start) >= window && retries >= 4, fmt.Sprintf("%d attempts in %v", retries, time.Since(start).Round(time.Millisecond))
	})
	elapsed := time.Since(start)
	if warns != 1 {
		t.Errorf("%d warnings of the permission error in %v (%d attempts); want 1 (then at most one per backoff.max, 30 s):\n%s", warns, elapsed.Round(time.Second), retries, b.stderrTail(15))
	}
	if code, _ := b.readyz(); code != 503 {
		t.Errorf("/readyz answers %d while the socket is refused, want 503", code)
	}
	b.stop(t)
	t.Logf("socket refused to nobody: %d attempts in %v, %d warning line(s); /readyz %q", retries, elapsed.Round(time.Millisecond), warns, readyz)
}

// copyFile copies src to dst with mode.
func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
