// Package dockerapi is berth's one adapter to the Docker Engine API. Every
// connection it makes is dialled by berth and bounded by read and write
// deadlines; every method but GET and HEAD is refused before it is sent. It
// implements the consumer-side interfaces of collectors and events.
package dockerapi

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/berthlog/berth/collectors"
	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/events"
	"github.com/berthlog/berth/logs"
)

// The adapter implements the consumer-side interfaces of collectors and
// events.
var (
	_ collectors.LogSource = (*Client)(nil)
	_ events.Source        = (*Client)(nil)
)

// Client talks to the daemon through three HTTP clients, one per deadline
// policy: control calls, the events stream and log bursts. None has an
// overall http.Client timeout: the connections bound every read instead.
type Client struct {
	docker config.Docker // its Labels are the client's own copy
	bursts config.Bursts
	desc   describer // what a Meta carries besides the daemon's answer
	// digests caches the repo digests of each image ID (an image inspect
	// per image, not per container or burst), up to maxCachedDigests.
	digestsMu sync.Mutex
	digests   map[string][]string
	control   engine // never the SDK client itself: see engine
	logs      engine
	events    *http.Client
	// transports are the three clients' connection pools. The Docker
	// clients' own Close cannot reach them (it only knows a bare
	// *http.Transport, and ours is wrapped), so Close closes them here.
	transports []*http.Transport
	// libpod says that the daemon is Podman: an answer carried its
	// Libpod-Api-Version header (the ping before every subscription does).
	libpod atomic.Bool
	// tls is the TLS the transports speak; nil: plaintext.
	tls *tlsSettings
	// scheme, urlHost and basePath make the events endpoint's URL (the API
	// version is added per request).
	scheme, urlHost, basePath string
}

// New returns a Client of the daemon at docker.DockerHost (unix:///path or
// tcp://host:port, already resolved: DOCKER_HOST and the local socket are
// the configuration's to apply). Control calls are bounded by
// docker.ControlTimeout, the events stream by docker.EventsIdleTimeout, each
// log burst by bursts.IdleTimeout and bursts.MaxBurst; docker.Labels selects
// the labels exported with a container's records. TLS to a tcp:// daemon is
// docker.TLS, else getenv's DOCKER_TLS_VERIFY, DOCKER_TLS and
// DOCKER_CERT_PATH (see resolveTLS); a file it names that is missing is an
// error here. New does not contact the daemon.
func New(docker config.Docker, bursts config.Bursts, getenv func(string) string) (*Client, error) {
	host := docker.DockerHost
	if host == "" {
		return nil, errors.New("docker host is empty (use unix:///path/to/docker.sock or tcp://host:port)")
	}
	u, err := client.ParseHostURL(host)
	if err != nil {
		return nil, fmt.Errorf("docker host %q: %w (use unix:///path/to/docker.sock or tcp://host:port)", host, err)
	}
	var network, address string
	switch u.Scheme {
	case "unix":
		network, address = "unix", u.Host
	case "tcp", "http", "https":
		network, address = "tcp", u.Host
	default:
		return nil, fmt.Errorf("docker host %q: scheme %q is not supported (use unix:// or tcp://)", host, u.Scheme)
	}
	settings, err := resolveTLS(u.Scheme, docker.TLS, getenv)
	if err != nil {
		return nil, err
	}
	var tlsConf *tls.Config
	scheme := "http"
	if settings != nil {
		if tlsConf, err = settings.config(); err != nil {
			return nil, err
		}
		scheme = "https"
	}
	docker.Labels = slices.Clone(docker.Labels) // the caller's slice may change
	c := &Client{docker: docker, bursts: bursts, tls: settings, scheme: scheme, urlHost: u.Host, basePath: u.Path,
		desc: describer{selectors: docker.Labels, static: docker.StaticResource()}, digests: make(map[string][]string)}
	if network == "unix" {
		c.urlHost = client.DummyHost
	}
	newHTTP := func(p deadlinePolicy, keepAlive bool) *http.Client {
		tr := &http.Transport{
			DialContext:       dialer{network: network, address: address, policy: p, timeout: docker.ControlTimeout}.DialContext,
			TLSClientConfig:   tlsConf,
			DisableKeepAlives: !keepAlive,
			MaxIdleConns:      4,
			IdleConnTimeout:   30 * time.Second,
			// The daemon's responses are never compressed; asking would
			// only add a gzip reader on the hot path.
			DisableCompression: true,
		}
		c.transports = append(c.transports, tr)
		return &http.Client{Transport: readOnlyTransport{base: tr, libpod: &c.libpod}}
	}
	newDocker := func(hc *http.Client) (*client.Client, error) {
		// WithHTTPClient replaces the transport WithHost configured, so the
		// host comes first only to set the URL parts; the dialer is ours.
		return client.NewClientWithOpts(
			client.WithHost(host),
			client.WithHTTPClient(hc),
			client.WithScheme(scheme),
			client.WithAPIVersionNegotiation(),
			// The client wraps its transport in otelhttp with the global
			// providers; berth's Docker calls are not traced through them.
			client.WithTraceOptions(
				otelhttp.WithTracerProvider(tracenoop.NewTracerProvider()),
				otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
			),
		)
	}
	if c.control, err = newDocker(newHTTP(deadlinePolicy{idle: docker.ControlTimeout}, true)); err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	// One connection per burst: when the burst ends its connection is gone.
	if c.logs, err = newDocker(keepDeadlines(newHTTP(deadlinePolicy{idle: bursts.IdleTimeout, lifetime: bursts.MaxBurst}, false))); err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	c.events = newHTTP(deadlinePolicy{idle: docker.EventsIdleTimeout}, false)
	return c, nil
}

