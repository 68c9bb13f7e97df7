package stallproxy

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// upstream is a fake daemon: /containers/{id}/logs streams "line N" every
// 5 ms until the client goes away.
type upstream struct {
	srv     *http.Server
	ln      net.Listener
	wg      sync.WaitGroup
	mu      sync.Mutex
	written map[string]int
	posts   atomic.Int32
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "up.sock"))
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{ln: ln, written: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.41/containers/{id}/logs", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		fl := w.(http.Flusher)
		w.WriteHeader(200)
		fl.Flush()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
			u.mu.Lock()
			n := u.written[id]
			u.written[id] = n + 1
			u.mu.Unlock()
			if _, err := fmt.Fprintf(w, "line %d\n", n); err != nil {
				return
			}
			fl.Flush()
		}
	})
	mux.HandleFunc("POST /v1.41/containers/{id}/kill", func(w http.ResponseWriter, r *http.Request) {
		u.posts.Add(1)
		w.WriteHeader(204)
	})
	u.srv = &http.Server{Handler: mux}
	u.wg.Add(1)
	go func() { defer u.wg.Done(); _ = u.srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = u.srv.Close()
		u.wg.Wait()
	})
	return u
}

func (u *upstream) count(id string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.written[id]
}

var lineRe = regexp.MustCompile(`line (\d+)\n`)

// stream is a raw HTTP client connection reading a logs response.
type stream struct {
	c    net.Conn
	br   *bufio.Reader
	seen []int
	buf  strings.Builder
}

func openLogs(t *testing.T, sock, id string) *stream {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := fmt.Fprintf(c, "GET /v1.41/containers/%s/logs?follow=1 HTTP/1.1\r\nHost: docker\r\n\r\n", id); err != nil {
		t.Fatal(err)
	}
	return &stream{c: c, br: bufio.NewReader(c)}
}

// readFor reads until d passes without a byte or until total elapses; it
// returns the number of bytes read.
func (s *stream) readFor(idle, total time.Duration) int {
	end := time.Now().Add(total)
	got := 0
	b := make([]byte, 4096)
	for time.Now().Before(end) {
		dl := time.Now().Add(idle)
		if dl.After(end) {
			dl = end
		}
		_ = s.c.SetReadDeadline(dl)
		n, err := s.br.Read(b)
		got += n
		s.buf.Write(b[:n])
		if err != nil {
			break
		}
	}
	for _, m := range lineRe.FindAllStringSubmatch(s.buf.String(), -1) {
		v, _ := strconv.Atoi(m[1])
		s.seen = append(s.seen, v)
	}
	rest := s.buf.String()
	if i := strings.LastIndexByte(rest, '\n'); i >= 0 {
		rest = rest[i+1:]
	}
	s.buf.Reset()
	s.buf.WriteString(rest)
	return got
}

func (s *stream) max() int {
	if len(s.seen) == 0 {
		return -1
	}
	return s.seen[len(s.seen)-1]
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFreezeResumeReject(t *testing.T) {
	u := newUpstream(t)
	p, err := New(u.ln.Addr().String(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	a := openLogs(t, p.Path(), "abc")
	b := openLogs(t, p.Path(), "other")
	if n := a.readFor(500*time.Millisecond, 300*time.Millisecond); n == 0 {
		t.Fatal("no bytes before freeze")
	}

	p.Freeze("abc")
	a.readFor(200*time.Millisecond, 2*time.Second) // drain what was in flight
	before := u.count("abc")
	if n := a.readFor(500*time.Millisecond, 500*time.Millisecond); n != 0 {
		t.Fatalf("frozen stream delivered %d bytes", n)
	}
	if u.count("abc") < before+20 {
		t.Fatalf("upstream did not keep writing: %d -> %d", before, u.count("abc"))
	}
	if n := b.readFor(500*time.Millisecond, 300*time.Millisecond); n == 0 {
		t.Fatal("a freeze of abc stopped other")
	}
	ci, _ := p.Conn(1)
	if ci.HeldSince.IsZero() || ci.BytesHeld == 0 {
		t.Fatalf("conn 1 not held: %+v", ci)
	}

	p.Resume("abc")
	target := u.count("abc") + 5
	waitFor(t, "resumed lines", 5*time.Second, func() bool {
		a.readFor(100*time.Millisecond, 100*time.Millisecond)
		return a.max() >= target
	})
	for i, v := range a.seen {
		if v != i {
			t.Fatalf("gap or duplicate after resume at index %d: got line %d", i, v)
		}
	}

	// A client that closes a frozen connection is seen closing it.
	p.Freeze("abc")
	a.readFor(200*time.Millisecond, 2*time.Second)
	_ = a.c.Close()
	waitFor(t, "client close of conn 1 recorded", 2*time.Second, func() bool {
		ci, _ := p.Conn(1)
		return !ci.Closed.IsZero() && ci.ByClient
	})

	// Methods other than GET/HEAD are refused before upstream.
	p.RejectNonRead(true)
	c, err := net.Dial("unix", p.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1.41/containers/abc/kill HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("POST: status %d, want 403", resp.StatusCode)
	}
	if u.posts.Load() != 0 {
		t.Fatal("POST reached upstream")
	}
	if m := p.Methods(); m["POST"] != 1 || m["GET"] != 2 {
		t.Fatalf("methods %v", m)
	}
	if got := p.Counts()["GET /containers/abc/logs"]; got != 1 {
		t.Fatalf("counts %v", p.Counts())
	}
	if r := p.LogsRequests("abc"); len(r) != 1 || r[0].Query()["follow"][0] != "1" {
		t.Fatalf("logs requests %+v", r)
	}
}
