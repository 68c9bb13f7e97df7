package dockerapi

import (
	"errors"
	"io"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"go.uber.org/goleak"

	"github.com/berthlog/berth/collectors"
	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/events"
	"github.com/berthlog/berth/logs"
)

// closeRecorder is a request body that records being closed.
type closeRecorder struct {
	io.Reader
	closed atomic.Bool
}

func (b *closeRecorder) Close() error { b.closed.Store(true); return nil }

// TestWritesAreRefusedBeforeTheDaemon: berth only reads from Docker. Every
// method but GET and HEAD is refused by the transport, through each of the
// three clients, and the daemon never sees the request.
func TestWritesAreRefusedBeforeTheDaemon(t *testing.T) {
	d := newFakeDaemon(t)
	d.setContainer("c1", nonTTY("c1"))
	c := newTestClient(t, d, config.Docker{}, config.Bursts{})
	ctx := testCtx(t)
	// Negotiate the API version of both Docker clients first: that pings,
	// which is allowed and counted.
	if err := c.ping(ctx); err != nil {
		t.Fatal(err)
	}
	sdkOf(t, c.logs).NegotiateAPIVersion(ctx)
	before := d.methodCounts()
	if before[http.MethodHead]+before[http.MethodGet] == 0 {
		t.Fatalf("the ping did not reach the fake daemon: %v", before)
	}

	_, err := sdkOf(t, c.control).ContainerCreate(ctx, &container.Config{Image: "busybox"}, nil, nil, nil, "evil")
	if !errors.Is(err, errMethodRefused) {
		t.Errorf("ContainerCreate: got %v, want errMethodRefused", err)
	}
	err = sdkOf(t, c.logs).ContainerRemove(ctx, "c1", container.RemoveOptions{Force: true})
	if !errors.Is(err, errMethodRefused) {
		t.Errorf("ContainerRemove: got %v, want errMethodRefused", err)
	}
	err = sdkOf(t, c.control).ContainerKill(ctx, "c1", "KILL")
	if !errors.Is(err, errMethodRefused) {
		t.Errorf("ContainerKill: got %v, want errMethodRefused", err)
	}

	for _, method := range []string{
		http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions, "BREW",
	} {
		body := &closeRecorder{Reader: strings.NewReader("{}")}
		req, err := http.NewRequestWithContext(ctx, method, "http://"+"docker/v1.41/containers/c1/stop", body)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.events.Do(req)
		if !errors.Is(err, errMethodRefused) {
			t.Errorf("%s through the transport: got %v, want errMethodRefused", method, err)
		}
		if !body.closed.Load() {
			t.Errorf("%s: the refused request's body was not closed", method)
		}
	}

	if after := d.methodCounts(); !reflect.DeepEqual(after, before) {
		t.Errorf("the daemon saw requests that should have been refused: before %v, after %v", before, after)
	}

	// Reads still pass.
	if _, err := c.Inspect(ctx, "c1"); err != nil {
		t.Errorf("Inspect after refusals: %v", err)
	}
}