// Close releases idle connections.
func (c *Client) Close() error {
	for _, tr := range c.transports {
		tr.CloseIdleConnections()
	}
	return errors.Join(c.control.Close(), c.logs.Close())
}

// ping checks that the daemon answers and negotiates the API version.
func (c *Client) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.docker.ControlTimeout)
	defer cancel()
	ping, err := c.control.Ping(ctx)
	if err != nil {
		return fmt.Errorf("ping docker at %s: %w", c.docker.DockerHost, explain(err, c.docker.DockerHost, c.tls))
	}
	c.control.NegotiateAPIVersionPing(ping)
	return nil
}

// Inspect describes a container. A container that no longer exists (or is
// being removed) is collectors.ErrNotFound.
func (c *Client) Inspect(ctx context.Context, id string) (*logs.Meta, error) {
	ctx, cancel := context.WithTimeout(ctx, c.docker.ControlTimeout)
	defer cancel()
	info, err := c.control.ContainerInspect(ctx, id)
	if err != nil {
		return nil, classify(err)
	}
	m := metaOf(info, c.desc)
	m.ImageRepoDigests = c.repoDigests(ctx, m.ImageID)
	return m, nil
}

// maxCachedDigests bounds the image digests cache; it is emptied when full.
const maxCachedDigests = 1024

// repoDigests returns the repo digests of the image id, as the daemon's
// image inspect gives them (none for an image built locally and never
// pushed or pulled by digest). They are optional: an image that cannot be
// inspected (removed meanwhile, Podman's answer) has none, and is asked
// again next time.
func (c *Client) repoDigests(ctx context.Context, id string) []string {
	if id == "" {
		return nil
	}
	c.digestsMu.Lock()
	d, ok := c.digests[id]
	c.digestsMu.Unlock()
	if ok {
		return d
	}
	img, err := c.control.ImageInspect(ctx, id)
	if err != nil {
		return nil
	}
	d = slices.Clone(img.RepoDigests)
	slices.Sort(d)
	c.digestsMu.Lock()
	if len(c.digests) >= maxCachedDigests {
		clear(c.digests)
	}
	c.digests[id] = d
	c.digestsMu.Unlock()
	return d
}

// describer is what the client adds to a container's Meta from the
// configuration: the labels exported (docker.Labels) and the static
// resource attributes (resource_attributes).
type describer struct {
	selectors []string
	static    []logs.Label
}

