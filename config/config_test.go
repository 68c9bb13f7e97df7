package config

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/knadh/koanf/providers/structs"
	"github.com/knadh/koanf/v2"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultValidates(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
}

// TestLoadNothingIsDefault: with no file, environment or flags, Load
// returns the defaults.
func TestLoadNothingIsDefault(t *testing.T) {
	cfg, err := Load("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, Default()) {
		t.Errorf("Load() = %+v, want the defaults %+v", cfg, Default())
	}
}

// TestValidateNamesTheBadKey: each bad value is reported under its key.
func TestValidateNamesTheBadKey(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(c *Config)
		key    string
	}{
		{"idle_timeout too short", func(c *Config) { c.IdleTimeout = 10 * time.Millisecond }, "idle_timeout"},
		{"idle_timeout zero", func(c *Config) { c.IdleTimeout = 0; c.MaxBurst = time.Minute }, "idle_timeout"},
		{"max_burst below idle_timeout", func(c *Config) { c.IdleTimeout = time.Minute; c.MaxBurst = 30 * time.Second }, "max_burst"},
		{"quiet_idle_timeout below idle_timeout", func(c *Config) { c.QuietIdleTimeout = 10 * time.Second }, "quiet_idle_timeout"},
		{"max_concurrent_attaches zero", func(c *Config) { c.MaxConcurrentAttaches = 0 }, "max_concurrent_attaches"},
		{"max_concurrent_attaches too many", func(c *Config) { c.MaxConcurrentAttaches = 1025 }, "max_concurrent_attaches"},
		{"initial_position middle", func(c *Config) { c.InitialPosition = "middle" }, "initial_position"},
		{"max_line_bytes too small", func(c *Config) { c.MaxLineBytes = 100 }, "max_line_bytes"},
		{"max_line_bytes too large", func(c *Config) { c.MaxLineBytes = 65<<20 + 1 }, "max_line_bytes"},
		{"backoff.max below backoff.initial", func(c *Config) { c.Backoff.Initial = time.Minute; c.Backoff.Max = time.Second }, "backoff.max"},
		{"backoff.initial zero", func(c *Config) { c.Backoff.Initial = 0 }, "backoff.initial"},
		{"backoff.multiplier below 1", func(c *Config) { c.Backoff.Multiplier = 0.5 }, "backoff.multiplier"},
		{"log_level loud", func(c *Config) { c.LogLevel = "loud" }, "log_level"},
		{"telemetry_otlp yes", func(c *Config) { c.TelemetryOTLP = "yes" }, "telemetry_otlp"},
		{"docker_host ssh", func(c *Config) { c.DockerHost = "ssh://x" }, "docker_host"},
		{"docker_host nonsense", func(c *Config) { c.DockerHost = "nonsense" }, "docker_host"},
		{"docker_host without address", func(c *Config) { c.DockerHost = "unix://" }, "docker_host"},
		{"docker_tls with a unix docker_host", func(c *Config) {
			c.DockerHost, c.TLS.CAFile = "unix:///var/run/docker.sock", "/etc/berth/ca.pem"
		}, "docker_tls"},
		{"docker_tls.cert_file without key_file", func(c *Config) {
			c.DockerHost, c.TLS.CertFile = "tcp://10.0.0.2:2376", "/etc/berth/cert.pem"
		}, "docker_tls"},
		{"docker_tls.key_file without cert_file", func(c *Config) {
			c.DockerHost, c.TLS.KeyFile = "tcp://10.0.0.2:2376", "/etc/berth/key.pem"
		}, "docker_tls"},
		{"docker_tls.insecure_skip_verify with ca_file", func(c *Config) {
			c.DockerHost, c.TLS.CAFile, c.TLS.InsecureSkipVerify = "tcp://10.0.0.2:2376", "/etc/berth/ca.pem", true
		}, "docker_tls.insecure_skip_verify"},
		{"state_dir empty", func(c *Config) { c.StateDir = "" }, "state_dir"},
		{"reattach_tail zero", func(c *Config) { c.ReattachTail = 0 }, "reattach_tail"},
		{"events_idle_timeout too short", func(c *Config) { c.EventsIdleTimeout = 500 * time.Millisecond }, "events_idle_timeout"},
		{"control_timeout too short", func(c *Config) { c.ControlTimeout = time.Millisecond }, "control_timeout"},
		{"shutdown_timeout zero", func(c *Config) { c.ShutdownTimeout = 0 }, "shutdown_timeout"},
		{"otlp.max_request_bytes zero", func(c *Config) { c.OTLP.MaxRequestBytes = 0 }, "otlp.max_request_bytes"},
		{"otlp.max_request_bytes below a line", func(c *Config) { c.OTLP.MaxRequestBytes = int64(c.MaxLineBytes) }, "otlp.max_request_bytes"},
		{"max_line_bytes above otlp.max_request_bytes", func(c *Config) { c.MaxLineBytes = 8 << 20 }, "otlp.max_request_bytes"},
		{"labels empty entry", func(c *Config) { c.Labels = []string{"team", ""} }, "labels"},
		{"labels blank entry", func(c *Config) { c.Labels = []string{"  "} }, "labels"},
		{"labels entry with spaces around it", func(c *Config) { c.Labels = []string{" team"} }, "labels"},
		{"labels * at the start", func(c *Config) { c.Labels = []string{"*.example.com"} }, "labels"},
		{"labels * in the middle", func(c *Config) { c.Labels = []string{"com.*.team"} }, "labels"},
		{"labels two *", func(c *Config) { c.Labels = []string{"com.**"} }, "labels"},
		{"include unknown kind", func(c *Config) { c.Include = []string{"name=web-*", "nmae=api"} }, "include"},
		{"include without =", func(c *Config) { c.Include = []string{"web-*"} }, "include"},
		{"exclude empty entry", func(c *Config) { c.Exclude = []string{""} }, "exclude"},
		{"exclude empty label key", func(c *Config) { c.Exclude = []string{"label==x"} }, "exclude"},
		{"opt_in with include", func(c *Config) { c.OptIn = true; c.Include = []string{"name=web"} }, "opt_in"},
		{"opt_in with exclude", func(c *Config) { c.OptIn = true; c.Exclude = []string{"name=web"} }, "opt_in"},
		{"backoff.multiplier NaN", func(c *Config) { c.Backoff.Multiplier = math.NaN() }, "backoff.multiplier"},
		{"backoff.multiplier +Inf", func(c *Config) { c.Backoff.Multiplier = math.Inf(1) }, "backoff.multiplier"},
		{"backoff.multiplier -Inf", func(c *Config) { c.Backoff.Multiplier = math.Inf(-1) }, "backoff.multiplier"},
		{"trace_sampling NaN", func(c *Config) { c.TraceSampling = math.NaN() }, "trace_sampling"},
		{"trace_sampling +Inf", func(c *Config) { c.TraceSampling = math.Inf(1) }, "trace_sampling"},
		{"otlp.endpoint ftp", func(c *Config) { c.OTLP.Endpoint = "ftp://collector:4318" }, "otlp.endpoint"},
		{"otlp.endpoint grpc scheme", func(c *Config) { c.OTLP.Endpoint = "grpc://collector:4317" }, "otlp.endpoint"},
		{"otlp.endpoint unix socket", func(c *Config) { c.OTLP.Endpoint = "unix:///run/otel.sock" }, "otlp.endpoint"},
		{"otlp.endpoint without host", func(c *Config) { c.OTLP.Endpoint = "http:///v1/logs" }, "otlp.endpoint"},
		{"otlp.endpoint with a line break", func(c *Config) { c.OTLP.Endpoint = "http://collector:4318\nX: y" }, "otlp.endpoint"},
		{"otlp.endpoint with user and password", func(c *Config) { c.OTLP.Endpoint = "https://alice:s3cret@collector:4318" }, "otlp.endpoint"},
		{"otlp.endpoint with a user", func(c *Config) { c.OTLP.Endpoint = "http://token@collector:4318/otlp" }, "otlp.endpoint"},
		{"otlp.endpoint host:port with credentials", func(c *Config) { c.OTLP.Endpoint = "alice:s3cret@collector:4317" }, "otlp.endpoint"},
		{"otlp.headers value with LF", func(c *Config) {
			c.OTLP.Headers = map[string]string{"authorization": "Bearer x\nX-Evil: 1"}
		}, "otlp.headers.authorization"},
		{"otlp.headers value with CR", func(c *Config) { c.OTLP.Headers = map[string]string{"x-tenant": "a\rb"} }, "otlp.headers.x-tenant"},
		{"otlp.headers empty name", func(c *Config) { c.OTLP.Headers = map[string]string{"": "v"} }, "otlp.headers"},
		{"otlp.headers name with a colon", func(c *Config) { c.OTLP.Headers = map[string]string{"a:b": "v"} }, "otlp.headers"},
		// Zero and negative sizes and durations (refused before this table
		// grew; kept here so that every numeric key has its case).
		{"max_line_bytes zero", func(c *Config) { c.MaxLineBytes = 0 }, "max_line_bytes"},
		{"max_line_bytes negative", func(c *Config) { c.MaxLineBytes = -1 }, "max_line_bytes"},
		{"max_in_flight_bytes zero", func(c *Config) { c.MaxInFlightBytes = 0 }, "max_in_flight_bytes"},
		{"max_in_flight_bytes negative", func(c *Config) { c.MaxInFlightBytes = -1 << 30 }, "max_in_flight_bytes"},
		{"reattach_tail negative", func(c *Config) { c.ReattachTail = -5 }, "reattach_tail"},
		{"max_burst negative", func(c *Config) { c.MaxBurst = -time.Second }, "max_burst"},
		{"backoff.initial negative", func(c *Config) { c.Backoff.Initial = -time.Second }, "backoff.initial"},
		{"backoff.multiplier zero", func(c *Config) { c.Backoff.Multiplier = 0 }, "backoff.multiplier"},
		{"otlp.timeout negative", func(c *Config) { c.OTLP.Timeout = -time.Second }, "otlp.timeout"},
		{"checkpoint_interval zero", func(c *Config) { c.CheckpointInterval = 0 }, "checkpoint_interval"},
		{"metrics_interval zero", func(c *Config) { c.MetricsInterval = 0 }, "metrics_interval"},
		{"events_idle_timeout negative", func(c *Config) { c.EventsIdleTimeout = -time.Second }, "events_idle_timeout"},
		{"control_timeout zero", func(c *Config) { c.ControlTimeout = 0 }, "control_timeout"},
		{"shutdown_timeout negative", func(c *Config) { c.ShutdownTimeout = -time.Second }, "shutdown_timeout"},
		{"trace_sampling negative", func(c *Config) { c.TraceSampling = -0.1 }, "trace_sampling"},
		{"multiline.preset unknown", func(c *Config) { c.Multiline.Preset = "ruby" }, "multiline.preset"},
		{"multiline.preset and start", func(c *Config) { c.Multiline.Preset, c.Multiline.Start = "go", "^x" }, "multiline.preset"},
		{"multiline.start not a regexp", func(c *Config) { c.Multiline.Start = "(" }, "multiline.start"},
		{"multiline.continue not a regexp", func(c *Config) { c.Multiline.Continue = "[" }, "multiline.continue"},
		{"multiline.timeout zero", func(c *Config) { c.Multiline.Timeout = 0 }, "multiline.timeout"},
		{"multiline.max_lines one", func(c *Config) { c.Multiline.MaxLines = 1 }, "multiline.max_lines"},
		{"parse.format unknown", func(c *Config) { c.Parse.Format = "xml" }, "parse.format"},
		{"parse.format empty", func(c *Config) { c.Parse.Format = "" }, "parse.format"},
		{"parse.body unknown", func(c *Config) { c.Parse.Body = "object" }, "parse.body"},
		{"resource_attributes empty key", func(c *Config) { c.ResourceAttributes = map[string]string{"": "x"} }, "resource_attributes"},
		{"resource_attributes key with a space", func(c *Config) { c.ResourceAttributes = map[string]string{"a b": "x"} }, "resource_attributes"},
		{"resource_attributes berth's own key", func(c *Config) { c.ResourceAttributes = map[string]string{"service.name": "x"} }, "resource_attributes.service.name"},
		{"resource_attributes container key", func(c *Config) { c.ResourceAttributes = map[string]string{"container.id": "x"} }, "resource_attributes.container.id"},
		{"resource_attributes line break", func(c *Config) { c.ResourceAttributes = map[string]string{"team": "a\nb"} }, "resource_attributes.team"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.modify(&c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate() accepted %+v", c)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tc.key+": ") {
				t.Errorf("Validate() = %q, want it to start with the key %q", msg, tc.key)
			}
			if lines := strings.Split(msg, "\n"); len(lines) != 1 {
				t.Errorf("one bad key gave %d problems: %q", len(lines), msg)
			}
		})
	}
}