// TestAPIVersionNegotiation: against a daemon that reports 1.41 the client
// talks /v1.41/, both after an explicit Ping and when a first call negotiates
// by itself, for the control and the logs clients alike.
func TestAPIVersionNegotiation(t *testing.T) {
	d := newFakeDaemon(t)
	d.setContainer("c1", nonTTY("c1"))
	d.setList([]map[string]any{{"Id": "c1", "Names": []string{"/c1"}, "State": "running"}})
	d.setLogs(func(lw *logWriter, _ *http.Request) {
		_ = lw.Frame(1, time.Unix(1700000000, 0), "x\n")
	})
	ctx := testCtx(t)

	t.Run("after Ping", func(t *testing.T) {
		c := newTestClient(t, d, config.Docker{}, config.Bursts{})
		if err := c.ping(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		if v := c.control.ClientVersion(); v != fakeAPIVersion {
			t.Errorf("control client version %q after Ping, want %q", v, fakeAPIVersion)
		}
		if _, err := c.List(ctx); err != nil {
			t.Fatalf("List: %v", err)
		}
		if _, ok := d.lastRequest("/v1.41/containers/json"); !ok {
			t.Errorf("List did not use /v1.41/: %v", d.seen())
		}
	})
	t.Run("lazily", func(t *testing.T) {
		c := newTestClient(t, d, config.Docker{}, config.Bursts{})
		if _, err := c.Inspect(ctx, "c1"); err != nil {
			t.Fatalf("Inspect: %v", err)
		}
		body, err := c.Logs(ctx, "c1", collectors.LogRequest{Tail: collectors.TailAll})
		if err != nil {
			t.Fatalf("Logs: %v", err)
		}
		_, _ = io.Copy(io.Discard, body)
		_ = body.Close()
		if v := c.logs.ClientVersion(); v != fakeAPIVersion {
			t.Errorf("logs client version %q, want %q", v, fakeAPIVersion)
		}
	})
	for _, r := range d.seen() {
		if r.Path == "/_ping" {
			continue
		}
		if !strings.HasPrefix(r.Path, "/v1.41/") {
			t.Errorf("request %s %s does not use the negotiated version", r.Method, r.Path)
		}
	}
}

// TestPingErrorNamesTheHost: an absent daemon is a clear error.
func TestPingErrorNamesTheHost(t *testing.T) {
	sock := shortSocketPath(t)
	c, err := New(config.Docker{DockerHost: "unix://" + sock, ControlTimeout: time.Second}, config.Bursts{}, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.ping(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), sock) {
		t.Fatalf("Ping of a missing socket: %v, want an error naming %s", err, sock)
	}
}

// TestNewRejectsBadHosts: the host is checked when the client is built. An
// empty host is an error: the configuration resolves it (DOCKER_HOST, else
// the local socket) before New.
func TestNewRejectsBadHosts(t *testing.T) {
	for _, host := range []string{"ssh://user@host", "nonsense", "npipe:////./pipe/docker_engine", ""} {
		if c, err := New(config.Docker{DockerHost: host}, config.Bursts{}, noEnv); err == nil {
			_ = c.Close()
			t.Errorf("New(%q) succeeded", host)
		} else if !strings.Contains(err.Error(), host) {
			t.Errorf("New(%q): %v does not name the host", host, err)
		}
	}
	for _, host := range []string{"unix:///var/run/docker.sock", "tcp://127.0.0.1:2375"} {
		c, err := New(config.Docker{DockerHost: host}, config.Bursts{}, noEnv)
		if err != nil {
			t.Errorf("New(%q): %v", host, err)
			continue
		}
		_ = c.Close()
	}
}

// TestSubscribe: the events request asks for container events since the
// last one (seconds.nanoseconds) with the watched actions, and the stream
// maps the daemon's messages to events.
func TestSubscribe(t *testing.T) {
	const idle = 400 * time.Millisecond
	d := newFakeDaemon(t)
	d.setEvents(func(ew *eventWriter, _ *http.Request) {
		send := func(v map[string]any) { _ = ew.Send(v) }
		send(map[string]any{
			"Type": "container", "Action": "start",
			"Actor": map[string]any{"ID": "c1", "Attributes": map[string]string{"name": "web", "image": "app:1"}},
			"time":  1700000001, "timeNano": int64(1700000001000000007),
		})
		send(map[string]any{ // not a container: skipped
			"Type": "network", "Action": "connect",
			"Actor": map[string]any{"ID": "n1"}, "time": 1700000002, "timeNano": int64(1700000002000000000),
		})
		send(map[string]any{
			"Type": "container", "Action": "exec_start: sh -c x",
			"Actor": map[string]any{"ID": "c1"}, "time": 1700000003, "timeNano": int64(1700000003000000003),
		})
		send(map[string]any{ // no actor: skipped
			"Type": "container", "Action": "die", "Actor": map[string]any{}, "time": 1700000004,
		})
		send(map[string]any{
			"Type": "container", "Action": "health_status: healthy",
			"Actor": map[string]any{"ID": "c2"}, "time": 1700000005, "timeNano": int64(1700000005000000005),
		})
		send(map[string]any{ // an old daemon: seconds only
			"Type": "container", "Action": "die",
			"Actor": map[string]any{"ID": "c3", "Attributes": map[string]string{"exitCode": "137"}}, "time": 1700000006,
		})
		ew.Stall()
	})
	c := newTestClient(t, d, config.Docker{EventsIdleTimeout: idle}, config.Bursts{})
	ctx := testCtx(t)

	since := time.Unix(1700000000, 5)
	// Subscribe pings first; the control client keeps that connection
	// alive, which is not the stream's to close.
	if err := c.ping(ctx); err != nil {
		t.Fatal(err)
	}
	before := goleak.IgnoreCurrent()
	stream, err := c.Subscribe(ctx, since)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}

	req, ok := d.lastRequest("/events")
	if !ok {
		t.Fatal("the daemon saw no events request")
	}
	if req.Path != "/v1.41/events" {
		t.Errorf("events path %q, want /v1.41/events", req.Path)
	}
	if got := req.Query["since"]; len(got) != 1 || got[0] != "1700000000.000000005" {
		t.Errorf("since = %q, want 1700000000.000000005", got)
	}
	if fj := req.Query["filters"]; len(fj) != 1 {
		t.Errorf("filters = %q", fj)
	} else {
		args, err := filters.FromJSON(fj[0])
		if err != nil {
			t.Fatalf("filters %q: %v", fj[0], err)
		}
		if got := args.Get("type"); !slices.Equal(got, []string{"container"}) {
			t.Errorf("type filter %v, want [container]", got)
		}
		got := args.Get("event")
		for _, a := range []string{"create", "start", "restart", "die", "stop", "kill", "oom", "pause", "unpause", "rename", "destroy"} {
			if !slices.Contains(got, a) {
				t.Errorf("event filter %v lacks %q", got, a)
			}
		}
	}

	want := []events.Event{
		{ID: "c1", Action: "start", Time: time.Unix(0, 1700000001000000007), Attributes: map[string]string{"name": "web", "image": "app:1"}},
		{ID: "c1", Action: "exec_start", Time: time.Unix(0, 1700000003000000003)},
		{ID: "c2", Action: "health_status", Time: time.Unix(0, 1700000005000000005)},
		{ID: "c3", Action: "die", Time: time.Unix(1700000006, 0), Attributes: map[string]string{"exitCode": "137"}},
	}
	var last time.Time
	for i, w := range want {
		ev, err := stream.Next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		last = time.Now()
		if ev.ID != w.ID || ev.Action != w.Action || !ev.Time.Equal(w.Time) || !reflect.DeepEqual(ev.Attributes, w.Attributes) {
			t.Errorf("event %d = %+v, want %+v", i, ev, w)
		}
	}

	// Then the stream is silent: Next ends at the events idle timeout.
	done := make(chan error, 1)
	go func() {
		_, err := stream.Next()
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("silent stream: Next = %v, want os.ErrDeadlineExceeded", err)
		}
		// Not before the idle timeout. No upper bound: the events
		// connection has no other deadline (os.ErrDeadlineExceeded says
		// this one fired), how late the runtime wakes the reader on a
		// loaded machine is the scheduler's, and TestDeadlineConn pins the
		// deadline itself exactly.
		if el := time.Since(last); el < idle-50*time.Millisecond {
			t.Errorf("silent stream ended %v after the last event, before the idle timeout %v", el, idle)
		}
	case <-time.After(idle + 10*time.Second):
		t.Fatal("Next on a silent events stream did not return")
	}
	_ = stream.Close()
	goleak.VerifyNone(t, before)
}

