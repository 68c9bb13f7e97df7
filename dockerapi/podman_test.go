package dockerapi

import (
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"

	"github.com/berthlog/berth/collectors"
	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
)

// Podman's Docker-compatible API (4.3.1, Debian bookworm), as observed
// against `podman system service`: see README "Podman".

// TestPodmanEvents: Podman filters events by its own action names (a
// container's exit is "died", its removal "remove"), so berth asks for those
// too; it sends "remove" for a removal, never "destroy", which berth maps to
// Docker's name. Its extra actions (init, cleanup) pass through as actions
// the manager does not act on.
func TestPodmanEvents(t *testing.T) {
	d := newFakeDaemon(t)
	d.setEvents(func(ew *eventWriter, _ *http.Request) {
		attrs := map[string]string{"name": "web", "image": "docker.io/library/nginx:latest", "containerExitCode": "0", "podId": ""}
		for i, a := range []string{"create", "init", "start", "die", "cleanup", "remove"} {
			_ = ew.Send(map[string]any{
				"status": a, "id": "c1", "from": attrs["image"],
				"Type": "container", "Action": a, "Actor": map[string]any{"ID": "c1", "Attributes": attrs},
				"scope": "local", "time": 1795994900 + i, "timeNano": int64(1795994900+i) * 1e9,
			})
		}
		ew.Stall()
	})
	c := newTestClient(t, d, config.Docker{EventsIdleTimeout: time.Minute}, config.Bursts{})
	stream, err := c.Subscribe(testCtx(t), time.Time{})
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	defer stream.Close()

	req, _ := d.lastRequest("/events")
	args, err := filters.FromJSON(url.Values(req.Query).Get("filters"))
	if err != nil {
		t.Fatalf("filters %q: %v", url.Values(req.Query).Get("filters"), err)
	}
	for _, a := range []string{"died", "remove", "die", "destroy"} {
		if !slices.Contains(args.Get("event"), a) {
			t.Errorf("event filter %v lacks %q (Podman filters by its own names)", args.Get("event"), a)
		}
	}
	var got []string
	for range 6 {
		ev, err := stream.Next()
		if err != nil {
			t.Fatalf("Next after %v: %v", got, err)
		}
		got = append(got, ev.Action)
	}
	if want := []string{"create", "init", "start", "die", "cleanup", "destroy"}; !slices.Equal(got, want) {
		t.Errorf("actions %v, want %v (remove is destroy)", got, want)
	}
}

// TestPodmanListStates: the states Podman's list reports besides Docker's
// are mapped to Docker's: stopped is exited, stopping still runs,
// configured and initialized never started.
func TestPodmanListStates(t *testing.T) {
	d := newFakeDaemon(t)
	var list []map[string]any
	states := []string{"running", "stopped", "stopping", "configured", "initialized", "exited", "created", "paused"}
	for i, s := range states {
		list = append(list, map[string]any{"Id": strconv.Itoa(i), "Names": []string{"/c" + strconv.Itoa(i)}, "State": s, "Image": "localhost/app:1", "ImageID": "sha256:1"})
	}
	d.setList(list)
	c := newTestClient(t, d, config.Docker{}, config.Bursts{})
	got, err := c.List(testCtx(t))
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var gotStates []string
	var running []bool
	for _, ct := range got {
		gotStates = append(gotStates, ct.State)
		running = append(running, ct.Running())
	}
	wantStates := []string{"running", "exited", "running", "created", "created", "exited", "created", "paused"}
	if !slices.Equal(gotStates, wantStates) {
		t.Errorf("states %v listed as %v, want %v", states, gotStates, wantStates)
	}
	if want := []bool{true, false, true, false, false, false, false, true}; !slices.Equal(running, want) {
		t.Errorf("running %v, want %v", running, want)
	}
	if got[0].Image != "localhost/app:1" {
		t.Errorf("image %q, want Podman's fully qualified reference as is", got[0].Image)
	}
}

// podmanLog is a container's log as Podman keeps it (nanosecond times) and
// serves it: whole-second RFC 3339 timestamps, only the lines strictly after
// since (parsed as a float, as Podman does), and a line longer than conmon's
// 8 KiB read split into frames without a newline.
type podmanLog struct {
	mu    sync.Mutex
	lines []podmanLine
}

type podmanLine struct {
	at     time.Time
	stream int
	text   string // a frame's content; a line ends with "\n"
}

func (l *podmanLog) add(at time.Time, stream int, text string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, podmanLine{at, stream, text})
}

func (l *podmanLog) serve(lw *logWriter, r *http.Request) {
	var since time.Time
	if s := r.URL.Query().Get("since"); s != "" {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			http.Error(lw.w, err.Error(), http.StatusBadRequest)
			return
		}
		sec := int64(f)
		since = time.Unix(sec, int64((f-float64(sec))*1e9))
	}
	l.mu.Lock()
	lines := slices.Clone(l.lines)
	l.mu.Unlock()
	_ = lw.Start()
	for _, ln := range lines {
		if !since.IsZero() && !ln.at.After(since) {
			continue
		}
		out := lw.stdout
		if ln.stream == 2 {
			out = lw.stderr
		}
		_, _ = out.Write([]byte(ln.at.UTC().Format(time.RFC3339) + " " + ln.text))
	}
	_ = lw.Flush()
}