// TestValidateAccepts: values at the edges of the allowed ranges pass.
func TestValidateAccepts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(c *Config)
	}{
		{"unix socket", func(c *Config) { c.DockerHost = "unix:///run/user/1000/docker.sock" }},
		{"tcp", func(c *Config) { c.DockerHost = "tcp://127.0.0.1:2376" }},
		{"shortest idle_timeout", func(c *Config) { c.IdleTimeout = 100 * time.Millisecond }},
		{"max_burst equal to idle_timeout", func(c *Config) { c.MaxBurst = c.IdleTimeout }},
		{"smallest max_line_bytes", func(c *Config) { c.MaxLineBytes = 1024 }},
		{"largest max_line_bytes, with room for it in a request", func(c *Config) {
			c.MaxLineBytes = 64 << 20
			c.OTLP.MaxRequestBytes = 64<<20 + RequestRoom
		}},
		{"smallest max_request_bytes for the default line", func(c *Config) { c.OTLP.MaxRequestBytes = int64(c.MaxLineBytes) + RequestRoom }},
		{"beginning", func(c *Config) { c.InitialPosition = "beginning" }},
		{"upper-case log level", func(c *Config) { c.LogLevel = "DEBUG" }},
		{"no http listener", func(c *Config) { c.HTTPAddr = "" }},
		{"constant backoff", func(c *Config) { c.Backoff.Max = c.Backoff.Initial; c.Backoff.Multiplier = 1 }},
		{"labels by key and by prefix", func(c *Config) { c.Labels = []string{"team", "com.example.*", "com.docker.compose.project"} }},
		{"every label", func(c *Config) { c.Labels = []string{"*"} }},
		{"no labels", func(c *Config) { c.Labels = []string{} }},
		{"include and exclude rules", func(c *Config) {
			c.Include = []string{"name=web-*", "image=nginx:1.*", "label=team=payments", "label=com.example.*"}
			c.Exclude = []string{"name=*-debug"}
		}},
		{"opt_in alone", func(c *Config) { c.OptIn = true }},
		{"http endpoint", func(c *Config) { c.OTLP.Endpoint = "http://127.0.0.1:4318" }},
		{"https endpoint with a path", func(c *Config) { c.OTLP.Endpoint = "https://gw.example/otlp" }},
		{"upper-case scheme", func(c *Config) { c.OTLP.Endpoint = "HTTPS://gw.example:4317" }},
		{"host:port endpoint", func(c *Config) { c.OTLP.Endpoint = "collector:4317" }},
		{"an @ in the endpoint's path is not a credential", func(c *Config) { c.OTLP.Endpoint = "https://gw.example/tenants/@team" }},
		{"headers", func(c *Config) {
			c.OTLP.Headers = map[string]string{"authorization": "Basic YWxpY2U6czNjcmV0", "x-tenant": "team a"}
		}},
		{"largest trace_sampling", func(c *Config) { c.TraceSampling = 1 }},
		{"no trace kept", func(c *Config) { c.TraceSampling = 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.modify(&c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate() = %v", err)
			}
		})
	}
}