// TestSubscribeWithoutSince asks for no since on a first subscription.
func TestSubscribeWithoutSince(t *testing.T) {
	d := newFakeDaemon(t)
	d.setEvents(func(ew *eventWriter, _ *http.Request) { ew.Stall() })
	c := newTestClient(t, d, config.Docker{EventsIdleTimeout: 200 * time.Millisecond}, config.Bursts{})
	stream, err := c.Subscribe(testCtx(t), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	req, _ := d.lastRequest("/events")
	if _, ok := req.Query["since"]; ok {
		t.Errorf("since = %q on a first subscription", req.Query["since"])
	}
	// The fake sends nothing: Next ends with the idle deadline.
	if _, err := stream.Next(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Next = %v, want os.ErrDeadlineExceeded", err)
	}
}

// TestListAndInspect maps the daemon's answers to berth's types.
func TestListAndInspect(t *testing.T) {
	d := newFakeDaemon(t)
	d.setList([]map[string]any{
		{"Id": "aaa", "Names": []string{"/web"}, "State": "running", "Image": "nginx:1", "ImageID": "sha256:1111", "Labels": map[string]string{"tier": "edge"}},
		{"Id": "bbb", "Names": []string{"/db", "/web/db"}, "State": "exited"},
		{"Id": "ccc", "Names": []string{}, "State": "created"},
		// nginx:latest has moved to another image since ddd was created:
		// the list gives the ID, the container's config the reference.
		{"Id": "ddd", "Names": []string{"/old"}, "State": "running", "Image": "sha256:2222", "ImageID": "sha256:2222"},
		// created from an image that no longer exists: inspect fails, the
		// list's answer stands
		{"Id": "eee", "Names": []string{"/gone"}, "State": "exited", "Image": "sha256:3333", "ImageID": "sha256:3333"},
	})
	d.setContainer("ddd", map[string]any{"Id": "ddd", "Name": "/old", "Config": map[string]any{"Image": "nginx:latest"}})
	d.setContainer("aaa", map[string]any{
		"Id":   "aaa",
		"Name": "/web",
		"Config": map[string]any{
			"Tty":    true,
			"Image":  "registry:5000/team/app:1.2",
			"Labels": map[string]string{"com.docker.compose.service": "frontend", "tier": "edge"},
		},
		"State": map[string]any{"Running": true, "Status": "running"},
	})
	d.setContainer("bbb", map[string]any{
		"Id":     "bbb",
		"Name":   "/db",
		"Config": map[string]any{"Tty": false, "Image": "postgres@sha256:0123456789abcdef"},
		"State":  map[string]any{"Running": false, "Status": "exited"},
	})
	c := newTestClient(t, d, config.Docker{}, config.Bursts{})
	ctx := testCtx(t)

	list, err := c.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	wantList := []events.Container{
		{ID: "aaa", Name: "web", State: "running", Image: "nginx:1", Labels: map[string]string{"tier": "edge"}},
		{ID: "bbb", Name: "db", State: "exited"},
		{ID: "ccc", Name: "", State: "created"},
		{ID: "ddd", Name: "old", State: "running", Image: "nginx:latest"},
		{ID: "eee", Name: "gone", State: "exited", Image: "sha256:3333"},
	}
	if !reflect.DeepEqual(list, wantList) {
		t.Errorf("List = %+v, want %+v", list, wantList)
	}
	if req, _ := d.lastRequest("/containers/json"); !slices.Equal(req.Query["all"], []string{"1"}) {
		t.Errorf("List asked all=%q, want all=1 (stopped containers too)", req.Query["all"])
	}

	m, err := c.Inspect(ctx, "aaa")
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	want := &logs.Meta{
		ID: "aaa", Name: "web", ImageName: "registry:5000/team/app", ImageTags: []string{"1.2"},
		ServiceName: "frontend", Labels: map[string]string{"com.docker.compose.service": "frontend", "tier": "edge"},
		TTY: true, Running: true,
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("Inspect(aaa) = %+v, want %+v", m, want)
	}

	m, err = c.Inspect(ctx, "bbb")
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	want = &logs.Meta{ID: "bbb", Name: "db", ImageName: "postgres", ServiceName: "db"}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("Inspect(bbb) = %+v, want %+v", m, want)
	}

	if _, err := c.Inspect(ctx, "nope"); !errors.Is(err, collectors.ErrNotFound) {
		t.Errorf("Inspect of a missing container: %v, want collectors.ErrNotFound", err)
	}
	if _, err := c.Logs(ctx, "nope", collectors.LogRequest{Tail: collectors.TailAll}); !errors.Is(err, collectors.ErrNotFound) {
		t.Errorf("Logs of a missing container: %v, want collectors.ErrNotFound", err)
	}
}

