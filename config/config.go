// Package config loads berth's configuration in layers: defaults < YAML file
// < BERTH_* environment < command-line flags, decodes it strictly (an unknown
// key is an error) and validates it, naming every bad key.
package config

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/structs"
	"github.com/knadh/koanf/v2"

	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/multiline"
	"github.com/berthlog/berth/parse"
	"github.com/berthlog/berth/selection"
)

// Config is berth's whole configuration. Keys are snake_case; nested keys are
// written with a dot (backoff.initial) in flags' terms and as YAML maps in a
// file; in the environment, BERTH_BACKOFF__INITIAL.
//
// The sections are what each component receives (dockerapi takes Docker and
// Bursts, collectors Bursts, events Containers and Backoff, export Export and
// Backoff, checkpoint Checkpoints, telemetry Telemetry). Most sections are
// embedded with the tag ",squash,flatten": their keys stay at the top level
// (idle_timeout, not bursts.idle_timeout) both when decoding (mapstructure's
// squash) and when the defaults are loaded from the struct (the structs
// provider's flatten), and their fields are promoted (c.IdleTimeout).
type Config struct {
	Docker      `koanf:",squash,flatten"`
	Bursts      `koanf:",squash,flatten"`
	Containers  `koanf:",squash,flatten"`
	Export      `koanf:",squash,flatten"`
	Checkpoints `koanf:",squash,flatten"`
	Telemetry   `koanf:",squash,flatten"`
	// Backoff paces re-attaching after failures, reconnecting to Docker and
	// retrying exports.
	Backoff Backoff `koanf:"backoff"`
	// ShutdownTimeout bounds the wait for every goroutine on SIGTERM.
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`
}

// Docker is how berth reaches the daemon and describes its containers.
type Docker struct {
	// DockerHost is the daemon's address. Empty: DOCKER_HOST, else
	// DefaultDockerHost (see ResolveHost).
	DockerHost string `koanf:"docker_host"`
	// TLS is how berth speaks TLS to a tcp:// daemon. Not set: DOCKER_TLS_VERIFY,
	// DOCKER_TLS and DOCKER_CERT_PATH decide, as the docker CLI reads them.
	TLS DockerTLS `koanf:"docker_tls"`
	// ControlTimeout bounds each short Docker call (ping, list, inspect).
	ControlTimeout time.Duration `koanf:"control_timeout"`
	// EventsIdleTimeout ends a silent events stream, which berth then
	// re-opens from the last event it saw.
	EventsIdleTimeout time.Duration `koanf:"events_idle_timeout"`
	// Labels selects the container labels exported as the resource
	// attributes container.label.<key>: each entry is a label key, or a
	// prefix ending in * (com.example.*) that selects every label starting
	// with it. Empty: no label. In the environment, a comma-separated list:
	// BERTH_LABELS=com.example.*,team.
	Labels []string `koanf:"labels"`
	// ResourceAttributes are resource attributes every record carries,
	// e.g. deployment.environment: prod. A key may not be one berth sets
	// from the container (container.*, service.name, service.namespace,
	// host.name). In the environment, the form of OTEL_RESOURCE_ATTRIBUTES:
	// BERTH_RESOURCE_ATTRIBUTES=deployment.environment=prod,team=payments.
	ResourceAttributes map[string]string `koanf:"resource_attributes"`
}

// StaticResource returns the resource attributes, sorted by key.
func (d Docker) StaticResource() []logs.Label {
	if len(d.ResourceAttributes) == 0 {
		return nil
	}
	out := make([]logs.Label, 0, len(d.ResourceAttributes))
	for _, k := range slices.Sorted(maps.Keys(d.ResourceAttributes)) {
		out = append(out, logs.Label{Key: k, Value: d.ResourceAttributes[k]})
	}
	return out
}

// DockerTLS names the files of TLS to a tcp:// daemon. Setting any of its
// keys turns TLS on and makes berth ignore DOCKER_TLS_VERIFY, DOCKER_TLS and
// DOCKER_CERT_PATH, as docker_host makes it ignore DOCKER_HOST.
type DockerTLS struct {
	// CAFile is the PEM file of the CA that signed the daemon's
	// certificate. Empty: the system's CA certificates.
	CAFile string `koanf:"ca_file"`
	// CertFile and KeyFile are berth's client certificate and its key
	// (PEM), which a daemon run with --tlsverify asks for. Both or neither.
	CertFile string `koanf:"cert_file"`
	KeyFile  string `koanf:"key_file"`
	// InsecureSkipVerify, true, accepts any certificate the daemon shows:
	// the connection is encrypted but not authenticated.
	InsecureSkipVerify bool `koanf:"insecure_skip_verify"`
}

// IsSet says whether any key of docker_tls is set.
func (t DockerTLS) IsSet() bool { return t != DockerTLS{} }

// Bursts bounds each log burst: one logs request, read until it ends.
type Bursts struct {
	// IdleTimeout ends a log burst that has received no byte for this long.
	// A quiet container's burst ending so is normal: berth re-attaches.
	IdleTimeout time.Duration `koanf:"idle_timeout"`
	// QuietIdleTimeout is how long the idle deadline grows to for a
	// container that stays quiet: each follow burst that ends idle without
	// a line doubles the next one's, from IdleTimeout up to this (capped by
	// MaxBurst); a burst that reads a line starts again at IdleTimeout. A
	// quiet container's stream is then re-opened every few minutes, not
	// every IdleTimeout, while a stream that hangs still ends.
	QuietIdleTimeout time.Duration `koanf:"quiet_idle_timeout"`
	// MaxConcurrentAttaches bounds the logs requests being opened at once
	// (a follow request until it has read what was waiting, IdleTimeout at
	// most) and, apart from
	// them, the stopped containers' logs being read to their end at once,
	// so that attaching hundreds of containers (berth's start, a daemon
	// restart) does not flood the daemon. The first request for a container
	// that has just started is never held back.
	MaxConcurrentAttaches int `koanf:"max_concurrent_attaches"`
	// MaxBurst ends every log burst after this long, whatever it reads.
	MaxBurst time.Duration `koanf:"max_burst"`
	// MaxLineBytes is the longest line berth sends; longer lines are cut and
	// marked log.truncated.
	MaxLineBytes int `koanf:"max_line_bytes"`
	// ReattachTail is the number of recent messages a re-attach asks for; it
	// is widened only when the answer does not reach the checkpoint.
	ReattachTail int `koanf:"reattach_tail"`
	// PartialFlushTimeout is how long a line that has not ended (chunks of
	// a line without its newline: a progress bar) waits without a byte
	// before berth sends what it has as a record marked log.partial.
	PartialFlushTimeout time.Duration `koanf:"partial_flush_timeout"`
	// Multiline joins the lines of a stack trace into one record; the
	// labels berth.multiline.* override it per container.
	Multiline Multiline `koanf:"multiline"`
	// RateLimit bounds each container's records per second (see
	// ratelimit.go); the label berth.rate_limit overrides its lines.
	RateLimit RateLimit `koanf:"rate_limit"`
	// Parse is how structured lines (JSON, logfmt) become records' fields;
	// the label berth.parse overrides its format per container.
	Parse Parse `koanf:"parse"`
}

// Parse is how every container's lines are parsed (see package parse),
// unless a container's berth.parse label says otherwise.
type Parse struct {
	// Format is json, logfmt or none. A line not in the format is sent as
	// it is, and counted.
	Format string `koanf:"format"`
	// Body is what becomes a parsed line's body: message (its msg or
	// message field; the other fields are attributes) or map (the whole
	// object).
	Body string `koanf:"body"`
}

// Formats returns the parse format and body configured; p is validated.
func (p Parse) Formats() (parse.Format, parse.Body) {
	f, _ := parse.FormatOf(p.Format)
	b, _ := parse.BodyOf(p.Body)
	return f, b
}

// Multiline is how the lines of every container's streams are joined into
// records (see package multiline), unless a container's berth.multiline.*
// labels say otherwise. At most one of Preset, Start and Continue is set;
// none: lines are not joined.
type Multiline struct {
	// Preset names ready-made rules: java, python or go.
	Preset string `koanf:"preset"`
	// Start is a regular expression a record's first line matches; the
	// lines that do not match belong to the record before them.
	Start string `koanf:"start"`
	// Continue is a regular expression the lines after a record's first
	// match; a line that does not match starts a record.
	Continue string `koanf:"continue"`
	// Timeout closes a record after this long without a line of its
	// stream (by the lines' timestamps, and by the clock while berth waits).
	Timeout time.Duration `koanf:"timeout"`
	// MaxLines closes a record that has this many lines; it is marked
	// log.truncated and the following lines start the next record.
	MaxLines int `koanf:"max_lines"`
}

// Spec is the rule m configures.
func (m Multiline) Spec() multiline.Spec {
	return multiline.Spec{Preset: m.Preset, Start: m.Start, Continue: m.Continue}
}

// Containers is what the state machine needs beyond the backoff.
type Containers struct {
	// InitialPosition is where berth starts on a container that exists when
	// it starts and has no checkpoint: InitialPositionBeginning or
	// InitialPositionEnd.
	InitialPosition string `koanf:"initial_position"`
	// Include, if not empty, collects only the containers one of its rules
	// matches: name=PATTERN, image=PATTERN or label=KEY[=VALUE], with globs
	// (see package selection). In the environment, a comma-separated list:
	// BERTH_INCLUDE=name=web-*,label=team=payments.
	Include []string `koanf:"include"`
	// Exclude never collects the containers one of its rules matches; it
	// wins over Include. Same syntax.
	Exclude []string `koanf:"exclude"`
	// OptIn collects only the containers labelled berth.enable=true; it
	// cannot be combined with Include or Exclude. Whatever the rules, a
	// container labelled berth.enable=false is never collected and one
	// labelled berth.enable=true always is.
	OptIn bool `koanf:"opt_in"`
}

// The values of initial_position.
const (
	// InitialPositionBeginning reads such a container's whole log.
	InitialPositionBeginning = "beginning"
	// InitialPositionEnd reads only what it writes after berth started.
	InitialPositionEnd = "end"
)

// Export is where records go and how much of them may wait for the backend.
type Export struct {
	// OTLP is where records are exported. Empty fields defer to the
	// standard OTEL_EXPORTER_OTLP_* environment variables.
	OTLP OTLP `koanf:"otlp"`
	// Stdout says whether records are also written to stdout as JSON lines:
	// auto (only when no OTLP endpoint is configured), true or false.
	Stdout string `koanf:"stdout"`
	// MaxInFlightBytes bounds the records read but not yet acknowledged by
	// the backend; when it is reached, reading pauses.
	MaxInFlightBytes int64 `koanf:"max_in_flight_bytes"`
}

// Checkpoints is where and how often acknowledged positions are saved.
type Checkpoints struct {
	// StateDir holds berth's checkpoints.
	StateDir string `koanf:"state_dir"`
	// CheckpointInterval is how often acknowledged positions are saved.
	CheckpointInterval time.Duration `koanf:"checkpoint_interval"`
}

// Telemetry is berth's own: its log, its HTTP endpoints, its traces and
// metrics.
type Telemetry struct {
	// HTTPAddr is where berth serves /healthz, /readyz, /status and
	// /metrics. Empty disables the listener.
	HTTPAddr string `koanf:"http_addr"`
	// LogLevel is the level of berth's own logs on stderr.
	LogLevel string `koanf:"log_level"`
	// TraceSampling is the fraction of berth's own traces kept (0 to 1).
	TraceSampling float64 `koanf:"trace_sampling"`
	// MetricsInterval is how often berth's own metrics are pushed over OTLP.
	MetricsInterval time.Duration `koanf:"metrics_interval"`
	// TelemetryOTLP says whether berth's own metrics and traces are pushed
	// over OTLP: auto (each signal that has somewhere to go: its own
	// OTEL_EXPORTER_OTLP_METRICS_/TRACES_ENDPOINT, else otlp.endpoint or
	// OTEL_EXPORTER_OTLP_ENDPOINT), true (the same, but a signal with
	// nowhere to go is an error) or false (never; /metrics stays).
	TelemetryOTLP string `koanf:"telemetry_otlp"`
}

// OTLP configures the OTLP log exporter.
type OTLP struct {
	Endpoint    string            `koanf:"endpoint"`    // http://host:4318, https://host:4317 or host:port
	Protocol    string            `koanf:"protocol"`    // grpc or http/protobuf
	Insecure    bool              `koanf:"insecure"`    // plaintext to a host:port endpoint
	Headers     map[string]string `koanf:"headers"`     // e.g. authorization
	Compression string            `koanf:"compression"` // gzip (default) or none
	Timeout     time.Duration     `koanf:"timeout"`     // per export request
	// MaxRequestBytes bounds the encoded size of each export request. The
	// OpenTelemetry Collector refuses gRPC messages over 4 MiB by default:
	// keep it below the backend's limit.
	MaxRequestBytes int64 `koanf:"max_request_bytes"`
}

// RequestRoom is what otlp.max_request_bytes must hold besides the longest
// line (max_line_bytes): the record's other fields and its container's
// resource, so that no line short enough to be read is too long to be sent.
const RequestRoom = 64 << 10

// Backoff is an exponential, jittered, capped retry schedule.
type Backoff struct {
	Initial    time.Duration `koanf:"initial"`
	Max        time.Duration `koanf:"max"`
	Multiplier float64       `koanf:"multiplier"`
}

// NewExponentialBackOff returns the schedule b describes, jittered by ±50%
// and without an end: berth retries for as long as it runs (Docker's log is
// the buffer meanwhile). Every retry loop of berth builds its backoff here.
func (b Backoff) NewExponentialBackOff() *backoff.ExponentialBackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = b.Initial
	bo.MaxInterval = b.Max
	bo.Multiplier = b.Multiplier
	bo.RandomizationFactor = 0.5
	bo.MaxElapsedTime = 0
	bo.Reset()
	return bo
}

// Default returns the configuration berth runs with when nothing is set.
func Default() Config {
	return Config{
		Docker: Docker{
			ControlTimeout:    10 * time.Second,
			EventsIdleTimeout: 5 * time.Minute,
		},
		Bursts: Bursts{
			IdleTimeout:           30 * time.Second,
			QuietIdleTimeout:      5 * time.Minute,
			MaxConcurrentAttaches: 8,
			MaxBurst:              5 * time.Minute,
			MaxLineBytes:          1 << 20,
			ReattachTail:          100,
			PartialFlushTimeout:   5 * time.Second,
			Multiline:             Multiline{Timeout: time.Second, MaxLines: 500},
			RateLimit:             RateLimit{Burst: time.Second, Mode: RateModeThrottle},
			Parse:                 Parse{Format: parse.NameNone, Body: parse.NameBodyMessage},
		},
		Containers: Containers{InitialPosition: InitialPositionEnd},
		Export: Export{
			OTLP:             OTLP{MaxRequestBytes: 3 << 20},
			Stdout:           "auto",
			MaxInFlightBytes: 64 << 20,
		},
		Checkpoints: Checkpoints{
			StateDir:           "/var/lib/berth",
			CheckpointInterval: 5 * time.Second,
		},
		Telemetry: Telemetry{
			HTTPAddr:        "127.0.0.1:9477",
			LogLevel:        "info",
			TraceSampling:   1,
			MetricsInterval: 30 * time.Second,
			TelemetryOTLP:   "auto",
		},
		Backoff:         Backoff{Initial: 500 * time.Millisecond, Max: 30 * time.Second, Multiplier: 2},
		ShutdownTimeout: 10 * time.Second,
	}
}

// envPrefix starts every environment variable berth reads as configuration.
const envPrefix = "BERTH_"

// DefaultDockerHost is the local daemon's socket, the address berth dials
// when neither docker_host nor DOCKER_HOST is set.
const DefaultDockerHost = "unix:///var/run/docker.sock"

// Load builds the configuration: defaults, then the YAML file at path (if
// path is not empty), then BERTH_* variables from environ (never the
// process's own environment), then flags (keys already in config form, e.g.
// "docker_host"). It does not validate, and leaves an empty docker_host empty
// (see Docker.ResolveHost).
func Load(path string, environ []string, flags map[string]any) (Config, error) {
	k := koanf.New(".")
	if err := k.Load(structs.Provider(Default(), "koanf"), nil); err != nil {
		return Config{}, fmt.Errorf("defaults: %w", err)
	}
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return Config{}, fmt.Errorf("config file: %w", err)
		}
		if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", path, err)
		}
	}
	if err := k.Load(envProvider(environ), nil); err != nil {
		return Config{}, fmt.Errorf("environment: %w", err)
	}
	if err := k.Load(confmap.Provider(flags, "."), nil); err != nil {
		return Config{}, fmt.Errorf("flags: %w", err)
	}
	var cfg Config
	dc := &mapstructure.DecoderConfig{
		DecodeHook:       mapstructure.ComposeDecodeHookFunc(mapstructure.StringToTimeDurationHookFunc(), stringToList, stringToMap, flattenMap, boolToString),
		WeaklyTypedInput: true,
		ErrorUnused:      true,
		Result:           &cfg,
		TagName:          "koanf",
	}
	if err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{Tag: "koanf", DecoderConfig: dc}); err != nil {
		return Config{}, fmt.Errorf("%w (the keys are listed in the README's configuration reference)", err)
	}
	return cfg, nil
}

// envProvider reads the BERTH_* variables of environ, each under its key
// (see envKey); a variable without "=" is skipped.
func envProvider(environ []string) *env.Env {
	return env.Provider(".", env.Opt{
		Prefix:        envPrefix,
		TransformFunc: func(name, value string) (string, any) { return envKey(name), value },
		EnvironFunc:   func() []string { return environ },
	})
}

// envKey maps BERTH_BACKOFF__INITIAL to backoff.initial: the prefix goes,
// the rest is lower-cased and "__" nests. A bare BERTH_ keeps its name, so
// that it is reported as an unknown key rather than skipped.
func envKey(name string) string {
	k := strings.ToLower(strings.TrimPrefix(name, envPrefix))
	if k == "" {
		return name
	}
	return strings.ReplaceAll(k, "__", ".")
}

// ResolveHost returns the daemon address berth dials: docker_host if set,
// else DOCKER_HOST from environ (never the process's own environment), else
// DefaultDockerHost.
func (d Docker) ResolveHost(environ []string) string {
	if d.DockerHost != "" {
		return d.DockerHost
	}
	if host := lookupEnv(environ, "DOCKER_HOST"); host != "" {
		return host
	}
	return DefaultDockerHost
}

// Getenv returns a lookup of the variables in environ, in the form of
// os.Getenv: what berth reads of its environment (OTEL_EXPORTER_OTLP_*,
// DOCKER_TLS_VERIFY, ...) it reads through it, so that main and tests pass
// the environment in.
func Getenv(environ []string) func(string) string {
	return func(name string) string { return lookupEnv(environ, name) }
}

// lookupEnv returns the value of the first variable called name in environ,
// or "" if there is none.
func lookupEnv(environ []string, name string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// stringToList decodes a string into a list key by splitting it at commas
// and trimming the spaces around each entry, so that BERTH_LABELS=a, b sets
// the list [a b]. A blank string is an empty list.
func stringToList(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.String || to.Kind() != reflect.Slice || to.Elem().Kind() != reflect.String {
		return data, nil
	}
	s := reflect.ValueOf(data).String()
	if strings.TrimSpace(s) == "" {
		return []string{}, nil
	}
	list := strings.Split(s, ",")
	for i := range list {
		list[i] = strings.TrimSpace(list[i])
	}
	return list, nil
}

// flattenMap decodes a nested map into a map of strings
// (resource_attributes) by joining the keys with dots: a file's
// deployment.environment: prod reaches the decoder nested, since the
// configuration's keys are split at dots, and is its one key again.
func flattenMap(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.Map || to.Kind() != reflect.Map || to.Elem().Kind() != reflect.String {
		return data, nil
	}
	m, ok := data.(map[string]any)
	if !ok {
		return data, nil
	}
	out := make(map[string]any, len(m))
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
				continue
			}
			out[prefix+k] = v
		}
	}
	walk("", m)
	return out, nil
}

// boolToString decodes a YAML boolean into a string key as written, so that
// stdout: false and telemetry_otlp: false mean "false" (weakly typed
// decoding alone would make them "0").
func boolToString(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.Bool || to.Kind() != reflect.String {
		return data, nil
	}
	return fmt.Sprint(data), nil
}

// stringToMap decodes a string into a map key (otlp.headers) in the format of
// OTEL_EXPORTER_OTLP_HEADERS: comma-separated name=value pairs, spaces
// around each trimmed, names and values percent-decoded. So
// BERTH_OTLP__HEADERS=X-Scope-OrgID=tenant-1,Authorization=Bearer%20xyz sets
// names with hyphens, which BERTH_OTLP__HEADERS__<NAME> cannot express. A
// blank string is an empty map.
func stringToMap(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.String || to.Kind() != reflect.Map || to.Key().Kind() != reflect.String || to.Elem().Kind() != reflect.String {
		return data, nil
	}
	m := map[string]string{}
	for _, entry := range strings.Split(reflect.ValueOf(data).String(), ",") {
		if strings.TrimSpace(entry) == "" {
			continue
		}
		rawName, rawValue, ok := strings.Cut(entry, "=")
		name, errName := url.PathUnescape(strings.TrimSpace(rawName))
		value, errValue := url.PathUnescape(strings.TrimSpace(rawValue))
		if !ok || name == "" || errName != nil || errValue != nil {
			return nil, fmt.Errorf("%q is not a name=value pair (percent-encoded); write name=value,name2=value2, e.g. X-Scope-OrgID=tenant-1,Authorization=Bearer%%20xyz", strings.TrimSpace(entry))
		}
		m[name] = value
	}
	return m, nil
}

// Validate returns every problem of the configuration, each naming its key and
// what is allowed.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	// badDefault is bad, the message ending with the key's default.
	badDefault := func(key, format string, args ...any) {
		bad(key, format+" (default %s)", append(args, defaultOf(key))...)
	}
	if c.DockerHost != "" {
		scheme, rest, ok := strings.Cut(c.DockerHost, "://")
		switch {
		case !ok || rest == "":
			bad("docker_host", "%q is not an address; use %s or tcp://host:2376", c.DockerHost, DefaultDockerHost)
		case scheme != "unix" && scheme != "tcp" && scheme != "http" && scheme != "https":
			bad("docker_host", "scheme %q is not supported; use unix:// or tcp://", scheme)
		case scheme == "unix" && c.TLS.IsSet():
			bad("docker_tls", "is set, but docker_host %s is a unix socket, which the daemon never serves over TLS; use tcp://host:2376", c.DockerHost)
		}
	}
	validateDockerTLS(c.TLS, bad)
	if c.StateDir == "" {
		bad("state_dir", "must not be empty")
	}
	if c.IdleTimeout < 100*time.Millisecond {
		badDefault("idle_timeout", "%v is too short; use at least 100ms", c.IdleTimeout)
	}
	if c.QuietIdleTimeout < c.IdleTimeout {
		bad("quiet_idle_timeout", "%v must be at least idle_timeout (%v)", c.QuietIdleTimeout, c.IdleTimeout)
	}
	if c.MaxConcurrentAttaches < 1 || c.MaxConcurrentAttaches > 1024 {
		badDefault("max_concurrent_attaches", "%d is out of range; use 1 to 1024", c.MaxConcurrentAttaches)
	}
	if c.MaxBurst < c.IdleTimeout {
		bad("max_burst", "%v must be at least idle_timeout (%v)", c.MaxBurst, c.IdleTimeout)
	}
	if c.MaxLineBytes < 1024 || c.MaxLineBytes > 64<<20 {
		badDefault("max_line_bytes", "%d is out of range; use 1024 to 67108864", c.MaxLineBytes)
	}
	if c.InitialPosition != InitialPositionBeginning && c.InitialPosition != InitialPositionEnd {
		bad("initial_position", "%q is not allowed; use beginning or end", c.InitialPosition)
	}
	if c.ReattachTail < 1 {
		badDefault("reattach_tail", "%d must be at least 1", c.ReattachTail)
	}
	if c.PartialFlushTimeout < 100*time.Millisecond || c.PartialFlushTimeout > time.Hour {
		badDefault("partial_flush_timeout", "%v is out of range; use 100ms to 1h", c.PartialFlushTimeout)
	}
	if _, err := multiline.New(c.Multiline.Spec(), c.Multiline.Timeout, c.Multiline.MaxLines); err != nil {
		key := "multiline.preset"
		switch {
		case c.Multiline.Preset != "":
		case c.Multiline.Start != "":
			key = "multiline.start"
		default:
			key = "multiline.continue"
		}
		bad(key, "%v", err)
	}
	if c.Multiline.Timeout < 10*time.Millisecond || c.Multiline.Timeout > time.Hour {
		badDefault("multiline.timeout", "%v is out of range; use 10ms to 1h", c.Multiline.Timeout)
	}
	if c.Multiline.MaxLines < 2 || c.Multiline.MaxLines > 100000 {
		badDefault("multiline.max_lines", "%d is out of range; use 2 to 100000", c.Multiline.MaxLines)
	}
	validateRateLimit(c.RateLimit, bad, badDefault)
	if c.EventsIdleTimeout < time.Second {
		badDefault("events_idle_timeout", "%v is too short; use at least 1s", c.EventsIdleTimeout)
	}
	if c.ControlTimeout < 100*time.Millisecond {
		badDefault("control_timeout", "%v is too short; use at least 100ms", c.ControlTimeout)
	}
	if c.ShutdownTimeout <= 0 {
		badDefault("shutdown_timeout", "%v must be positive", c.ShutdownTimeout)
	}
	if c.Backoff.Initial <= 0 {
		badDefault("backoff.initial", "%v must be positive", c.Backoff.Initial)
	}
	if c.Backoff.Max < c.Backoff.Initial {
		bad("backoff.max", "%v must be at least backoff.initial (%v)", c.Backoff.Max, c.Backoff.Initial)
	}
	switch m := c.Backoff.Multiplier; {
	case math.IsNaN(m) || math.IsInf(m, 0):
		badDefault("backoff.multiplier", "%v is not a number berth can use; use a finite number of at least 1", m)
	case m < 1:
		badDefault("backoff.multiplier", "%v must be at least 1", m)
	}
	switch c.OTLP.Protocol {
	case "", "grpc", "http/protobuf":
	default:
		bad("otlp.protocol", "%q is not allowed; use grpc or http/protobuf", c.OTLP.Protocol)
	}
	switch c.OTLP.Compression {
	case "", "gzip", "none":
	default:
		bad("otlp.compression", "%q is not allowed; use gzip or none", c.OTLP.Compression)
	}
	validateEndpoint(c.OTLP.Endpoint, bad)
	validateHeaders(c.OTLP.Headers, bad)
	if c.OTLP.Timeout < 0 {
		bad("otlp.timeout", "%v must not be negative", c.OTLP.Timeout)
	}
	// A request holds at least one line of max_line_bytes; a max_line_bytes
	// out of range is reported under its own key.
	line := c.MaxLineBytes
	if line < 1024 || line > 64<<20 {
		line = 1024
	}
	if minReq := int64(line) + RequestRoom; c.OTLP.MaxRequestBytes < minReq {
		badDefault("otlp.max_request_bytes", "%d is too small for a line of max_line_bytes (%d) and its attributes; use at least %d, or lower max_line_bytes",
			c.OTLP.MaxRequestBytes, c.MaxLineBytes, minReq)
	}
	switch c.Stdout {
	case "auto", "true", "false":
	default:
		bad("stdout", "%q is not allowed; use auto, true or false", c.Stdout)
	}
	if c.MaxInFlightBytes < 1<<20 {
		badDefault("max_in_flight_bytes", "%d is too small; use at least 1048576", c.MaxInFlightBytes)
	}
	if c.CheckpointInterval < 100*time.Millisecond {
		badDefault("checkpoint_interval", "%v is too short; use at least 100ms", c.CheckpointInterval)
	}
	if math.IsNaN(c.TraceSampling) || c.TraceSampling < 0 || c.TraceSampling > 1 {
		badDefault("trace_sampling", "%v is out of range; use 0 to 1", c.TraceSampling)
	}
	switch c.TelemetryOTLP {
	case "auto", "true", "false":
	default:
		bad("telemetry_otlp", "%q is not allowed; use auto, true or false", c.TelemetryOTLP)
	}
	if c.MetricsInterval < time.Second {
		badDefault("metrics_interval", "%v is too short; use at least 1s", c.MetricsInterval)
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level", "%q is not allowed; use debug, info, warn or error", c.LogLevel)
	}
	for i, l := range c.Labels {
		switch star := strings.IndexByte(l, '*'); {
		case strings.TrimSpace(l) == "":
			bad("labels", "entry %d is empty; remove it, or write a label key (com.example.team) or a prefix ending in * (com.example.*)", i+1)
		case strings.TrimSpace(l) != l:
			bad("labels", "entry %q has spaces around it; remove them", l)
		case star >= 0 && star != len(l)-1:
			bad("labels", "entry %q has a * that is not its last character; a * may only end an entry, to select every label starting with what comes before it (com.example.*)", l)
		}
	}
	if _, err := parse.FormatOf(c.Parse.Format); err != nil || c.Parse.Format == "" {
		badDefault("parse.format", "%q is not allowed; use %s", c.Parse.Format, strings.Join(parse.Names, ", "))
	}
	if _, err := parse.BodyOf(c.Parse.Body); err != nil {
		badDefault("parse.body", "%v", err)
	}
	validateResource(c.ResourceAttributes, bad)
	if _, err := selection.New(c.Include, c.Exclude, c.OptIn); err != nil {
		errs = append(errs, err) // its messages name the key and the entry
	}
	return errors.Join(errs...)
}

// validateResource reports a resource_attributes entry berth cannot send:
// an empty key or one with white space, a key berth sets from the container
// itself, a value with a line break.
func validateResource(attrs map[string]string, bad func(key, format string, args ...any)) {
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		switch {
		case strings.TrimSpace(k) == "":
			bad("resource_attributes", "an attribute has an empty key; write key: value, e.g. deployment.environment: prod")
		case strings.ContainsAny(k, " \t\r\n="):
			bad("resource_attributes", "key %q contains white space or =; a key is one word, e.g. deployment.environment", k)
		case strings.HasPrefix(k, "container.") || k == "service.name" || k == "service.namespace" || k == "host.name":
			bad("resource_attributes."+k, "berth sets %s from each container (or host); choose another key", k)
		case strings.ContainsAny(attrs[k], "\r\n"):
			bad("resource_attributes."+k, "the value contains a line break; remove it")
		}
	}
}

// validateEndpoint reports an otlp.endpoint berth cannot use: a URL whose
// scheme is not http or https, or one that carries credentials (user:password@).
// The exporters send neither a URL's user nor its password (they dial its
// host and port), so credentials there would silently not authenticate; and
// the endpoint is logged at start. Credentials belong in otlp.headers, which
// berth never writes anywhere. No message repeats the endpoint, since it may
// hold a password.
// validateDockerTLS checks that docker_tls names a client certificate with
// its key, and does not both name a CA and skip verification.
func validateDockerTLS(t DockerTLS, bad func(key, format string, args ...any)) {
	if (t.CertFile == "") != (t.KeyFile == "") {
		bad("docker_tls", "cert_file and key_file go together: set both (berth's client certificate and its key) or neither")
	}
	if t.InsecureSkipVerify && t.CAFile != "" {
		bad("docker_tls.insecure_skip_verify", "is true while docker_tls.ca_file is set: the CA would not be used; drop one of them")
	}
}

func validateEndpoint(endpoint string, bad func(key, format string, args ...any)) {
	if endpoint == "" {
		return
	}
	const key = "otlp.endpoint"
	const useHeaders = "credentials (user:password@) are not allowed in the endpoint: the exporters do not send them, and the endpoint is logged; " +
		"remove them and set a header instead, e.g. otlp.headers.authorization: Basic <base64 of user:password> (or Bearer <token>)"
	if strings.ContainsAny(endpoint, " \t\r\n") {
		bad(key, "contains white space or a line break; write http://host:4318, https://host:4317 or host:port")
		return
	}
	scheme, rest, isURL := strings.Cut(endpoint, "://")
	if !isURL {
		// host:port; an @ can only be credentials.
		if strings.Contains(endpoint, "@") {
			bad(key, useHeaders)
			return
		}
		if strings.Contains(endpoint, "/") {
			bad(key, "a host:port endpoint has no path; write host:port, or a URL http://host:4318/path")
		}
		return
	}
	switch strings.ToLower(scheme) {
	case "http", "https":
	default:
		bad(key, "scheme %q is not supported; use http:// or https:// (or host:port)", scheme)
		return
	}
	if authority, _, _ := strings.Cut(rest, "/"); strings.Contains(authority, "@") {
		bad(key, useHeaders)
		return
	}
	u, err := url.Parse(endpoint)
	switch {
	case err != nil:
		// url.Error quotes the URL; without credentials it is safe to show.
		bad(key, "is not a URL: %v", err)
	case u.Host == "":
		bad(key, "has no host; write http://host:4318 or https://host:4317")
	}
}

// validateHeaders reports an otlp.headers entry that would break or forge an
// HTTP header or gRPC metadata: an empty name, or a line break (CR or LF) in
// a name or value. A value is never repeated in a message: it is usually a
// secret.
func validateHeaders(headers map[string]string, bad func(key, format string, args ...any)) {
	names := make([]string, 0, len(headers))
	for name := range headers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		switch {
		case strings.TrimSpace(name) == "":
			bad("otlp.headers", "a header has an empty name; give each header a name, e.g. authorization")
		case strings.ContainsAny(name, "\r\n:"):
			bad("otlp.headers", "header name %q contains a line break or a colon; a name is one token, e.g. authorization", name)
		case strings.ContainsAny(headers[name], "\r\n"):
			bad("otlp.headers."+name, "the value contains a line break (CR or LF), which would end the header and start another; remove it (the value is not shown: it may be a secret)")
		}
	}
}

// defaultOf is the default of key (idle_timeout, backoff.initial) as
// Validate's messages write it.
func defaultOf(key string) string {
	k := koanf.New(".")
	if err := k.Load(structs.Provider(Default(), "koanf"), nil); err != nil {
		return fmt.Sprintf("unknown: %v", err)
	}
	return formatValue(k.Get(key))
}

// formatValue writes v as a user writes it in a file: durations without
// their zero units (5m, not 5m0s).
func formatValue(v any) string {
	d, ok := v.(time.Duration)
	if !ok {
		return fmt.Sprint(v)
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
