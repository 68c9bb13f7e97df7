package dockerapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/berthlog/berth/collectors"
	"github.com/berthlog/berth/config"
)

// nonTTY is the inspect answer of a running, non-TTY container.
func nonTTY(id string) map[string]any {
	return map[string]any{
		"Id":     id,
		"Name":   "/" + id,
		"Config": map[string]any{"Tty": false, "Image": "app:1", "Labels": map[string]string{}},
		"State":  map[string]any{"Running": true, "Status": "running"},
	}
}

// readResult is how a reader goroutine's read of a body ended.
type readResult struct {
	data     []byte
	reads    int       // reads that returned bytes
	lastByte time.Time // when the last bytes arrived
	err      error
	at       time.Time // when the error came
}

// readAll reads body in its own goroutine, as a burst does, and reports how
// the read ended.
func readAll(body io.Reader) <-chan readResult {
	out := make(chan readResult, 1)
	go func() {
		var r readResult
		buf := make([]byte, 32*1024)
		for {
			n, err := body.Read(buf)
			if n > 0 {
				r.data = append(r.data, buf[:n]...)
				r.reads++
				r.lastByte = time.Now()
			}
			if err != nil {
				r.err, r.at = err, time.Now()
				out <- r
				return
			}
		}
	}()
	return out
}

// waitRead waits for a reader goroutine, failing the test if it does not
// return within limit: that would be the read that blocks forever.
func waitRead(t *testing.T, ch <-chan readResult, limit time.Duration) readResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(limit):
		t.Fatalf("the body's Read did not return within %v", limit)
		return readResult{}
	}
}

// TestLogsIdleDeadlineEndsStalledRead is the post-mortem's failure: a daemon
// that stops sending but keeps the response open. The read must end by itself
// with os.ErrDeadlineExceeded, not before IdleTimeout after the last byte and
// long before max_burst, and the reader goroutine and the connection must be
// gone.
//
// The tests in this file run against the fake daemon on a real unix socket,
// which a synctest bubble cannot hold; so they bound durations from below
// (a deadline never fires early) and from above only as far as the next
// deadline that could end the read instead (max_burst, a minute away): when
// the runtime wakes a reader on a loaded machine under -race is the
// scheduler's, not berth's. TestDeadlineConn pins the deadlines exactly.
func TestLogsIdleDeadlineEndsStalledRead(t *testing.T) {
	const (
		idle     = 300 * time.Millisecond
		maxBurst = time.Minute
	)
	d := newFakeDaemon(t)
	d.setContainer("c1", nonTTY("c1"))
	base := time.Date(2024, 5, 1, 10, 20, 30, 123456789, time.UTC)
	d.setLogs(func(lw *logWriter, _ *http.Request) {
		_ = lw.Frame(1, base, "one\n")
		_ = lw.Frame(2, base.Add(time.Millisecond), "two\n")
		lw.Stall()
	})
	c := newTestClient(t, d, config.Docker{}, config.Bursts{IdleTimeout: idle, MaxBurst: maxBurst})
	ctx := testCtx(t)

	before := goleak.IgnoreCurrent()
	body, err := c.Logs(ctx, "c1", collectors.LogRequest{Follow: true, Tail: collectors.TailAll})
	if err != nil {
		t.Fatalf("Logs: %v", err)
	}
	r := waitRead(t, readAll(body), maxBurst)
	_ = body.Close()

	if !errors.Is(r.err, os.ErrDeadlineExceeded) {
		t.Fatalf("read ended with %v, want os.ErrDeadlineExceeded", r.err)
	}
	if !bytes.Contains(r.data, []byte("one\n")) || !bytes.Contains(r.data, []byte("two\n")) {
		t.Fatalf("the frames before the stall were not read: %q", r.data)
	}
	silence := r.at.Sub(r.lastByte)
	if silence < idle-50*time.Millisecond {
		t.Errorf("the read ended %v after the last byte, before the idle timeout %v", silence, idle)
	}
	if silence > maxBurst/2 {
		t.Errorf("the read ended %v after the last byte, want the idle timeout %v, long before max_burst %v", silence, idle, maxBurst)
	}
	// The reader returned (it sent its result); the connection, the
	// transport's loops and the daemon's handler must be gone too.
	goleak.VerifyNone(t, before)
}

