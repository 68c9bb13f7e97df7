// Command berth collects the logs of every Docker container on a host and
// exports them. With no exporter configured it writes one JSON object per log
// line to stdout; its own logs go to stderr.
//
// Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/berthlog/berth/checkpoint"
	"github.com/berthlog/berth/collectors"
	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/dockerapi"
	"github.com/berthlog/berth/events"
	"github.com/berthlog/berth/export"
	"github.com/berthlog/berth/internal/otlpconf"
	"github.com/berthlog/berth/internal/selfcontainer"
	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
)

// Set at build time with -ldflags "-X main.version=... -X main.commit=... -X main.date=...".
var (
	version = "dev"
	commit  = "none"
	date    = "unknown"
)

const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

const usage = `berth collects the logs of every Docker container on this host.

Usage:
  berth [flags]                 run the collector until SIGINT or SIGTERM
  berth check-config [flags]    validate the configuration; exit 2 naming the bad key
  berth status [flags]          show a running berth's containers, streams, lag and health
  berth version                 print the version

Flags:
`

func run(args, environ []string, stdout, stderr io.Writer) int {
	cmd := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "version":
		fmt.Fprintf(stdout, "berth %s (commit %s, built %s, %s)\n", version, commit, date, runtime.Version())
		return exitOK
	case "", "check-config":
	case "status":
		return statusCommand(args, environ, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		newFlags(stdout).fs.PrintDefaults()
		return exitOK
	default:
		fmt.Fprintf(stderr, "berth: unknown command %q; run 'berth help'\n", cmd)
		return exitUsage
	}
	f := newFlags(stderr)
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if f.fs.NArg() > 0 {
		fmt.Fprintf(stderr, "berth: unexpected argument %q; run 'berth help'\n", f.fs.Arg(0))
		return exitUsage
	}
	cfg, err := loadConfig(f, environ)
	if err != nil {
		fmt.Fprintf(stderr, "berth: bad configuration: %v\n", err)
		return exitUsage
	}
	if cmd == "check-config" {
		// The Docker client reads the TLS files docker_tls or the
		// DOCKER_TLS* variables name; it does not contact the daemon.
		docker, err := dockerapi.New(cfg.Docker, cfg.Bursts, config.Getenv(environ))
		if err != nil {
			fmt.Fprintf(stderr, "berth: bad configuration: %v\n", err)
			return exitUsage
		}
		_ = docker.Close()
		fmt.Fprintln(stdout, "configuration OK")
		return exitOK
	}
	return collect(cfg, environ, stdout, stderr)
}

type cliFlags struct {
	fs                                         *flag.FlagSet
	configPath, dockerHost, stateDir, httpAddr string
}

func newFlags(out io.Writer) *cliFlags {
	f := &cliFlags{fs: flag.NewFlagSet("berth", flag.ContinueOnError)}
	f.fs.SetOutput(out)
	f.fs.Usage = func() { fmt.Fprint(out, usage); f.fs.PrintDefaults() }
	f.fs.StringVar(&f.configPath, "config", "", "YAML configuration file")
	// The flags' own defaults stay empty, so that only a flag given on the
	// command line overrides the file and the environment; the help names
	// config's defaults.
	def := config.Default()
	f.fs.StringVar(&f.dockerHost, "docker-host", "", "Docker daemon address (default: DOCKER_HOST, else "+config.DefaultDockerHost+")")
	f.fs.StringVar(&f.stateDir, "state-dir", "", "directory for checkpoints (default "+def.StateDir+")")
	f.fs.StringVar(&f.httpAddr, "http-addr", "", "listen address of /healthz, /readyz, /status and /metrics (default "+def.HTTPAddr+")")
	return f
}