func TestSplitImage(t *testing.T) {
	for _, tc := range []struct {
		ref  string
		name string
		tags []string
	}{
		{"nginx:1.25", "nginx", []string{"1.25"}},
		{"registry:5000/app:1.2", "registry:5000/app", []string{"1.2"}},
		{"registry:5000/team/app:latest", "registry:5000/team/app", []string{"latest"}},
		{"docker.io/library/nginx:latest", "docker.io/library/nginx", []string{"latest"}},
		{"app@sha256:0123456789abcdef", "app", nil},
		{"app:1.2@sha256:0123456789abcdef", "app", []string{"1.2"}},
		{"registry:5000/app@sha256:0123456789abcdef", "registry:5000/app", nil},
		{"nginx", "nginx", []string{"latest"}}, // Docker's tag for a reference without one
		{"registry:5000/name", "registry:5000/name", []string{"latest"}},
		{"sha256:0123456789abcdef", "sha256:0123456789abcdef", nil},
		{"", "", nil},
	} {
		name, tags := splitImage(tc.ref)
		if name != tc.name || !slices.Equal(tags, tc.tags) {
			t.Errorf("splitImage(%q) = %q, %q; want %q, %q", tc.ref, name, tags, tc.name, tc.tags)
		}
	}
}

// TestLogsQuery: a burst's request asks for both streams with timestamps,
// and passes follow, tail and since (seconds.nanoseconds, a microsecond
// before the cursor's boundary) as planned.
func TestLogsQuery(t *testing.T) {
	d := newFakeDaemon(t)
	d.setContainer("c1", nonTTY("c1"))
	d.setLogs(func(lw *logWriter, _ *http.Request) { _ = lw.Start() })
	c := newTestClient(t, d, config.Docker{}, config.Bursts{})
	ctx := testCtx(t)

	for _, tc := range []struct {
		name string
		req  collectors.LogRequest
		want map[string]string // "" means: absent
	}{
		{"re-attach", collectors.LogRequest{Follow: true, Tail: 100, Since: time.Unix(1700000000, 5)},
			map[string]string{"follow": "1", "tail": "100", "since": "1699999999.999999005"}},
		{"whole log", collectors.LogRequest{Follow: true, Tail: collectors.TailAll},
			map[string]string{"follow": "1", "tail": "all", "since": ""}},
		{"stopped container", collectors.LogRequest{Follow: false, Tail: 16, Since: time.Unix(1700000000, 123456789).In(time.FixedZone("X", 3600))},
			map[string]string{"follow": "", "tail": "16", "since": "1700000000.123455789"}},
		// Every boundary is asked from a microsecond before it: Podman's
		// since is strict, and the boundary's line must come back (a
		// re-attach that does not see it reports a rotation gap).
		{"whole seconds", collectors.LogRequest{Follow: true, Tail: 1, Since: time.Unix(1700000000, 0)},
			map[string]string{"follow": "1", "tail": "1", "since": "1699999999.999999000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, err := c.Logs(ctx, "c1", tc.req)
			if err != nil {
				t.Fatalf("Logs: %v", err)
			}
			_, _ = io.Copy(io.Discard, body)
			_ = body.Close()
			r, ok := d.lastRequest("/containers/c1/logs")
			if !ok {
				t.Fatal("no logs request")
			}
			tc.want["timestamps"] = "1"
			tc.want["stdout"] = "1"
			tc.want["stderr"] = "1"
			for k, v := range tc.want {
				got, present := r.Query[k]
				switch {
				case v == "" && present:
					t.Errorf("%s=%q, want it absent", k, got)
				case v != "" && !slices.Equal(got, []string{v}):
					t.Errorf("%s=%q, want %q", k, got, v)
				}
			}
		})
	}
}

