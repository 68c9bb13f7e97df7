package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// TestMain: run starts the collector's goroutines; none may outlive it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// cleanEnv is an environment without DOCKER_HOST, BERTH_* or TLS settings,
// whatever the machine running the tests has.
var cleanEnv = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent"}

// runBerth runs the command as main does and returns its exit code and
// outputs.
func runBerth(t *testing.T, environ []string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, environ, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "berth.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const goodConfig = `
state_dir: /tmp/berth-test-state
http_addr: ""
idle_timeout: 10s
max_burst: 1m
initial_position: beginning
backoff:
  initial: 1s
  max: 20s
log_level: debug
`

func TestVersion(t *testing.T) {
	code, stdout, stderr := runBerth(t, cleanEnv, "version")
	if code != exitOK {
		t.Fatalf("berth version exited %d; stderr: %s", code, stderr)
	}
	for _, want := range []string{"berth " + version, commit, runtime.Version()} {
		if !strings.Contains(stdout, want) {
			t.Errorf("berth version printed %q, want it to contain %q", stdout, want)
		}
	}
	if stderr != "" {
		t.Errorf("berth version wrote to stderr: %q", stderr)
	}
}

func TestHelp(t *testing.T) {
	code, stdout, _ := runBerth(t, cleanEnv, "help")
	if code != exitOK {
		t.Fatalf("berth help exited %d", code)
	}
	for _, want := range []string{"check-config", "version", "-config", "-docker-host", "-state-dir", "-http-addr"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("berth help does not mention %q:\n%s", want, stdout)
		}
	}
	if code, _, _ := runBerth(t, cleanEnv, "check-config", "-h"); code != exitOK {
		t.Errorf("berth check-config -h exited %d, want 0", code)
	}
}

func TestCheckConfigGood(t *testing.T) {
	p := writeConfig(t, goodConfig)
	code, stdout, stderr := runBerth(t, cleanEnv, "check-config", "--config", p)
	if code != exitOK {
		t.Fatalf("check-config of a good file exited %d; stderr: %s", code, stderr)
	}
	if !strings.Contains(stdout, "OK") {
		t.Errorf("check-config printed %q", stdout)
	}
	// No file at all: the defaults are valid too.
	if code, _, stderr := runBerth(t, cleanEnv, "check-config"); code != exitOK {
		t.Errorf("check-config with defaults exited %d; stderr: %s", code, stderr)
	}
}

// TestCheckConfigBad: every way to give a bad value exits 2 with a message
// on stderr naming the key.
func TestCheckConfigBad(t *testing.T) {
	for _, tc := range []struct {
		name    string
		file    string // config file content; "" for none
		environ []string
		args    []string
		key     string
	}{
		{name: "file", file: "initial_position: middle\n", key: "initial_position"},
		{name: "file, nested", file: "backoff:\n  initial: 10s\n  max: 1s\n", key: "backoff.max"},
		{name: "file, unknown key", file: "idle_timout: 10s\n", key: "idle_timout"},
		{name: "environment", environ: []string{"BERTH_LOG_LEVEL=loud"}, key: "log_level"},
		{name: "environment, nested", environ: []string{"BERTH_BACKOFF__MULTIPLIER=0.5"}, key: "backoff.multiplier"},
		{name: "flag", args: []string{"--docker-host", "ssh://x"}, key: "docker_host"},
		{name: "DOCKER_HOST", environ: []string{"DOCKER_HOST=nonsense"}, key: "docker_host"},
		{name: "flag over good file", file: goodConfig, args: []string{"--state-dir="}, key: "state_dir"},
		{name: "header value with a line break", file: "otlp:\n  headers:\n    authorization: \"Bearer s3cret\\r\\nX-Evil: 1\"\n", key: "otlp.headers.authorization"},
		{name: "header value with a line break, environment", environ: []string{"BERTH_OTLP__HEADERS__X-TENANT=a\nb"}, key: "otlp.headers.x-tenant"},
		{name: "credentials in the endpoint", file: "otlp:\n  endpoint: https://alice:s3cret@collector:4318\n", key: "otlp.endpoint"},
		{name: "endpoint scheme", file: "otlp:\n  endpoint: ftp://collector:4318\n", key: "otlp.endpoint"},
		{name: "NaN multiplier", file: "backoff:\n  multiplier: .nan\n", key: "backoff.multiplier"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"check-config"}
			if tc.file != "" {
				args = append(args, "--config", writeConfig(t, tc.file))
			}
			args = append(args, tc.args...)
			code, stdout, stderr := runBerth(t, append(append([]string{}, cleanEnv...), tc.environ...), args...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d; stdout %q, stderr %q", code, exitUsage, stdout, stderr)
			}
			if !strings.Contains(stderr, tc.key) {
				t.Errorf("stderr %q does not name the key %q", stderr, tc.key)
			}
			if strings.Contains(stdout, "OK") {
				t.Errorf("stdout says OK: %q", stdout)
			}
			if strings.Contains(stderr, "s3cret") {
				t.Errorf("stderr shows the secret: %q", stderr)
			}
		})
	}
}

// TestFlagsOverrideEnvironment: a good flag wins over a bad environment
// value for the same key, and DOCKER_HOST is only a fallback.
func TestFlagsOverrideEnvironment(t *testing.T) {
	env := append(append([]string{}, cleanEnv...), "BERTH_DOCKER_HOST=ssh://x", "DOCKER_HOST=nonsense")
	code, _, stderr := runBerth(t, env, "check-config", "--docker-host", "unix:///run/docker.sock")
	if code != exitOK {
		t.Errorf("a good --docker-host did not override the environment: exit %d, stderr %q", code, stderr)
	}
	env = append(append([]string{}, cleanEnv...), "BERTH_DOCKER_HOST=tcp://127.0.0.1:2375", "DOCKER_HOST=nonsense")
	code, _, stderr = runBerth(t, env, "check-config")
	if code != exitOK {
		t.Errorf("BERTH_DOCKER_HOST did not take precedence over DOCKER_HOST: exit %d, stderr %q", code, stderr)
	}
}

// TestCheckConfigReadsDockerTLS: check-config reports TLS asked for without
// its certificates, naming DOCKER_CERT_PATH and the missing file, as the
// collector's start would.
func TestCheckConfigReadsDockerTLS(t *testing.T) {
	empty := t.TempDir()
	env := append(append([]string{}, cleanEnv...), "DOCKER_HOST=tcp://127.0.0.1:2376", "DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH="+empty)
	code, _, stderr := runBerth(t, env, "check-config")
	if code != exitUsage || !strings.Contains(stderr, "DOCKER_CERT_PATH="+empty) || !strings.Contains(stderr, filepath.Join(empty, "ca.pem")+" is missing") {
		t.Errorf("check-config with DOCKER_TLS_VERIFY and an empty DOCKER_CERT_PATH: exit %d, stderr %q; want %d naming ca.pem", code, stderr, exitUsage)
	}
}

func TestMissingConfigFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "absent.yaml")
	code, _, stderr := runBerth(t, cleanEnv, "check-config", "--config", p)
	if code != exitUsage {
		t.Fatalf("exit %d, want %d", code, exitUsage)
	}
	if !strings.Contains(stderr, p) {
		t.Errorf("stderr %q does not name the missing file", stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"unknown command", []string{"frobnicate"}, "frobnicate"},
		{"stray argument", []string{"check-config", "extra"}, "extra"},
		{"stray argument after a flag", []string{"check-config", "--state-dir", "/x", "extra"}, "extra"},
		{"unknown flag", []string{"check-config", "--bogus"}, "bogus"},
		{"flag without its value", []string{"check-config", "--config"}, "config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runBerth(t, cleanEnv, tc.args...)
			if code != exitUsage {
				t.Fatalf("berth %v exited %d, want %d; stdout %q, stderr %q", tc.args, code, exitUsage, stdout, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q does not mention %q", stderr, tc.want)
			}
		})
	}
}