// TestLogsRequestIdle: a request that carries its own idle bound (a quiet
// container's burst) waits that long for a byte, not the client's
// idle_timeout; the next request without one has idle_timeout again.
func TestLogsRequestIdle(t *testing.T) {
	const (
		idle     = 200 * time.Millisecond
		quiet    = 900 * time.Millisecond
		maxBurst = time.Minute
	)
	d := newFakeDaemon(t)
	d.setContainer("c1", nonTTY("c1"))
	base := time.Date(2024, 5, 1, 10, 20, 30, 123456789, time.UTC)
	d.setLogs(func(lw *logWriter, _ *http.Request) {
		_ = lw.Frame(1, base, "one\n")
		lw.Stall()
	})
	c := newTestClient(t, d, config.Docker{}, config.Bursts{IdleTimeout: idle, MaxBurst: maxBurst})
	ctx := testCtx(t)
	// upto: the read must end before it (the other bound did not apply).
	for _, tc := range []struct {
		reqIdle, want, upto time.Duration
	}{{quiet, quiet, maxBurst / 2}, {0, idle, quiet}} {
		body, err := c.Logs(ctx, "c1", collectors.LogRequest{Follow: true, Tail: collectors.TailAll, Idle: tc.reqIdle})
		if err != nil {
			t.Fatalf("Logs: %v", err)
		}
		r := waitRead(t, readAll(body), maxBurst)
		_ = body.Close()
		if !errors.Is(r.err, os.ErrDeadlineExceeded) {
			t.Fatalf("read ended with %v, want os.ErrDeadlineExceeded", r.err)
		}
		silence := r.at.Sub(r.lastByte)
		if silence < tc.want-50*time.Millisecond || silence >= tc.upto {
			t.Errorf("request idle %v: the read ended %v after the last byte, want %v (before %v)", tc.reqIdle, silence, tc.want, tc.upto)
		}
	}
}

// TestLogsIdleDeadlineBeforeHeaders: a daemon that accepts the request but
// never answers it must not hold Logs forever either, and the error must say,
// by its type, that the connection's deadline passed (a burst then ends as an
// idle one), not that the daemon cannot be reached.
func TestLogsIdleDeadlineBeforeHeaders(t *testing.T) {
	const (
		idle     = 300 * time.Millisecond
		maxBurst = time.Minute
	)
	d := newFakeDaemon(t)
	d.setContainer("c1", nonTTY("c1"))
	d.setLogs(func(lw *logWriter, _ *http.Request) { lw.Stall() })
	c := newTestClient(t, d, config.Docker{}, config.Bursts{IdleTimeout: idle, MaxBurst: maxBurst})
	ctx := testCtx(t)
	// Negotiate first, so that only the logs request meets the stall.
	if err := c.ping(ctx); err != nil {
		t.Fatal(err)
	}
	before := goleak.IgnoreCurrent()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		body, err := c.Logs(ctx, "c1", collectors.LogRequest{Follow: true, Tail: collectors.TailAll})
		if err == nil {
			_ = body.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		el := time.Since(start)
		if err == nil {
			t.Fatal("Logs succeeded against a daemon that never answered")
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("Logs failed with %v, want an error that is os.ErrDeadlineExceeded", err)
		}
		if el < idle-50*time.Millisecond || el > maxBurst/2 {
			t.Errorf("Logs returned after %v, want the idle timeout %v, long before max_burst %v", el, idle, maxBurst)
		}
	case <-time.After(maxBurst):
		t.Fatal("Logs did not return from a daemon that never answers")
	}
	goleak.VerifyNone(t, before)
}

// TestLogsMaxBurst: a container that never goes quiet is still read in
// bounded bursts: the read ends with os.ErrDeadlineExceeded, not before
// MaxBurst after the dial, although bytes keep coming (so not at the idle
// deadline either: the last byte came just before the end).
func TestLogsMaxBurst(t *testing.T) {
	const (
		idle     = 5 * time.Second
		maxBurst = 600 * time.Millisecond
		every    = 5 * time.Millisecond
	)
	d := newFakeDaemon(t)
	d.setContainer("c1", nonTTY("c1"))
	base := time.Date(2024, 5, 1, 10, 20, 30, 0, time.UTC)
	d.setLogs(func(lw *logWriter, r *http.Request) {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; ; i++ {
			if err := lw.Frame(1, base.Add(time.Duration(i)*time.Millisecond), "tick\n"); err != nil {
				return
			}
			select {
			case <-tick.C:
			case <-r.Context().Done():
				return
			case <-lw.d.release:
				return
			}
		}
	})
	c := newTestClient(t, d, config.Docker{}, config.Bursts{IdleTimeout: idle, MaxBurst: maxBurst})
	ctx := testCtx(t)

	before := goleak.IgnoreCurrent()
	start := time.Now() // the dial comes after this
	body, err := c.Logs(ctx, "c1", collectors.LogRequest{Follow: true, Tail: collectors.TailAll})
	if err != nil {
		t.Fatalf("Logs: %v", err)
	}
	r := waitRead(t, readAll(body), maxBurst+10*time.Second)
	_ = body.Close()

	if !errors.Is(r.err, os.ErrDeadlineExceeded) {
		t.Fatalf("read ended with %v, want os.ErrDeadlineExceeded", r.err)
	}
	el := r.at.Sub(start)
	if el < maxBurst {
		t.Errorf("the burst ended %v after the request, before max_burst %v", el, maxBurst)
	}
	if n := bytes.Count(r.data, []byte("tick\n")); n < 10 {
		t.Errorf("read %d frames; the stream was not busy, so this is not a max_burst end", n)
	}
	if gap := r.at.Sub(r.lastByte); gap > idle/2 {
		t.Errorf("the last byte came %v before the end: an idle end, not max_burst", gap)
	}
	goleak.VerifyNone(t, before)
}