// TestValidateReportsEveryBadKey: several problems come in one error, each
// naming its key, so a user fixes them in one go.
func TestValidateReportsEveryBadKey(t *testing.T) {
	c := Default()
	c.IdleTimeout = time.Millisecond
	c.InitialPosition = "middle"
	c.LogLevel = "loud"
	c.DockerHost = "ssh://x"
	c.Backoff.Initial = time.Minute
	c.Backoff.Max = time.Second
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate() accepted five bad keys")
	}
	var keys []string
	for _, line := range strings.Split(err.Error(), "\n") {
		key, _, _ := strings.Cut(line, ": ")
		keys = append(keys, key)
	}
	slices.Sort(keys)
	want := []string{"backoff.max", "docker_host", "idle_timeout", "initial_position", "log_level"}
	if !slices.Equal(keys, want) {
		t.Errorf("the error names %v, want %v; error:\n%v", keys, want, err)
	}
}

// TestLoadUnknownKeyInFile: a misspelt key is an error naming it, not a
// silently ignored setting.
func TestLoadUnknownKeyInFile(t *testing.T) {
	for _, tc := range []struct{ yaml, key string }{
		{"idle_timeout: 10s\nidle_timout: 20s\n", "idle_timout"},
		{"backoff:\n  initial: 1s\n  maxx: 10s\n", "maxx"},
	} {
		p := writeFile(t, "berth.yaml", tc.yaml)
		_, err := Load(p, nil, nil)
		if err == nil {
			t.Errorf("Load accepted the unknown key %q", tc.key)
			continue
		}
		if !strings.Contains(err.Error(), tc.key) {
			t.Errorf("Load: %v does not name the unknown key %q", err, tc.key)
		}
	}
}