// loadConfig layers defaults < file < BERTH_* env < flags, resolves the
// Docker host (docker_host, else DOCKER_HOST, else the local socket), then
// validates.
func loadConfig(f *cliFlags, environ []string) (config.Config, error) {
	set := map[string]any{}
	f.fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "docker-host":
			set["docker_host"] = f.dockerHost
		case "state-dir":
			set["state_dir"] = f.stateDir
		case "http-addr":
			set["http_addr"] = f.httpAddr
		}
	})
	cfg, err := config.Load(f.configPath, environ, set)
	if err != nil {
		return cfg, err
	}
	cfg.DockerHost = cfg.Docker.ResolveHost(environ)
	return cfg, cfg.Validate()
}

// collect runs the collector until a signal, then shuts down within the
// shutdown timeout. Its parts start in the order data flows back from the
// backend (telemetry, Docker client, checkpoints, exporter, collector,
// manager, HTTP server) and stop in reverse (see lifecycle): the manager
// stops reading first, the exporter then delivers what was read, and the
// checkpoints are saved once more after the last acknowledgement.
func collect(cfg config.Config, environ []string, stdout, stderr io.Writer) (code int) {
	log := newLogger(cfg.LogLevel, stderr)
	telemetry.RouteSDKErrors(log)
	getenv := config.Getenv(environ)
	host, err := os.Hostname()
	if err != nil {
		log.Warn("host name unknown", "err", err)
	}
	lc := newLifecycle(log)
	started := false
	defer func() {
		// A start that failed undoes what it started; a run ends here.
		if err := lc.shutdown(cfg.ShutdownTimeout); err != nil {
			log.Error("shutdown incomplete", "err", err)
			if code == exitOK {
				code = exitFailure
			}
		} else if started {
			log.Info("stopped")
		}
	}()
	fail := func(code int, msg string, err error) int {
		log.Error(msg, "err", err)
		return code
	}

	self, err := telemetry.New(context.Background(), cfg.Telemetry, cfg.OTLP, getenv, version, host, log)
	if err != nil {
		return fail(exitUsage, "cannot set up berth's own telemetry", err)
	}
	// Stopped last: the final metrics and spans go out after everything
	// else. Their loss is reported, but does not make the run a failure:
	// berth's guarantees are about the records.
	lc.onStop("telemetry", 2*time.Second, func(ctx context.Context) error {
		if err := self.Shutdown(ctx); err != nil {
			log.Warn("berth's own last metrics and spans were not all sent", "err", err)
		}
		return nil
	})
	set := self.Settings()

	docker, err := dockerapi.New(cfg.Docker, cfg.Bursts, getenv)
	if err != nil {
		return fail(exitUsage, "cannot set up the Docker client", err)
	}
	lc.onStop("docker client", time.Second, func(context.Context) error {
		if err := docker.Close(); err != nil {
			log.Warn("closing the Docker client", "err", err)
		}
		return nil
	})

	store, err := checkpoint.Open(cfg.Checkpoints, set)
	if err != nil {
		return fail(exitFailure, "cannot use the state directory; set state_dir (or --state-dir) to a directory berth can write", err)
	}
	// Its final save comes after the exporter's last acknowledgement.
	lc.goRun("checkpoint saver", 5*time.Second, func(ctx context.Context) error { store.Run(ctx); return nil })

	sink, otlpSink, err := newSink(cfg, getenv, store, stdout, set)
	if err != nil {
		return fail(exitUsage, "cannot set up the exporter", err)
	}
	if otlpSink != nil {
		lc.onStop("exporter", 0, func(ctx context.Context) error {
			if err := otlpSink.Shutdown(ctx); err != nil {
				return fmt.Errorf("not every record read was delivered before the shutdown deadline; they are read again at the next start: %w", err)
			}
			return nil
		})
	}

	col, err := collectors.NewCollector(docker, sink, cfg.Bursts, host, set)
	if err != nil {
		return fail(exitFailure, "cannot set up the collector", err)
	}
	// berth in a container never collects its own log (its records would
	// feed back into themselves); outside one, ownID is "".
	ownID, err := selfcontainer.Detect()
	if err != nil {
		log.Debug("cannot tell whether berth runs in a container", "err", err)
	}
	if ownID != "" {
		// The manager says so at Info once the daemon lists it.
		log.Debug("berth's own container, from /proc/self", "id", ownID[:12])
	}
	mgr, err := events.NewManager(docker, col, store, cfg.Containers, cfg.Backoff, set, ownID)
	if err != nil {
		return fail(exitFailure, "cannot set up the container manager", err)
	}
	lc.goRun("container manager", 0, mgr.Run)

	if cfg.HTTPAddr != "" {
		ln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			return fail(exitFailure, "cannot listen on http_addr "+cfg.HTTPAddr, err)
		}
		srv := newHTTPServer(newMux(mgr, self.MetricsHandler(), otlpSink, time.Now()))
		log.Info("serving health endpoints", "addr", ln.Addr().String())
		if exposesBeyondHost(cfg.HTTPAddr) {
			log.Warn("http_addr is not a loopback address: /status shows every container's name and state, and /metrics berth's own figures, to whoever reaches "+ln.Addr().String()+
				"; bind it to 127.0.0.1 unless a firewall restricts it", "http_addr", cfg.HTTPAddr)
		}
		lc.goRun("http server", time.Second, func(ctx context.Context) error {
			return serveUntil(ctx, srv, ln)
		})
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	started = true
	log.Info("berth started", "version", version, "docker_host", cfg.DockerHost,
		"initial_position", cfg.InitialPosition, "idle_timeout", cfg.IdleTimeout, "max_burst", cfg.MaxBurst)
	select {
	case <-lc.Failed():
		log.Error("berth failed", "err", lc.Err())
		code = exitFailure
	case <-ctx.Done():
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	}
	return code
}

