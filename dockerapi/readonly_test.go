package dockerapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/berthlog/berth/collectors"
	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/events"
)

// sdkOf is the SDK client behind an engine, for the tests that show what the
// transport does with calls berth never makes.
func sdkOf(t *testing.T, e engine) *client.Client {
	t.Helper()
	c, ok := e.(*client.Client)
	if !ok {
		t.Fatalf("engine is a %T, not the SDK client", e)
	}
	return c
}

// TestEngineIsReadOnly: the SDK calls berth can make are exactly these reads.
// A new one is a new call to the daemon: add it here only if it is a GET or
// HEAD that does not hijack the connection (no attach, exec, or any call
// that upgrades or dials the daemon itself), and give it a case in
// TestEveryClientMethodOnlyReads.
func TestEngineIsReadOnly(t *testing.T) {
	allowed := []string{
		"ClientVersion", "Close", "ContainerInspect", "ContainerList", "ContainerLogs",
		"ImageInspect", "NegotiateAPIVersionPing", "Ping",
	}
	typ := reflect.TypeFor[engine]()
	var got []string
	for i := range typ.NumMethod() {
		got = append(got, typ.Method(i).Name)
	}
	if !slices.Equal(got, allowed) {
		t.Errorf("engine has the methods %v, want exactly %v", got, allowed)
	}
	for _, name := range got {
		for _, banned := range []string{"Attach", "Exec", "Hijack", "Dialer", "Create", "Start", "Stop", "Kill", "Remove", "Update", "Pause", "Copy", "Commit", "Prune"} {
			if strings.Contains(name, banned) {
				t.Errorf("engine has %s: berth never calls a %s", name, banned)
			}
		}
	}
	// The Client's own fields hold the SDK only as engines.
	ct := reflect.TypeFor[Client]()
	sdk := reflect.TypeFor[*client.Client]()
	for i := range ct.NumField() {
		f := ct.Field(i)
		if f.Type == sdk {
			t.Errorf("Client.%s is a %v: hold it as an engine, so that no code reaches the SDK's writes", f.Name, f.Type)
		}
		if f.IsExported() {
			t.Errorf("Client.%s is exported: the adapter's state must not be reachable from outside", f.Name)
		}
	}
}

// TestEveryClientMethodOnlyReads calls every exported method of Client
// against a fake daemon that records each request, and checks that the
// daemon saw nothing but GET and HEAD. A new method with a parameter type the
// test does not know fails here until it is given a value.
func TestEveryClientMethodOnlyReads(t *testing.T) {
	d := newFakeDaemon(t)
	d.setContainer("c1", nonTTY("c1"))
	d.setList([]map[string]any{{"Id": "c1", "Names": []string{"/c1"}, "State": "running"}})
	base := time.Date(2024, 5, 1, 10, 20, 30, 0, time.UTC)
	d.setLogs(func(lw *logWriter, _ *http.Request) {
		_ = lw.Frame(1, base, "hello\n")
	})
	d.setEvents(func(ew *eventWriter, _ *http.Request) {
		_ = ew.Send(map[string]any{"Type": "container", "Action": "start", "Actor": map[string]any{"ID": "c1"}, "timeNano": base.UnixNano()})
	})
	c := newTestClient(t, d, config.Docker{}, config.Bursts{})
	ctx := testCtx(t)

	args := map[reflect.Type]reflect.Value{
		reflect.TypeFor[context.Context]():       reflect.ValueOf(ctx),
		reflect.TypeFor[string]():                reflect.ValueOf("c1"),
		reflect.TypeFor[time.Time]():             reflect.ValueOf(base.Add(-time.Hour)),
		reflect.TypeFor[collectors.LogRequest](): reflect.ValueOf(collectors.LogRequest{Since: base.Add(-time.Hour), Tail: collectors.TailAll}),
	}
	cv := reflect.ValueOf(c)
	ct := cv.Type()
	var called []string
	closeLast := false
	for i := range ct.NumMethod() {
		m := ct.Method(i)
		if m.Name == "Close" {
			closeLast = true // after the others: it ends the client
			continue
		}
		in := []reflect.Value{}
		for j := 0; j < m.Type.NumIn()-1; j++ {
			pt := m.Type.In(j + 1)
			v, ok := args[pt]
			if !ok {
				t.Fatalf("Client.%s takes a %v: give the test a value for it", m.Name, pt)
			}
			in = append(in, v)
		}
		out := cv.Method(i).Call(in)
		called = append(called, m.Name)
		if errv := out[len(out)-1]; errv.Type() == reflect.TypeFor[error]() && !errv.IsNil() {
			t.Errorf("Client.%s: %v", m.Name, errv.Interface())
			continue
		}
		// Use what a method returned as berth does: read a log to its end,
		// take an event, then close.
		for _, o := range out {
			switch r := o.Interface().(type) {
			case events.EventStream:
				if _, err := r.Next(); err != nil {
					t.Errorf("Client.%s: Next: %v", m.Name, err)
				}
				_ = r.Close()
			case io.ReadCloser:
				if _, err := io.Copy(io.Discard, r); err != nil {
					t.Errorf("Client.%s: read: %v", m.Name, err)
				}
				_ = r.Close()
			}
		}
	}
	if closeLast {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		called = append(called, "Close")
	}
	t.Logf("called %v", called)
	if len(called) < 5 {
		t.Errorf("called only %v: the walk missed Client's methods", called)
	}
	seen := d.seen()
	if len(seen) == 0 {
		t.Fatal("the fake daemon saw no request")
	}
	paths := map[string]bool{}
	for _, r := range seen {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			t.Errorf("the daemon received %s %s", r.Method, r.Path)
		}
		paths[r.Path[strings.LastIndexByte(r.Path, '/'):]] = true
	}
	for _, p := range []string{"/_ping", "/json", "/logs", "/events"} {
		if !paths[p] {
			t.Errorf("no request to .../%s reached the daemon (saw %v): the walk did not exercise every call", p, seen)
		}
	}
}

// TestSDKHijackBypassesTheTransport documents why Client holds the SDK only
// as an engine: the SDK's hijacked calls (attach, exec attach) dial the
// daemon themselves and write their POST on the raw connection, so
// readOnlyTransport never sees them. If this test starts failing, the SDK
// no longer bypasses the transport; engine remains the guard either way.
func TestSDKHijackBypassesTheTransport(t *testing.T) {
	d := newFakeDaemon(t)
	d.setContainer("c1", nonTTY("c1"))
	c := newTestClient(t, d, config.Docker{}, config.Bursts{})
	ctx := testCtx(t)
	if err := c.ping(ctx); err != nil {
		t.Fatal(err)
	}
	resp, err := sdkOf(t, c.control).ContainerAttach(ctx, "c1", container.AttachOptions{Stream: true, Stdin: true})
	if err == nil {
		resp.Close()
	}
	if errors.Is(err, errMethodRefused) {
		t.Skip("the transport refused the attach: the SDK no longer bypasses it")
	}
	var attached bool
	for _, r := range d.seen() {
		if r.Method == http.MethodPost && strings.HasSuffix(r.Path, "/attach") {
			attached = true
		}
	}
	if !attached {
		t.Fatalf("the attach did not reach the daemon (err %v): the SDK no longer bypasses the transport; update engine's comment", err)
	}
}