// TestLoadUnknownEnvKey: BERTH_* variables are configuration; a misspelt one
// is an error naming it.
func TestLoadUnknownEnvKey(t *testing.T) {
	_, err := Load("", []string{"BERTH_IDLE_TIMOUT=3s"}, nil)
	if err == nil || !strings.Contains(err.Error(), "idle_timout") {
		t.Errorf("Load with BERTH_IDLE_TIMOUT: %v, want an error naming idle_timout", err)
	}
}

func TestLoadBadValueInFile(t *testing.T) {
	p := writeFile(t, "berth.yaml", "idle_timeout: soon\n")
	_, err := Load(p, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "idle_timeout") {
		t.Errorf("Load of idle_timeout: soon = %v, want an error naming idle_timeout", err)
	}
}

func TestLoadMalformedYAML(t *testing.T) {
	p := writeFile(t, "berth.yaml", "idle_timeout: [10s\n")
	_, err := Load(p, nil, nil)
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("Load of malformed YAML = %v, want an error naming the file", err)
	}
}

// TestLoadEnvironment: BERTH_IDLE_TIMEOUT and BERTH_BACKOFF__INITIAL reach
// their keys; other variables are ignored.
func TestLoadEnvironment(t *testing.T) {
	cfg, err := Load("", []string{
		"BERTH_IDLE_TIMEOUT=3s",
		"BERTH_BACKOFF__INITIAL=1s",
		"BERTH_MAX_LINE_BYTES=2048",
		"BERTH_LOG_LEVEL=debug=really", // the value is everything after the first =
		"PATH=/usr/bin",
		"DOCKER_HOST=tcp://elsewhere:2375",
		"NOT_BERTH_IDLE_TIMEOUT=9s",
		"malformed",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.IdleTimeout = 3 * time.Second
	want.Backoff.Initial = time.Second
	want.MaxLineBytes = 2048
	want.LogLevel = "debug=really"
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Load = %+v, want %+v", cfg, want)
	}
}

// TestLoadDockerTLS: docker_tls from a file and from BERTH_DOCKER_TLS__*,
// which the DOCKER_TLS* variables do not set (dockerapi reads those when
// docker_tls is not set).
func TestLoadDockerTLS(t *testing.T) {
	path := filepath.Join(t.TempDir(), "berth.yaml")
	yaml := "docker_host: tcp://10.0.0.2:2376\ndocker_tls:\n  ca_file: /etc/berth/ca.pem\n  cert_file: /etc/berth/cert.pem\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, []string{
		"BERTH_DOCKER_TLS__KEY_FILE=/etc/berth/key.pem",
		"DOCKER_TLS_VERIFY=1",
		"DOCKER_CERT_PATH=/elsewhere",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := DockerTLS{CAFile: "/etc/berth/ca.pem", CertFile: "/etc/berth/cert.pem", KeyFile: "/etc/berth/key.pem"}
	if cfg.TLS != want {
		t.Errorf("docker_tls = %+v, want %+v", cfg.TLS, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	cfg, err = Load("", []string{"BERTH_DOCKER_TLS__INSECURE_SKIP_VERIFY=true"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.TLS.InsecureSkipVerify || !cfg.TLS.IsSet() {
		t.Errorf("BERTH_DOCKER_TLS__INSECURE_SKIP_VERIFY=true: docker_tls = %+v", cfg.TLS)
	}
}

// TestLoadLayers: flags override the environment, which overrides the file,
// which overrides the defaults; a nested map in the file keeps the defaults
// of the keys it does not set.
func TestLoadLayers(t *testing.T) {
	p := writeFile(t, "berth.yaml", `
state_dir: /from/file
http_addr: 127.0.0.1:1111
idle_timeout: 10s
max_burst: 2m
backoff:
  max: 1m
`)
	environ := []string{
		"BERTH_STATE_DIR=/from/env",
		"BERTH_HTTP_ADDR=127.0.0.1:2222",
		"BERTH_BACKOFF__MULTIPLIER=1.5",
	}
	flags := map[string]any{"state_dir": "/from/flag"}
	cfg, err := Load(p, environ, flags)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.StateDir = "/from/flag"                  // file, env and flag: the flag
	want.HTTPAddr = "127.0.0.1:2222"              // file and env: the env
	want.IdleTimeout = 10 * time.Second           // file only
	want.MaxBurst = 2 * time.Minute               // file only
	want.Backoff.Max = time.Minute                // file, nested
	want.Backoff.Multiplier = 1.5                 // env, nested
	want.Backoff.Initial = 500 * time.Millisecond // default, nested
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Load =\n%+v\nwant\n%+v", cfg, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

// TestLoadLabels: the labels list is set from a YAML list, a YAML string or
// a comma-separated BERTH_LABELS; the environment replaces the file's list;
// what Validate then says about it.
func TestLoadLabels(t *testing.T) {
	for _, tc := range []struct {
		name    string
		yaml    string // file content; empty: no file
		environ []string
		want    []string
		wantErr string // part of Validate's error; empty: valid
	}{
		{name: "default: none"},
		{name: "YAML list", yaml: "labels:\n  - team\n  - com.example.*\n", want: []string{"team", "com.example.*"}},
		{name: "YAML flow list", yaml: "labels: [team, \"com.example.*\"]\n", want: []string{"team", "com.example.*"}},
		{name: "YAML string is split at commas", yaml: "labels: team, com.example.*\n", want: []string{"team", "com.example.*"}},
		{name: "YAML empty list", yaml: "labels: []\n", want: []string{}},
		{name: "environment", environ: []string{"BERTH_LABELS=team,com.example.*,env"}, want: []string{"team", "com.example.*", "env"}},
		{name: "environment, spaces trimmed", environ: []string{"BERTH_LABELS= team , com.example.* "}, want: []string{"team", "com.example.*"}},
		{name: "environment, one key", environ: []string{"BERTH_LABELS=team"}, want: []string{"team"}},
		{name: "environment empty: none", environ: []string{"BERTH_LABELS="}, want: []string{}},
		{name: "environment replaces the file", yaml: "labels: [a, b, c]\n", environ: []string{"BERTH_LABELS=d"}, want: []string{"d"}},
		{name: "environment with an empty entry", environ: []string{"BERTH_LABELS=team,,env"}, want: []string{"team", "", "env"}, wantErr: "labels: entry 2 is empty"},
		{name: "environment trailing comma", environ: []string{"BERTH_LABELS=team,"}, want: []string{"team", ""}, wantErr: "labels: entry 2 is empty"},
		{name: "YAML * in the middle", yaml: "labels: [\"com.*.team\"]\n", want: []string{"com.*.team"}, wantErr: `labels: entry "com.*.team" has a * that is not its last character`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.yaml != "" {
				path = writeFile(t, "berth.yaml", tc.yaml)
			}
			cfg, err := Load(path, tc.environ, nil)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !slices.Equal(cfg.Labels, tc.want) {
				t.Errorf("labels = %q, want %q", cfg.Labels, tc.want)
			}
			err = cfg.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Validate = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestLoadSelection: include and exclude from YAML lists and from the
// comma-separated BERTH_INCLUDE/BERTH_EXCLUDE, opt_in from YAML and
// BERTH_OPT_IN, and what Validate says of a bad entry: the key, the entry's
// number and text.
func TestLoadSelection(t *testing.T) {
	for _, tc := range []struct {
		name             string
		yaml             string
		environ          []string
		include, exclude []string
		optIn            bool
		wantErr          string
	}{
		{name: "default: no rules"},
		{name: "YAML lists", yaml: "include:\n  - name=web-*\n  - label=team=payments\nexclude: [\"image=nginx:*\"]\n",
			include: []string{"name=web-*", "label=team=payments"}, exclude: []string{"image=nginx:*"}},
		{name: "environment", environ: []string{"BERTH_INCLUDE=name=web-*, label=team=payments", "BERTH_EXCLUDE=name=*-debug"},
			include: []string{"name=web-*", "label=team=payments"}, exclude: []string{"name=*-debug"}},
		{name: "opt_in from YAML", yaml: "opt_in: true\n", optIn: true},
		{name: "opt_in from the environment", environ: []string{"BERTH_OPT_IN=true"}, optIn: true},
		{name: "a bad entry is named", yaml: "exclude:\n  - name=ok\n  - nmae=web\n", exclude: []string{"name=ok", "nmae=web"},
			wantErr: `exclude: entry 2 "nmae=web": "nmae" is not a kind of rule; write name=PATTERN`},
		{name: "opt_in with rules", yaml: "opt_in: true\ninclude: [name=web]\n", optIn: true, include: []string{"name=web"},
			wantErr: "opt_in: true collects exactly the containers labelled berth.enable=true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.yaml != "" {
				path = writeFile(t, "berth.yaml", tc.yaml)
			}
			cfg, err := Load(path, tc.environ, nil)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !slices.Equal(cfg.Include, tc.include) || !slices.Equal(cfg.Exclude, tc.exclude) || cfg.OptIn != tc.optIn {
				t.Errorf("include %q, exclude %q, opt_in %v; want %q, %q, %v", cfg.Include, cfg.Exclude, cfg.OptIn, tc.include, tc.exclude, tc.optIn)
			}
			err = cfg.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Validate = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestLoadResourceAttributes: resource_attributes from a file (a key with
// dots is one key) and from the environment (the form of
// OTEL_RESOURCE_ATTRIBUTES); parse from a file and the environment.
func TestLoadResourceAttributes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		yaml    string
		environ []string
		want    map[string]string
		parse   Parse
	}{
		{name: "file", yaml: "resource_attributes:\n  deployment.environment: prod\n  team: payments\n  cost.center.id: 42\nparse:\n  format: json\n  body: map\n",
			want: map[string]string{"deployment.environment": "prod", "team": "payments", "cost.center.id": "42"}, parse: Parse{Format: "json", Body: "map"}},
		{name: "environment", environ: []string{"BERTH_RESOURCE_ATTRIBUTES=deployment.environment=prod, team=payments", "BERTH_PARSE__FORMAT=logfmt"},
			want: map[string]string{"deployment.environment": "prod", "team": "payments"}, parse: Parse{Format: "logfmt", Body: "message"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.yaml != "" {
				path = writeFile(t, "berth.yaml", tc.yaml)
			}
			cfg, err := Load(path, tc.environ, nil)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !maps.Equal(cfg.ResourceAttributes, tc.want) || cfg.Parse != tc.parse {
				t.Errorf("resource_attributes %v parse %+v; want %v %+v", cfg.ResourceAttributes, cfg.Parse, tc.want, tc.parse)
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
	d := Docker{ResourceAttributes: map[string]string{"b": "2", "a": "1"}}
	if got := d.StaticResource(); len(got) != 2 || got[0].Key != "a" || got[1].Key != "b" {
		t.Errorf("StaticResource = %v, want sorted by key", got)
	}
}

func TestLoadMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "absent.yaml")
	_, err := Load(p, nil, nil)
	if err == nil {
		t.Fatal("Load of a missing file succeeded")
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load: %v, want fs.ErrNotExist", err)
	}
	if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "config file") {
		t.Errorf("Load: %q does not say that the config file %s is missing", err, p)
	}
}

// TestLoadEnvironmentKeys: the env provider's key callback maps each BERTH_*
// variable to its key (lower case, "__" nests); a variable that names no key
// is an error naming it.
func TestLoadEnvironmentKeys(t *testing.T) {
	for _, tc := range []struct {
		name    string
		environ []string
		modify  func(c *Config) // the expected change to Default(); nil: none
		wantErr string          // part of Load's error; empty: no error
	}{
		{name: "top-level key", environ: []string{"BERTH_REATTACH_TAIL=7"}, modify: func(c *Config) { c.ReattachTail = 7 }},
		{name: "nested key", environ: []string{"BERTH_BACKOFF__MAX=1m"}, modify: func(c *Config) { c.Backoff.Max = time.Minute }},
		{name: "nested keys of one section", environ: []string{"BERTH_OTLP__ENDPOINT=http://collector:4318", "BERTH_OTLP__INSECURE=true", "BERTH_OTLP__TIMEOUT=3s"},
			modify: func(c *Config) {
				c.OTLP.Endpoint = "http://collector:4318"
				c.OTLP.Insecure = true
				c.OTLP.Timeout = 3 * time.Second
			}},
		{name: "map entry", environ: []string{"BERTH_OTLP__HEADERS__AUTHORIZATION=Bearer x"},
			modify: func(c *Config) { c.OTLP.Headers = map[string]string{"authorization": "Bearer x"} }},
		{name: "map as name=value pairs, names with hyphens", environ: []string{"BERTH_OTLP__HEADERS=X-Scope-OrgID=tenant-1, Authorization=Bearer%20xyz,"},
			modify: func(c *Config) {
				c.OTLP.Headers = map[string]string{"X-Scope-OrgID": "tenant-1", "Authorization": "Bearer xyz"}
			}},
		{name: "map pair without =", environ: []string{"BERTH_OTLP__HEADERS=X-Scope-OrgID"}, wantErr: "name=value"},
		{name: "map pair without name", environ: []string{"BERTH_OTLP__HEADERS==x"}, wantErr: "name=value"},
		{name: "squashed section key", environ: []string{"BERTH_STATE_DIR=/tmp/berth"}, modify: func(c *Config) { c.StateDir = "/tmp/berth" }},
		{name: "list", environ: []string{"BERTH_LABELS=a,b.*"}, modify: func(c *Config) { c.Labels = []string{"a", "b.*"} }},
		{name: "the last of two wins", environ: []string{"BERTH_LOG_LEVEL=warn", "BERTH_LOG_LEVEL=error"}, modify: func(c *Config) { c.LogLevel = "error" }},
		{name: "the prefix is case-sensitive", environ: []string{"berth_idle_timout=1s", "Berth_Idle_Timout=1s"}},
		{name: "no =: skipped", environ: []string{"BERTH_IDLE_TIMOUT"}},
		{name: "unknown key", environ: []string{"BERTH_IDLE_TIMOUT=1s", "BERTH_IDLE_TIMOUTS=1s"}, wantErr: "idle_timouts"},
		{name: "unknown nested key", environ: []string{"BERTH_BACKOFF__MAXX=1s"}, wantErr: "maxx"},
		{name: "section written flat", environ: []string{"BERTH_BACKOFF_INITIAL=1s"}, wantErr: "backoff_initial"},
		{name: "squashed section written nested", environ: []string{"BERTH_BURSTS__IDLE_TIMEOUT=1s"}, wantErr: "bursts"},
		{name: "bare prefix", environ: []string{"BERTH_=1"}, wantErr: "BERTH_"},
		{name: "bad value", environ: []string{"BERTH_IDLE_TIMEOUT=soon"}, wantErr: "idle_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load("", tc.environ, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Load(%q) = %v, want an error naming %q", tc.environ, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load(%q): %v", tc.environ, err)
			}
			want := Default()
			if tc.modify != nil {
				tc.modify(&want)
			}
			if !reflect.DeepEqual(cfg, want) {
				t.Errorf("Load(%q) =\n%+v\nwant\n%+v", tc.environ, cfg, want)
			}
		})
	}
}

// TestLoadBooleanWords: the auto/true/false keys take YAML booleans as the
// words they are (weakly typed decoding alone made false "0").
func TestLoadBooleanWords(t *testing.T) {
	path := writeFile(t, "berth.yaml", "stdout: false\ntelemetry_otlp: true\n")
	cfg, err := Load(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Stdout != "false" || cfg.TelemetryOTLP != "true" {
		t.Errorf("stdout: false, telemetry_otlp: true loaded as %q, %q", cfg.Stdout, cfg.TelemetryOTLP)
	}
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}
}

// TestLoadIgnoresTheProcessEnvironment: only the injected environ is read;
// the process's own BERTH_* variables (even an unknown key) are not.
func TestLoadIgnoresTheProcessEnvironment(t *testing.T) {
	t.Setenv("BERTH_IDLE_TIMEOUT", "1s")
	t.Setenv("BERTH_IDLE_TIMOUT", "1s")
	t.Setenv("DOCKER_HOST", "tcp://process:2375")
	cfg, err := Load("", []string{"BERTH_MAX_BURST=1m"}, nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := Default()
	want.MaxBurst = time.Minute
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Load =\n%+v\nwant\n%+v", cfg, want)
	}
	if got := cfg.ResolveHost(nil); got != DefaultDockerHost {
		t.Errorf("ResolveHost(nil) = %q, want %q (not the process's DOCKER_HOST)", got, DefaultDockerHost)
	}
}

// TestResolveHost: docker_host, else DOCKER_HOST from the environ, else the
// local socket.
func TestResolveHost(t *testing.T) {
	for _, tc := range []struct {
		name, dockerHost string
		environ          []string
		want             string
	}{
		{name: "nothing set", want: DefaultDockerHost},
		{name: "docker_host", dockerHost: "tcp://a:2375", environ: []string{"DOCKER_HOST=tcp://b:2375"}, want: "tcp://a:2375"},
		{name: "DOCKER_HOST", environ: []string{"PATH=/bin", "DOCKER_HOST=tcp://b:2375"}, want: "tcp://b:2375"},
		{name: "the first DOCKER_HOST", environ: []string{"DOCKER_HOST=tcp://b:2375", "DOCKER_HOST=tcp://c:2375"}, want: "tcp://b:2375"},
		{name: "empty DOCKER_HOST", environ: []string{"DOCKER_HOST="}, want: DefaultDockerHost},
		{name: "another variable", environ: []string{"DOCKER_HOSTS=tcp://b:2375", "MY_DOCKER_HOST=tcp://b:2375", "DOCKER_HOST"}, want: DefaultDockerHost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Docker{DockerHost: tc.dockerHost}
			if got := d.ResolveHost(tc.environ); got != tc.want {
				t.Errorf("ResolveHost(%q) with docker_host %q = %q, want %q", tc.environ, tc.dockerHost, got, tc.want)
			}
		})
	}
}

// TestValidateDefaultsMatchDefault: every "(default X)" in Validate's
// messages is the default of the key the message names, so the two cannot
// drift apart.
func TestValidateDefaultsMatchDefault(t *testing.T) {
	// Every key that Validate bounds is out of range.
	c := Config{}
	c.TraceSampling = 2
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate() accepted the zero Config")
	}
	k := koanf.New(".")
	if err := k.Load(structs.Provider(Default(), "koanf"), nil); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, line := range strings.Split(err.Error(), "\n") {
		key, msg, _ := strings.Cut(line, ": ")
		_, after, ok := strings.Cut(msg, "(default ")
		if !ok {
			continue
		}
		written, _, ok := strings.Cut(after, ")")
		if !ok {
			t.Errorf("%s: unclosed (default in %q", key, line)
			continue
		}
		if !k.Exists(key) {
			t.Errorf("%q names %q, which is no key", line, key)
			continue
		}
		want := k.Get(key)
		got, err := parseAs(written, want)
		if err != nil {
			t.Errorf("%s: the default %q in %q: %v", key, written, line, err)
			continue
		}
		if got != want {
			t.Errorf("%s: Validate says (default %s), Default() has %v", key, written, want)
		}
		checked++
	}
	if checked < 12 {
		t.Errorf("checked %d defaults, want at least 12; Validate:\n%v", checked, err)
	}
}

// parseAs parses s as a value of like's type.
func parseAs(s string, like any) (any, error) {
	switch like.(type) {
	case time.Duration:
		return time.ParseDuration(s)
	case int:
		return strconv.Atoi(s)
	case int64:
		return strconv.ParseInt(s, 10, 64)
	case float64:
		return strconv.ParseFloat(s, 64)
	case string:
		return s, nil
	}
	return nil, fmt.Errorf("type %T has no parser in this test", like)
}

func TestFormatValue(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{500 * time.Millisecond, "500ms"},
		{30 * time.Second, "30s"},
		{5 * time.Minute, "5m"},
		{90 * time.Second, "1m30s"},
		{2 * time.Hour, "2h"},
		{2*time.Hour + 30*time.Minute, "2h30m"},
		{time.Hour + time.Second, "1h0m1s"},
		{time.Duration(0), "0s"},
		{1 << 20, "1048576"},
		{int64(64 << 20), "67108864"},
		{2.0, "2"},
		{0.5, "0.5"},
		{"/var/lib/berth", "/var/lib/berth"},
	} {
		if got := formatValue(tc.v); got != tc.want {
			t.Errorf("formatValue(%#v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

// TestValidateNeverShowsSecrets: the messages about a bad endpoint or header
// name the key but never repeat a password or a header's value.
func TestValidateNeverShowsSecrets(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(c *Config)
	}{
		{"password in a URL", func(c *Config) { c.OTLP.Endpoint = "https://alice:s3cret@collector:4318" }},
		{"password in host:port", func(c *Config) { c.OTLP.Endpoint = "alice:s3cret@collector:4317" }},
		{"password in an URL of another scheme", func(c *Config) { c.OTLP.Endpoint = "ftp://alice:s3cret@collector" }},
		{"header value with a line break", func(c *Config) {
			c.OTLP.Headers = map[string]string{"authorization": "Bearer s3cret\r\nX: y"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.modify(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate() accepted it")
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("Validate() = %q shows the secret", err)
			}
		})
	}
}

// TestLoadNaNAndInf: YAML's .nan and .inf and the environment's NaN and Inf
// reach the float keys, and Validate refuses each, naming the key.
func TestLoadNaNAndInf(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		env        []string
		key        string
	}{
		{"yaml .nan multiplier", "backoff:\n  multiplier: .nan\n", nil, "backoff.multiplier"},
		{"yaml .inf multiplier", "backoff:\n  multiplier: .inf\n", nil, "backoff.multiplier"},
		{"yaml .nan trace_sampling", "trace_sampling: .nan\n", nil, "trace_sampling"},
		{"env NaN trace_sampling", "", []string{"BERTH_TRACE_SAMPLING=NaN"}, "trace_sampling"},
		{"env Inf multiplier", "", []string{"BERTH_BACKOFF__MULTIPLIER=Inf"}, "backoff.multiplier"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := ""
			if tc.yaml != "" {
				p = writeFile(t, "berth.yaml", tc.yaml)
			}
			c, err := Load(p, tc.env, nil)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			err = c.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), tc.key+": ") {
				t.Errorf("Validate() = %v, want an error naming %s", err, tc.key)
			}
		})
	}
}

// TestReadmeParseExamples: the README's parse and resource_attributes
// examples load and validate as written, and say what the README says.
func TestReadmeParseExamples(t *testing.T) {
	data, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	block := func(name string) string {
		_, rest, ok := strings.Cut(string(data), "<!-- example-"+name+":begin -->\n")
		b, _, ok2 := strings.Cut(rest, "<!-- example-"+name+":end -->")
		if !ok || !ok2 {
			t.Fatalf("README.md has no example-%s block", name)
		}
		_, body, _ := strings.Cut(strings.TrimSpace(b), "\n")
		return strings.TrimSuffix(body, "```")
	}
	for name, check := range map[string]func(Config) bool{
		"parse": func(c Config) bool { return c.Parse == Parse{Format: "json", Body: "message"} },
		"resource": func(c Config) bool {
			return c.ResourceAttributes["deployment.environment"] == "prod" && c.ResourceAttributes["team"] == "payments"
		},
	} {
		cfg, err := Load(writeFile(t, name+".yaml", block(name)), nil, nil)
		if err != nil {
			t.Fatalf("example-%s: %v", name, err)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("example-%s: %v", name, err)
		}
		if !check(cfg) {
			t.Errorf("example-%s loads as parse %+v, resource_attributes %v", name, cfg.Parse, cfg.ResourceAttributes)
		}
	}
}