// TestPodmanReattach: bursts against Podman's log semantics lose and
// duplicate nothing: re-attaching within a second whose lines were partly
// read (the cursor's boundary is that whole second; Podman keeps only lines
// strictly after since), a line written exactly on the boundary's second,
// a start at the end of the log in the middle of a second
// (initial_position: end), and an 8 KiB-split line on stderr.
func TestPodmanReattach(t *testing.T) {
	d := newFakeDaemon(t)
	d.setContainer("c1", nonTTY("c1"))
	pl := &podmanLog{}
	d.setLogs(pl.serve)
	c := newTestClient(t, d, config.Docker{}, config.Bursts{IdleTimeout: 5 * time.Second, MaxBurst: time.Minute})
	cfg := testBursts(time.Minute)
	set := telemetry.NopSettings()
	sec := time.Date(2026, 11, 29, 23, 30, 54, 0, time.UTC)
	long := strings.Repeat("x", 8192)

	pl.add(sec.Add(-100*time.Millisecond), 1, "out 0\n")
	pl.add(sec.Add(100*time.Millisecond), 1, "out 1\n")
	pl.add(sec.Add(200*time.Millisecond), 2, "err 1\n")
	pl.add(sec.Add(300*time.Millisecond), 1, "out 2\n")
	pl.add(sec.Add(310*time.Millisecond), 2, long) // conmon's 8 KiB read: a partial frame
	pl.add(sec.Add(311*time.Millisecond), 2, "tail\n")

	read := func(cursor logs.Cursor) (collectors.BurstResult, []string) {
		t.Helper()
		sink := &recordingSink{}
		res := burst(t, c, sink, cfg, set, collectors.BurstSpec{ID: "c1", Follow: false, Cursor: cursor})
		if res.Err != nil || res.End != collectors.EndEOF {
			t.Fatalf("burst = %+v, want an EOF end without an error", res)
		}
		var bodies []string
		for _, r := range sink.got() {
			bodies = append(bodies, strconv.Itoa(int(r.Stream))+":"+r.Body)
		}
		return res, bodies
	}

	first, got := read(logs.BeginningCursor())
	if want := []string{"1:out 0", "1:out 1", "2:err 1", "1:out 2", "2:" + long + "tail"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("first read %.200q, want %.200q", got, want)
	}

	// More lines in the same second: only they arrive.
	pl.add(sec.Add(600*time.Millisecond), 1, "out 3\n")
	pl.add(sec.Add(700*time.Millisecond), 2, "err 2\n")
	second, got := read(first.Cursor)
	if want := []string{"1:out 3", "2:err 2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("re-attach in the same second got %.300q, want %q", got, want)
	}

	// A line written exactly on a whole second becomes the boundary; the
	// next one, on the same nanosecond, must not be cut by the strict since.
	pl.add(sec.Add(2*time.Second), 1, "out 4\n")
	pl.add(sec.Add(2*time.Second+time.Millisecond), 2, "err 3\n")
	third, got := read(second.Cursor)
	if want := []string{"1:out 4", "2:err 3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("third read got %q, want %q", got, want)
	}
	pl.add(sec.Add(2*time.Second), 1, "out 5\n")
	if _, got := read(third.Cursor); !reflect.DeepEqual(got, []string{"1:out 5"}) {
		t.Errorf("a line on the boundary's exact second: got %q, want [1:out 5]", got)
	}

	// initial_position: end, berth started at sec+0.5: the lines of the
	// seconds before are not sent; those of its own second are, all of
	// them (their timestamps cannot tell before from after, and berth
	// would rather send a line twice than lose it).
	from := sec.Add(500 * time.Millisecond)
	want := []string{"1:out 1", "2:err 1", "1:out 2", "2:" + long + "tail", "1:out 3", "2:err 2", "1:out 4", "2:err 3", "1:out 5"}
	if _, got := read(logs.EndCursor(from)); !reflect.DeepEqual(got, want) {
		t.Errorf("from the end at %v: got %.300q, want %.300q", from, got, want)
	}
}

// TestPodmanFollowAsksNoTail: Podman 4.3.1 loses the lines written while it
// reads a bounded tail before following, so a follow request to Podman
// (known by the Libpod-Api-Version header of its answers) is bounded by
// since alone; Docker's, and Podman's without follow, keep the tail.
func TestPodmanFollowAsksNoTail(t *testing.T) {
	for _, tc := range []struct {
		libpod string
		follow bool
		tail   string
	}{
		{"4.3.1", true, "all"},
		{"4.3.1", false, "100"},
		{"", true, "100"},
	} {
		d := newFakeDaemon(t)
		d.libpod = tc.libpod
		d.setContainer("c1", nonTTY("c1"))
		d.setLogs(func(lw *logWriter, _ *http.Request) { _ = lw.Start() })
		c := newTestClient(t, d, config.Docker{}, config.Bursts{})
		ctx := testCtx(t)
		if err := c.ping(ctx); err != nil {
			t.Fatal(err)
		}
		body, err := c.Logs(ctx, "c1", collectors.LogRequest{Follow: tc.follow, Tail: 100, Since: time.Unix(1700000000, 5)})
		if err != nil {
			t.Fatalf("Logs: %v", err)
		}
		_ = body.Close()
		r, _ := d.lastRequest("/containers/c1/logs")
		if got := r.Query["tail"]; !slices.Equal(got, []string{tc.tail}) {
			t.Errorf("libpod %q, follow %v: tail=%q, want %q", tc.libpod, tc.follow, got, tc.tail)
		}
	}
}