// TestLogsBurstsAreSeparateConnections: max_burst counts from each burst's
// own dial, not from the client's first connection: each burst lasts its idle
// timeout (250ms), which a later burst could not if its hard deadline were
// 400ms from the first burst's dial.
func TestLogsBurstsAreSeparateConnections(t *testing.T) {
	const (
		idle     = 250 * time.Millisecond
		maxBurst = 400 * time.Millisecond
	)
	d := newFakeDaemon(t)
	d.setContainer("c1", nonTTY("c1"))
	base := time.Date(2024, 5, 1, 10, 20, 30, 0, time.UTC)
	d.setLogs(func(lw *logWriter, _ *http.Request) {
		_ = lw.Frame(1, base, "x\n")
		lw.Stall()
	})
	c := newTestClient(t, d, config.Docker{}, config.Bursts{IdleTimeout: idle, MaxBurst: maxBurst})
	ctx := testCtx(t)
	for i := range 3 {
		start := time.Now()
		body, err := c.Logs(ctx, "c1", collectors.LogRequest{Follow: true, Tail: collectors.TailAll})
		if err != nil {
			t.Fatalf("burst %d: Logs: %v", i, err)
		}
		r := waitRead(t, readAll(body), 10*time.Second)
		_ = body.Close()
		if !errors.Is(r.err, os.ErrDeadlineExceeded) {
			t.Fatalf("burst %d ended with %v", i, r.err)
		}
		if !bytes.Contains(r.data, []byte("x\n")) {
			t.Fatalf("burst %d read %q", i, r.data)
		}
		if el := time.Since(start); el < idle-50*time.Millisecond {
			t.Errorf("burst %d ended after %v, before its idle timeout %v: its max_burst did not count from its own dial", i, el, idle)
		}
	}
}

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestDeadlineTransport: a round trip that ended at a connection deadline
// keeps its cause in the chain but, wrapped by http.Client in a *url.Error,
// no longer reports Timeout() (the Docker SDK would replace it with a bare
// "cannot connect"); any other error, a dial timeout included, is untouched.
func TestDeadlineTransport(t *testing.T) {
	readTimeout := &net.OpError{Op: "read", Net: "unix", Err: os.ErrDeadlineExceeded}
	dialTimeout := &net.OpError{Op: "dial", Net: "unix", Err: context.DeadlineExceeded}
	refused := &net.OpError{Op: "dial", Net: "unix", Err: errors.New("connection refused")}
	tests := []struct {
		name         string
		err          error
		wantDeadline bool
		wantTimeout  bool // what the *url.Error reports
	}{
		{"no response header before the read deadline", readTimeout, true, false},
		{"the same, wrapped by the transport", fmt.Errorf("net/http: HTTP/1.x transport connection broken: %w", readTimeout), true, false},
		{"dial timeout", dialTimeout, false, true},
		{"connection refused", refused, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc := keepDeadlines(&http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, tt.err })})
			req, err := http.NewRequest(http.MethodGet, "http://docker/_ping", nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = hc.Do(req)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Do failed with %v, want its cause %v in the chain", err, tt.err)
			}
			if got := errors.Is(err, os.ErrDeadlineExceeded); got != tt.wantDeadline {
				t.Errorf("errors.Is(%v, os.ErrDeadlineExceeded) = %v, want %v", err, got, tt.wantDeadline)
			}
			var ue *url.Error
			if !errors.As(err, &ue) {
				t.Fatalf("Do failed with %T, want a *url.Error", err)
			}
			if ue.Timeout() != tt.wantTimeout {
				t.Errorf("url.Error.Timeout() = %v, want %v", ue.Timeout(), tt.wantTimeout)
			}
		})
	}
}

func TestLogsRequestError(t *testing.T) {
	deadline := fmt.Errorf("read unix ->/run/docker.sock: %w", os.ErrDeadlineExceeded)
	for _, tc := range []struct {
		name         string
		err          error
		sent         bool
		wantDeadline bool
		wantText     string
	}{
		{"sent, no answer: an idle end", deadline, true, true, "no response header to the logs request within its idle deadline (2s)"},
		{"not sent: a fault", deadline, false, false, "the logs request could not be sent within its idle deadline (2s)"},
		{"another error is classified as before", errors.New("connection refused"), true, false, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := logsRequestError(tc.err, tc.sent, 2*time.Second)
			if got := errors.Is(err, os.ErrDeadlineExceeded); got != tc.wantDeadline {
				t.Errorf("errors.Is(%v, os.ErrDeadlineExceeded) = %v, want %v", err, got, tc.wantDeadline)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not say %q", err, tc.wantText)
			}
		})
	}
}
