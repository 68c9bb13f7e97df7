// Package faultproxy is a TCP proxy on 127.0.0.1 for tests of berth's OTLP
// export: it forwards OTLP/HTTP (HTTP/1.1) or OTLP/gRPC (HTTP/2 without TLS)
// to an upstream and, on demand, resets connections in the middle of a
// request's body.
//
// It reads the client's bytes frame by frame (HTTP/1.1: the header block, then
// a Content-Length or chunked body; HTTP/2: the preface, then frames), so it
// knows where each request's body is. While cutting, the first request body it
// meets is forwarded only in part (the request header and half of the body's
// first chunk or DATA frame) and then both connections are reset (SO_LINGER 0,
// then close: the peers get RST, not FIN). The upstream never holds that
// request whole, so it cannot have processed it; the client sees the
// connection reset while it waits for the answer.
//
// Every goroutine it starts is owned: Close closes the listener and every
// connection and waits for them.
package faultproxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Protocol is the framing of the client's bytes.
type Protocol int

const (
	// HTTP1 is HTTP/1.1 (OTLP/HTTP).
	HTTP1 Protocol = iota
	// HTTP2 is HTTP/2 with prior knowledge, without TLS (OTLP/gRPC).
	HTTP2
)

// CutAll, given to Cut, cuts every request until Cut(0).
const CutAll = -1

// Stats is what the proxy did.
type Stats struct {
	// Conns counts the client connections accepted.
	Conns int
	// Open is the number of connection pairs open now.
	Open int
	// Requests counts the requests forwarded whole to the upstream.
	Requests int
	// Cut counts the requests cut in their body (each with its connection).
	Cut int
}

// Proxy is a running proxy.
type Proxy struct {
	ln       net.Listener
	upstream string
	proto    Protocol

	mu     sync.Mutex
	cut    int // requests still to cut; CutAll: every one
	stats  Stats
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// Start listens on a free port of 127.0.0.1 and forwards each connection to
// upstream (host:port), whose protocol is p.
func Start(upstream string, p Protocol) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	px := &Proxy{ln: ln, upstream: upstream, proto: p, conns: map[net.Conn]struct{}{}}
	px.wg.Add(1)
	go px.accept()
	return px, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut makes the proxy cut the next n requests (CutAll: every request until
// Cut(0)); 0 stops cutting.
func (p *Proxy) Cut(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = n
}

// Stats returns what the proxy did so far.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Close stops accepting, closes every connection and waits for the proxy's
// goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = c.Close()
			_ = up.Close()
			return
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.stats.Conns++
		p.stats.Open++
		p.mu.Unlock()
		p.wg.Add(2)
		pr := &pair{p: p, client: c, up: up}
		go pr.forward()
		go pr.backward()
	}
}

// pair is one client connection and its upstream connection.
type pair struct {
	p          *Proxy
	client, up net.Conn
	once       sync.Once
}

// close closes both connections, with RST when reset.
func (pr *pair) close(reset bool) {
	pr.once.Do(func() {
		for _, c := range []net.Conn{pr.client, pr.up} {
			if tc, ok := c.(*net.TCPConn); ok && reset {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
		}
		pr.p.mu.Lock()
		delete(pr.p.conns, pr.client)
		delete(pr.p.conns, pr.up)
		pr.p.stats.Open--
		pr.p.mu.Unlock()
	})
}

// backward copies the upstream's bytes to the client.
func (pr *pair) backward() {
	defer pr.p.wg.Done()
	_, _ = io.Copy(pr.client, pr.up)
	pr.close(false)
}

// forward copies the client's bytes to the upstream, request by request,
// cutting a request when asked.
func (pr *pair) forward() {
	defer pr.p.wg.Done()
	br := bufio.NewReaderSize(pr.client, 64<<10)
	var err error
	if pr.p.proto == HTTP2 {
		err = pr.forwardHTTP2(br)
	} else {
		err = pr.forwardHTTP1(br)
	}
	pr.close(errors.Is(err, errCut))
}

// errCut ends forwarding after a cut.
var errCut = errors.New("request cut")

// takeCut reports whether the request whose body starts now is to be cut,
// and counts it.
func (p *Proxy) takeCut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut == 0 {
		return false
	}
	if p.cut > 0 {
		p.cut--
	}
	p.stats.Cut++
	return true
}

