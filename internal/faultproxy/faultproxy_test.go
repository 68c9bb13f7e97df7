package faultproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// bodyServer records every request body it read whole, and counts the
// bodies it could not read whole.
type bodyServer struct {
	mu      sync.Mutex
	bodies  []string
	partial int
}

func (s *bodyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.partial++
		return
	}
	s.bodies = append(s.bodies, string(b))
}

func (s *bodyServer) state() ([]string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bodies...), s.partial
}

// TestHTTP1: requests with a Content-Length body and chunked ones pass
// whole, on one kept-alive connection; a cut request reaches the upstream
// in part only, the client sees the connection reset, and the next request
// passes.
func TestHTTP1(t *testing.T) {
	backend := &bodyServer{}
	srv := httptest.NewServer(backend)
	defer srv.Close()
	px, err := Start(strings.TrimPrefix(srv.URL, "http://"), HTTP1)
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	post := func(body string, chunked bool) error {
		var r io.Reader = strings.NewReader(body)
		if chunked {
			r = io.MultiReader(r) // no length known: chunked
		}
		resp, err := client.Post("http://"+px.Addr()+"/v1/logs", "text/plain", r)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}
	big := strings.Repeat("x", 100<<10)
	for i, tc := range []struct {
		body    string
		chunked bool
	}{{"one", false}, {big, true}, {"three", true}, {big, false}} {
		if err := post(tc.body, tc.chunked); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if got, partial := backend.state(); len(got) != 4 || got[1] != big || got[2] != "three" || got[3] != big || partial != 0 {
		t.Fatalf("upstream read %d bodies whole (%d partial), want the 4 sent intact", len(got), partial)
	}
	if st := px.Stats(); st.Conns != 1 || st.Requests != 4 || st.Cut != 0 {
		t.Fatalf("stats %+v, want 4 requests on 1 connection", st)
	}
	for _, chunked := range []bool{false, true} {
		px.Cut(1)
		err := post(big, chunked)
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("cut request (chunked %v): %v, want connection reset", chunked, err)
		}
		if err := post("after", chunked); err != nil {
			t.Fatalf("the request after the cut: %v", err)
		}
	}
	waitFor(t, func() bool { _, partial := backend.state(); return partial == 2 })
	if got, _ := backend.state(); len(got) != 6 || got[4] != "after" || got[5] != "after" {
		t.Fatalf("upstream bodies %d, want the 4 and the 2 after the cuts, none of the cut ones", len(got))
	}
	if st := px.Stats(); st.Cut != 2 || st.Requests != 6 {
		t.Fatalf("stats %+v, want 6 requests and 2 cut", st)
	}
}

// TestHTTP2: gRPC calls pass; a cut one fails Unavailable and the next
// passes; CutAll cuts until Cut(0).
func TestHTTP2(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	defer func() {
		srv.Stop()
		<-done
	}()
	px, err := Start(ln.Addr().String(), HTTP2)
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	cc, err := grpc.NewClient(px.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	check := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: ""})
		return err
	}
	if err := check(); err != nil {
		t.Fatal(err)
	}
	px.Cut(1)
	if err := check(); status.Code(err) != codes.Unavailable {
		t.Fatalf("cut call: %v, want Unavailable", err)
	}
	if err := check(); err != nil {
		t.Fatalf("the call after the cut: %v", err)
	}
	px.Cut(CutAll)
	for range 3 {
		if err := check(); status.Code(err) != codes.Unavailable {
			t.Fatalf("call while cutting all: %v, want Unavailable", err)
		}
	}
	px.Cut(0)
	if err := check(); err != nil {
		t.Fatalf("after Cut(0): %v", err)
	}
	if st := px.Stats(); st.Cut != 4 || st.Requests != 3 || st.Conns != 5 {
		t.Fatalf("stats %+v, want 3 requests, 4 cut, 5 connections", st)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