// metaOf maps an inspect answer to the resource of the container's records.
func metaOf(info container.InspectResponse, d describer) *logs.Meta {
	m := &logs.Meta{ID: info.ID, Name: strings.TrimPrefix(info.Name, "/"), Static: d.static}
	if info.Config != nil {
		m.TTY = info.Config.Tty
		m.Labels = info.Config.Labels
		m.SelectedLabels = logs.SelectLabels(m.Labels, d.selectors)
		m.ImageName, m.ImageTags = splitImage(info.Config.Image)
	}
	if info.ContainerJSONBase != nil {
		m.ImageID = info.Image
	}
	if info.State != nil {
		m.Running = info.State.Running
		m.StartedAt, _ = time.Parse(time.RFC3339Nano, info.State.StartedAt)
	}
	if info.ContainerJSONBase != nil && info.HostConfig != nil {
		m.AutoRemove = info.HostConfig.AutoRemove
	}
	m.SetService()
	return m
}

// splitImage splits an image reference into its name and tags:
// "registry:5000/app:1.2" is ("registry:5000/app", ["1.2"]); "app" is
// ("app", ["latest"]), the tag Docker gives a reference without one; a
// digest is dropped from the name, and a reference by digest alone
// ("app@sha256:...") has no tag.
func splitImage(ref string) (string, []string) {
	if strings.HasPrefix(ref, "sha256:") || ref == "" {
		return ref, nil // created from an image ID: no name, no tag
	}
	digest := false
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref, digest = ref[:i], true
	}
	slash := strings.LastIndexByte(ref, '/')
	if colon := strings.LastIndexByte(ref, ':'); colon > slash {
		return ref[:colon], []string{ref[colon+1:]}
	}
	if digest {
		return ref, nil
	}
	return ref, []string{"latest"}
}

// Logs opens a logs response with timestamps. Every Read of its body has a
// deadline: it returns os.ErrDeadlineExceeded once the daemon has sent
// nothing for req.Idle (zero: bursts.IdleTimeout), or the burst's connection
// is bursts.MaxBurst old.
func (c *Client) Logs(ctx context.Context, id string, req collectors.LogRequest) (io.ReadCloser, error) {
	opts := container.LogsOptions{ShowStdout: true, ShowStderr: true, Timestamps: true, Follow: req.Follow, Tail: "all"}
	if req.Tail != collectors.TailAll && !(req.Follow && c.libpod.Load()) {
		// Podman (4.3.1) follows a bounded tail from the end of the log
		// as it was once the tail was read: the lines written meanwhile
		// are lost. Its since bounds the request instead, and reads from
		// the start of the log anyway.
		opts.Tail = strconv.Itoa(req.Tail)
	}
	if !req.Since.IsZero() {
		opts.Since = unixNano(sinceOf(req.Since))
	}
	// Whether the whole request went out: a deadline that passes after
	// that is a daemon that has not answered yet (an idle end); one that
	// passes before it is a connection that does not work (an error).
	var sent atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) { sent.Store(info.Err == nil) },
	})
	idle := c.bursts.IdleTimeout
	if req.Idle > 0 {
		// A quiet container's burst: its connection (one per request) waits
		// longer for a byte.
		idle = req.Idle
		ctx = withIdle(ctx, idle)
	}
	rc, err := c.logs.ContainerLogs(ctx, id, opts)
	if err != nil {
		return nil, logsRequestError(err, sent.Load(), idle)
	}
	return rc, nil
}

// logsRequestError explains why a logs request got no response. A
// connection deadline that passed once the request was sent is a daemon
// that has not answered within idle_timeout: the error keeps
// os.ErrDeadlineExceeded in its chain (keepDeadlines), and the burst ends as
// an idle one. One that passed before the request was sent is a connection
// that does not work: the error is a fault, and does not match
// os.ErrDeadlineExceeded.
func logsRequestError(err error, sent bool, idle time.Duration) error {
	switch {
	case !errors.Is(err, os.ErrDeadlineExceeded):
		return classify(err)
	case sent:
		return fmt.Errorf("no response header to the logs request within its idle deadline (%v): %w", idle, err)
	default:
		// %v, not %w: not the idle end the deadline stands for once the
		// request is out.
		return fmt.Errorf("the logs request could not be sent within its idle deadline (%v): %v", idle, err)
	}
}