// serveUntil serves HTTP on ln until ctx ends, then shuts the server down
// within what is left of stopping it (lifecycle bounds the wait).
func serveUntil(ctx context.Context, srv *http.Server, ln net.Listener) error {
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// newSink builds the outputs: OTLP when an endpoint is configured, JSON lines
// on stdout when no endpoint is (or when stdout: true). The acknowledging
// sink (OTLP if on, else stdout) advances the checkpoints.
func newSink(cfg config.Config, getenv func(string) string, store *checkpoint.Store, stdout io.Writer, set telemetry.Settings) (logs.Sink, *export.OTLPSink, error) {
	otlpOn := otlpconf.Enabled(cfg.OTLP, getenv)
	stdoutOn := cfg.Stdout == "true" || (cfg.Stdout == "auto" && !otlpOn)
	if !otlpOn {
		if !stdoutOn {
			return nil, nil, errors.New("nothing to export to: stdout is false and no OTLP endpoint is set (otlp.endpoint or OTEL_EXPORTER_OTLP_ENDPOINT)")
		}
		return export.NewJSONSink(stdout, store), nil, nil
	}
	exp, err := export.NewOTLPExporter(context.Background(), cfg.OTLP, getenv)
	if err != nil {
		return nil, nil, err
	}
	protocol, _ := otlpconf.ResolveProtocol(cfg.OTLP, getenv)
	// Never the headers (credentials) nor TLS settings; the endpoint without
	// any user:password an OTEL_EXPORTER_OTLP_ENDPOINT may carry.
	set.Logger.Info("exporting over OTLP", "protocol", protocol, "endpoint", otlpconf.Redacted(otlpconf.Endpoint(cfg.OTLP, getenv)), "stdout", stdoutOn)
	if otlpconf.ImplicitTLS(cfg.OTLP) {
		set.Logger.Warn("otlp.endpoint has no scheme, so berth connects with TLS; write http://host:port for a plaintext backend (or set otlp.insecure: true), https:// to keep TLS and silence this warning")
	}
	otlpSink, err := export.NewOTLPSink(exp, store, cfg.Export, cfg.Backoff, set)
	if err != nil {
		_ = exp.Shutdown(context.Background())
		return nil, nil, err
	}
	if stdoutOn {
		return export.Tee{export.NewJSONSink(stdout, nil), otlpSink}, otlpSink, nil
	}
	return otlpSink, otlpSink, nil
}

func newLogger(level string, w io.Writer) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}