// TestCloseReleasesIdleConnections: Close must close the kept-alive control
// connection (and its transport goroutines) at once, not leave it until the
// deadline or the idle timeout closes it.
func TestCloseReleasesIdleConnections(t *testing.T) {
	d := newFakeDaemon(t)
	d.setList([]map[string]any{})
	before := goleak.IgnoreCurrent()
	c, err := New(config.Docker{DockerHost: d.host(), ControlTimeout: time.Minute, EventsIdleTimeout: time.Minute}, config.Bursts{IdleTimeout: time.Minute, MaxBurst: time.Minute}, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.List(testCtx(t)); err != nil {
		t.Fatalf("List: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	goleak.VerifyNone(t, before)
}

// TestKeptAliveConnectionOutlivesItsIdleDeadline: a control connection that
// waited idle in the pool has a Read pending since it went idle, with the
// deadline armed then. A call sent on it shortly before that deadline and
// answered after it must succeed on its first attempt, on that connection:
// writing the request re-arms the read deadline. (Before, the first attempt
// timed out early and the transport sent the request a second time on a new
// connection.) The HTTP transport and the fake daemon talk over an in-memory
// network in a synctest bubble, so the timing is exact: on a socket, a loaded
// machine could stretch the answer past the call's own timeout.
func TestKeptAliveConnectionOutlivesItsIdleDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const control = 10 * time.Second
		d, ln := newPipeDaemon(t)
		d.setContainer("c1", nonTTY("c1"))
		d.setList([]map[string]any{})
		c := newTestClient(t, d, config.Docker{ControlTimeout: control}, config.Bursts{})
		dialControl(c, ln)
		ctx := t.Context()
		if _, err := c.List(ctx); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the connection is idle in the pool, its Read pending
		time.Sleep(control - time.Second)
		d.setInspectDelay(2 * time.Second) // answered 1s after the old deadline
		if _, err := c.Inspect(ctx, "c1"); err != nil {
			t.Fatalf("Inspect on a kept-alive connection: %v", err)
		}
		n := 0
		for _, r := range d.seen() {
			if r.Path == "/v1.41/containers/c1/json" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("the daemon saw %d inspect requests, want 1", n)
		}
		// One connection for the version negotiation, the list and the
		// inspect.
		if got := ln.dials.Load(); got != 1 {
			t.Errorf("%d connections dialled, want 1 (the kept-alive one)", got)
		}
	})
}