// sinceOf is the since to ask for lines from t on: a microsecond before t.
// Docker keeps lines at since and after; Podman only those strictly after
// it (and before 5.8 sends whole-second timestamps; it parses since as a
// float, good to ~240 ns), so asked from t itself it would leave out the
// cursor's own line. Both then send the line at the cursor's boundary
// first, which is how a re-attach tells that Docker still holds its
// position (collectors.Gap). The lines of that microsecond that Docker
// sends are before the cursor's boundary, which drops them.
func sinceOf(t time.Time) time.Time {
	return t.Add(-time.Microsecond)
}

// unixNano formats t as the daemon's seconds.nanoseconds timestamp.
func unixNano(t time.Time) string {
	return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
}

// List returns every container, with the image reference it was created
// from and its labels (what the selection's rules read).
func (c *Client) List(ctx context.Context) ([]events.Container, error) {
	lctx, cancel := context.WithTimeout(ctx, c.docker.ControlTimeout)
	defer cancel()
	list, err := c.control.ContainerList(lctx, container.ListOptions{All: true})
	if err != nil {
		return nil, classify(err)
	}
	out := make([]events.Container, 0, len(list))
	for _, s := range list {
		name := ""
		if len(s.Names) > 0 {
			name = strings.TrimPrefix(s.Names[0], "/")
		}
		out = append(out, events.Container{ID: s.ID, Name: name, State: dockerState(string(s.State)), Image: c.imageOf(ctx, s.ID, s.Image, s.ImageID), Labels: s.Labels})
	}
	return out, nil
}

// imageOf returns the reference a listed container was created from. The
// list gives the image's ID instead when that reference has since moved to
// another image (a newer nginx:latest pulled); the container's own config,
// which its events also carry, still has the reference, so it is inspected
// then. If the inspect fails, the list's answer stands.
func (c *Client) imageOf(ctx context.Context, id, image, imageID string) string {
	if image == "" || (image != imageID && !strings.HasPrefix(image, "sha256:")) {
		return image
	}
	ctx, cancel := context.WithTimeout(ctx, c.docker.ControlTimeout)
	defer cancel()
	info, err := c.control.ContainerInspect(ctx, id)
	if err != nil || info.Config == nil || info.Config.Image == "" {
		return image
	}
	return info.Config.Image
}

// watchedActions are the container events the manager acts on. Podman's
// Docker-compatible API filters by its own names: a container's exit is
// "died" there (sent as "die") and its removal "remove" (sent as is, never
// "destroy"); asking Docker for them too matches nothing.
var watchedActions = []string{
	"create", "start", "restart", "die", "stop", "kill", "oom",
	"pause", "unpause", "rename", "destroy",
	"died", "remove", // Podman
}

// dockerAction maps Podman's names of the watched actions to Docker's.
func dockerAction(a string) string {
	switch a {
	case "remove":
		return "destroy"
	case "died":
		return "die"
	}
	return a
}

// dockerState maps the container states Podman's list reports besides
// Docker's to Docker's: "stopped" is a container that ran and exited;
// "stopping" still runs until its die event; "configured" and "initialized"
// never started.
func dockerState(s string) string {
	switch s {
	case "stopped":
		return "exited"
	case "stopping":
		return "running"
	case "configured", "initialized":
		return "created"
	}
	return s
}