func (p *Proxy) countRequest() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Requests++
}

// forwardHTTP1 forwards HTTP/1.1 requests: a header block, then a body of
// Content-Length bytes or chunked.
func (pr *pair) forwardHTTP1(br *bufio.Reader) error {
	for {
		var hdr bytes.Buffer
		length, chunked := int64(0), false
		for first := true; ; first = false {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return err
			}
			hdr.Write(line)
			if len(bytes.TrimRight(line, "\r\n")) == 0 {
				break
			}
			if first {
				continue
			}
			k, v, _ := strings.Cut(string(bytes.TrimRight(line, "\r\n")), ":")
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "content-length":
				if length, err = strconv.ParseInt(strings.TrimSpace(v), 10, 64); err != nil {
					return fmt.Errorf("content-length %q: %w", v, err)
				}
			case "transfer-encoding":
				chunked = strings.Contains(strings.ToLower(v), "chunked")
			}
		}
		if (chunked || length > 0) && pr.p.takeCut() {
			// The header, then half of the body's first chunk.
			if chunked {
				size, err := br.ReadSlice('\n')
				if err != nil {
					return err
				}
				hdr.Write(size)
				n, err := strconv.ParseInt(strings.TrimSpace(strings.SplitN(string(size), ";", 2)[0]), 16, 64)
				if err != nil {
					return fmt.Errorf("chunk size %q: %w", size, err)
				}
				length = n
			}
			if _, err := io.CopyN(&hdr, br, (length+1)/2); err != nil {
				return err
			}
			_, _ = pr.up.Write(hdr.Bytes())
			return errCut
		}
		if _, err := pr.up.Write(hdr.Bytes()); err != nil {
			return err
		}
		if !chunked {
			if _, err := io.CopyN(pr.up, br, length); err != nil {
				return err
			}
			pr.p.countRequest()
			continue
		}
		for {
			size, err := br.ReadSlice('\n')
			if err != nil {
				return err
			}
			if _, err := pr.up.Write(size); err != nil {
				return err
			}
			n, err := strconv.ParseInt(strings.TrimSpace(strings.SplitN(string(size), ";", 2)[0]), 16, 64)
			if err != nil {
				return fmt.Errorf("chunk size %q: %w", size, err)
			}
			if n == 0 {
				break
			}
			if _, err := io.CopyN(pr.up, br, n+2); err != nil { // the data and its CRLF
				return err
			}
		}
		for { // trailers, up to the empty line
			line, err := br.ReadSlice('\n')
			if err != nil {
				return err
			}
			if _, err := pr.up.Write(line); err != nil {
				return err
			}
			if len(bytes.TrimRight(line, "\r\n")) == 0 {
				break
			}
		}
		pr.p.countRequest()
	}
}

// HTTP/2 frame types and flags the proxy reads.
const (
	frameData     = 0x0
	flagEndStream = 0x1
)

// forwardHTTP2 forwards the HTTP/2 client preface and frames; a request is
// a stream whose client half ends (END_STREAM on a DATA frame).
func (pr *pair) forwardHTTP2(br *bufio.Reader) error {
	preface := make([]byte, 24)
	if _, err := io.ReadFull(br, preface); err != nil {
		return err
	}
	if _, err := pr.up.Write(preface); err != nil {
		return err
	}
	buf := make([]byte, 9+16<<10)
	for {
		if _, err := io.ReadFull(br, buf[:9]); err != nil {
			return err
		}
		n := int(buf[0])<<16 | int(buf[1])<<8 | int(buf[2])
		if len(buf) < 9+n {
			buf = append(buf[:9], make([]byte, n)...)
		}
		frame := buf[:9+n]
		if _, err := io.ReadFull(br, frame[9:]); err != nil {
			return err
		}
		typ, flags := frame[3], frame[4]
		if typ == frameData && n >= 2 && pr.p.takeCut() {
			_, _ = pr.up.Write(frame[:9+n/2])
			return errCut
		}
		if _, err := pr.up.Write(frame); err != nil {
			return err
		}
		if typ == frameData && flags&flagEndStream != 0 {
			pr.p.countRequest()
		}
	}
}