// Subscribe opens the container events stream, after checking that the
// daemon answers. The stream ends with os.ErrDeadlineExceeded when it has been
// silent for docker.EventsIdleTimeout.
func (c *Client) Subscribe(ctx context.Context, since time.Time) (events.EventStream, error) {
	if err := c.ping(ctx); err != nil {
		return nil, err
	}
	args := filters.NewArgs(filters.Arg("type", "container"))
	for _, a := range watchedActions {
		args.Add("event", a)
	}
	fj, err := filters.ToJSON(args)
	if err != nil {
		return nil, err
	}
	q := url.Values{"filters": {fj}}
	if !since.IsZero() {
		q.Set("since", unixNano(since))
	}
	u := url.URL{
		Scheme:   c.scheme,
		Host:     c.urlHost,
		Path:     c.basePath + "/v" + c.control.ClientVersion() + "/events",
		RawQuery: q.Encode(),
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.events.Do(req)
	if err != nil {
		return nil, fmt.Errorf("subscribe to docker events: %w", explain(err, c.docker.DockerHost, c.tls))
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		_ = resp.Body.Close()
		return nil, fmt.Errorf("subscribe to docker events: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return &eventStream{body: resp.Body, dec: json.NewDecoder(resp.Body), desc: c.desc}, nil
}

type eventStream struct {
	body io.ReadCloser
	dec  *json.Decoder
	desc describer // what a Meta carries besides the event's attributes
}

// wireEvent is the part of the daemon's event message berth reads.
type wireEvent struct {
	Type   string `json:"Type"`
	Action string `json:"Action"`
	Actor  struct {
		ID         string            `json:"ID"`
		Attributes map[string]string `json:"Attributes"`
	} `json:"Actor"`
	Time     int64 `json:"time"`
	TimeNano int64 `json:"timeNano"`
}

func (s *eventStream) Next() (events.Event, error) {
	for {
		var w wireEvent
		if err := s.dec.Decode(&w); err != nil {
			return events.Event{}, err
		}
		if w.Type != "container" || w.Actor.ID == "" {
			continue
		}
		t := time.Unix(0, w.TimeNano)
		if w.TimeNano == 0 {
			t = time.Unix(w.Time, 0)
		}
		// exec_start: sh -c ... and health_status: healthy carry their
		// detail after a colon.
		action, _, _ := strings.Cut(w.Action, ":")
		ev := events.Event{ID: w.Actor.ID, Action: dockerAction(strings.TrimSpace(action)), Time: t, Attributes: w.Actor.Attributes}
		if ev.Action == "create" || ev.Action == "start" {
			ev.Meta = metaOfEvent(ev.ID, ev.Attributes, s.desc)
		}
		return ev, nil
	}
}

// metaOfEvent describes a container from the attributes of its create or
// start event: the daemon puts the container's labels there, next to its
// name and image. Its TTY, state and start time are not known. nil if the
// attributes do not name the container.
func metaOfEvent(id string, attrs map[string]string, d describer) *logs.Meta {
	name := attrs["name"]
	if name == "" {
		return nil
	}
	m := &logs.Meta{ID: id, Name: strings.TrimPrefix(name, "/"), Labels: make(map[string]string, len(attrs)), Static: d.static}
	for k, v := range attrs {
		if k != "name" && k != "image" {
			m.Labels[k] = v
		}
	}
	m.SelectedLabels = logs.SelectLabels(m.Labels, d.selectors)
	m.ImageName, m.ImageTags = splitImage(attrs["image"])
	m.SetService()
	return m
}

func (s *eventStream) Close() error { return s.body.Close() }

// classify maps the daemon's answers that the collectors act on to their
// errors: not found, and a logging driver that cannot be read.
func classify(err error) error {
	switch {
	case errdefs.IsNotFound(err):
		return fmt.Errorf("%w: %v", collectors.ErrNotFound, err)
	case errdefs.IsConflict(err):
		// "dead or marked for removal": its log is going away with it.
		return fmt.Errorf("%w: %v", collectors.ErrNotFound, err)
	case errdefs.IsNotImplemented(err):
		return fmt.Errorf("%w: %v", collectors.ErrLogsUnsupported, err)
	}
	return err
}

// keepDeadlines makes hc's requests keep a connection deadline's expiry in
// their error chain. The Docker SDK replaces any request error that reports
// Timeout() with a bare "Cannot connect to the Docker daemon" that drops its
// cause, so a logs request whose response header never came would look like
// a daemon that cannot be reached. Every other error reaches the SDK as is.
func keepDeadlines(hc *http.Client) *http.Client {
	hc.Transport = deadlineTransport{base: hc.Transport}
	return hc
}

// deadlineTransport hides the Timeout() of a round trip that ended at a
// connection deadline from the SDK (see keepDeadlines), keeping the error
// itself in the chain.
type deadlineTransport struct{ base http.RoundTripper }

func (t deadlineTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return resp, deadlineError{err: err}
	}
	return resp, err
}

// deadlineError is a round trip's error whose cause is a connection
// deadline. It deliberately has no Timeout method: errors.Is(err,
// os.ErrDeadlineExceeded) still finds the cause through Unwrap, but the
// *url.Error around it no longer reports Timeout() to the SDK.
type deadlineError struct{ err error }

func (e deadlineError) Error() string { return e.err.Error() }
func (e deadlineError) Unwrap() error { return e.err }
