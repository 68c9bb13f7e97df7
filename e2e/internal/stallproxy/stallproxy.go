// Package stallproxy is a fault-injecting proxy for a Docker Engine API unix
// socket, used by berth's e2e tests.
//
// It listens on its own unix socket and forwards every client connection to
// the upstream socket. It reads each HTTP request the client sends (the Docker
// clients do not pipeline, so the bytes coming back belong to the latest
// request of the connection), records it, and can
//
//   - freeze the responses of logs requests for given containers: the bytes
//     from the daemon are held, not forwarded and not dropped, and the
//     connection is left open; Resume forwards them again;
//   - reject any method but GET and HEAD with 403 before it reaches upstream;
//   - tell when a client closed a connection, and how many requests of each
//     method and path it saw.
//
// Every goroutine it starts is owned: Close stops them and waits for them.
package stallproxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Request is one HTTP request a client sent through the proxy.
type Request struct {
	Conn      int // ConnInfo.ID
	Time      time.Time
	Method    string
	Path      string // as sent, with the API version prefix if any
	RawQuery  string
	Container string // the {id or name} of /containers/{id}/logs, else ""
	Logs      bool
	Rejected  bool // answered 403 by the proxy, never sent upstream
}

// Query returns the parsed query of the request.
func (r Request) Query() map[string][]string {
	q, _ := parseQuery(r.RawQuery)
	return q
}

// ConnInfo describes one client connection.
type ConnInfo struct {
	ID       int
	Opened   time.Time
	Closed   time.Time // when the connection ended, zero while open
	ByClient bool      // the client ended it (EOF or error reading from the client)
	// HeldSince is when the proxy first held daemon bytes of this connection
	// because of a freeze; zero if it never did.
	HeldSince     time.Time
	Requests      []int // indexes into Requests()
	BytesToClient int64
	LastToClient  time.Time // when the proxy last forwarded daemon bytes
	BytesHeld     int64     // bytes read from upstream, not yet forwarded (frozen)
}

// Proxy is a stalling proxy. Create it with New.
type Proxy struct {
	upstream string
	path     string
	ln       net.Listener

	mu       sync.Mutex
	frozen   map[string]bool
	changed  chan struct{} // closed and replaced whenever frozen changes
	reject   bool
	requests []Request
	conns    map[int]*conn
	order    []*conn
	nextID   int
	closed   bool

	wg sync.WaitGroup
}

type conn struct {
	info     ConnInfo
	client   net.Conn
	up       net.Conn
	current  *Request // latest request sent, guarded by Proxy.mu
	done     chan struct{}
	doneOnce sync.Once
	wmu      sync.Mutex // serialises writes to client
}

// New starts a proxy listening on dir/proxy.sock that forwards to the unix
// socket upstream.
func New(upstream, dir string) (*Proxy, error) {
	path := filepath.Join(dir, "proxy.sock")
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		upstream: upstream,
		path:     path,
		ln:       ln,
		frozen:   map[string]bool{},
		changed:  make(chan struct{}),
		conns:    map[int]*conn{},
	}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Path is the proxy's socket path.
func (p *Proxy) Path() string { return p.path }

// Host is the proxy as a DOCKER_HOST value: unix://<path>.
func (p *Proxy) Host() string { return "unix://" + p.path }

// RejectNonRead makes the proxy answer 403 to every method but GET and HEAD,
// without forwarding the request.
func (p *Proxy) RejectNonRead(on bool) {
	p.mu.Lock()
	p.reject = on
	p.mu.Unlock()
}

// Freeze holds the daemon's bytes of logs responses for the containers named
// by keys (ids, id prefixes of at least 12 characters, or names), on open
// connections and on new ones, until Resume.
func (p *Proxy) Freeze(keys ...string) {
	p.mu.Lock()
	for _, k := range keys {
		p.frozen[strings.TrimPrefix(k, "/")] = true
	}
	p.broadcastLocked()
	p.mu.Unlock()
}

// Resume forwards again what Freeze held for keys.
func (p *Proxy) Resume(keys ...string) {
	p.mu.Lock()
	for _, k := range keys {
		delete(p.frozen, strings.TrimPrefix(k, "/"))
	}
	p.broadcastLocked()
	p.mu.Unlock()
}

func (p *Proxy) broadcastLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Requests returns a copy of every request seen so far, in arrival order.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.requests...)
}

// LogsRequests returns the logs requests for the container key (see Freeze).
func (p *Proxy) LogsRequests(key string) []Request {
	var out []Request
	for _, r := range p.Requests() {
		if r.Logs && matches(r.Container, key) {
			out = append(out, r)
		}
	}
	return out
}

// Counts returns the number of requests per "METHOD /path" (API version
// prefix stripped).
func (p *Proxy) Counts() map[string]int {
	out := map[string]int{}
	for _, r := range p.Requests() {
		out[r.Method+" "+stripVersion(r.Path)]++
	}
	return out
}

// Methods returns the number of requests per method.
func (p *Proxy) Methods() map[string]int {
	out := map[string]int{}
	for _, r := range p.Requests() {
		out[r.Method]++
	}
	return out
}

// Conns returns a snapshot of every connection, in accept order.
func (p *Proxy) Conns() []ConnInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]ConnInfo, 0, len(p.order))
	for _, c := range p.order {
		ci := c.info
		ci.Requests = append([]int(nil), c.info.Requests...)
		out = append(out, ci)
	}
	return out
}

// Conn returns a snapshot of the connection id.
func (p *Proxy) Conn(id int) (ConnInfo, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.conns[id]
	if !ok {
		return ConnInfo{}, false
	}
	ci := c.info
	ci.Requests = append([]int(nil), c.info.Requests...)
	return ci, true
}

// Close stops accepting, ends every connection and waits for every goroutine
// of the proxy.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	conns := append([]*conn(nil), p.order...)
	p.mu.Unlock()
	err := p.ln.Close()
	for _, c := range conns {
		p.end(c, false)
	}
	p.wg.Wait()
	_ = os.Remove(p.path)
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		cl, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("unix", p.upstream)
		if err != nil {
			_ = cl.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = cl.Close()
			_ = up.Close()
			return
		}
		p.nextID++
		c := &conn{client: cl, up: up, done: make(chan struct{})}
		c.info.ID = p.nextID
		c.info.Opened = time.Now()
		p.conns[c.info.ID] = c
		p.order = append(p.order, c)
		p.wg.Add(2)
		p.mu.Unlock()
		go p.clientToUpstream(c)
		go p.upstreamToClient(c)
	}
}

// end closes both sides of c once. byClient records that the client ended it.
func (p *Proxy) end(c *conn, byClient bool) {
	c.doneOnce.Do(func() {
		p.mu.Lock()
		c.info.Closed = time.Now()
		c.info.ByClient = byClient
		p.mu.Unlock()
		close(c.done)
		_ = c.client.Close()
		_ = c.up.Close()
	})
}

func (p *Proxy) clientToUpstream(c *conn) {
	defer p.wg.Done()
	br := bufio.NewReader(c.client)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			select {
			case <-c.done: // we closed it
			default:
				p.end(c, true)
			}
			return
		}
		r := Request{
			Conn:     c.info.ID,
			Time:     time.Now(),
			Method:   req.Method,
			Path:     req.URL.Path,
			RawQuery: req.URL.RawQuery,
		}
		if id, ok := logsContainer(req.URL.Path); ok {
			r.Logs, r.Container = true, id
		}
		p.mu.Lock()
		rejecting := p.reject && req.Method != http.MethodGet && req.Method != http.MethodHead
		r.Rejected = rejecting
		p.requests = append(p.requests, r)
		idx := len(p.requests) - 1
		c.info.Requests = append(c.info.Requests, idx)
		rc := r
		c.current = &rc
		p.mu.Unlock()

		if rejecting {
			body := fmt.Sprintf(`{"message":"stallproxy: method %s refused"}`, req.Method)
			c.wmu.Lock()
			_, _ = fmt.Fprintf(c.client, "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
			c.wmu.Unlock()
			p.end(c, false)
			return
		}
		if err := req.Write(c.up); err != nil {
			p.end(c, false)
			return
		}
		if req.Header.Get("Upgrade") != "" {
			// hijacked stream: raw bytes from here on
			_, _ = io.Copy(c.up, br)
			p.end(c, true)
			return
		}
	}
}

func (p *Proxy) upstreamToClient(c *conn) {
	defer p.wg.Done()
	buf := make([]byte, 32*1024)
	for {
		n, err := c.up.Read(buf)
		if n > 0 {
			if !p.waitUnfrozen(c, n) {
				return
			}
			c.wmu.Lock()
			_, werr := c.client.Write(buf[:n])
			c.wmu.Unlock()
			p.mu.Lock()
			c.info.BytesToClient += int64(n)
			c.info.LastToClient = time.Now()
			p.mu.Unlock()
			if werr != nil {
				p.end(c, false)
				return
			}
		}
		if err != nil {
			p.end(c, false)
			return
		}
	}
}

// waitUnfrozen blocks while the connection's current request is frozen. It
// returns false when the connection ended meanwhile.
func (p *Proxy) waitUnfrozen(c *conn, n int) bool {
	held := false
	for {
		p.mu.Lock()
		frozen := c.current != nil && c.current.Logs && p.isFrozenLocked(c.current.Container)
		ch := p.changed
		if frozen && !held {
			held = true
			c.info.BytesHeld += int64(n)
			if c.info.HeldSince.IsZero() {
				c.info.HeldSince = time.Now()
			}
		}
		if !frozen && held {
			c.info.BytesHeld -= int64(n)
		}
		p.mu.Unlock()
		if !frozen {
			return true
		}
		select {
		case <-ch:
		case <-c.done:
			return false
		}
	}
}

func (p *Proxy) isFrozenLocked(container string) bool {
	for k := range p.frozen {
		if matches(container, k) {
			return true
		}
	}
	return false
}

// matches tells whether the container reference ref of a request designates
// key: equal, or one is an id prefix (>= 12 characters) of the other.
func matches(ref, key string) bool {
	ref = strings.TrimPrefix(ref, "/")
	key = strings.TrimPrefix(key, "/")
	if ref == "" || key == "" {
		return false
	}
	if ref == key {
		return true
	}
	if len(ref) >= 12 && strings.HasPrefix(key, ref) {
		return true
	}
	return len(key) >= 12 && strings.HasPrefix(ref, key)
}

var versionRe = regexp.MustCompile(`^/v[0-9]+\.[0-9]+/`)

func stripVersion(path string) string {
	if loc := versionRe.FindStringIndex(path); loc != nil {
		return path[loc[1]-1:]
	}
	return path
}

func logsContainer(path string) (string, bool) {
	parts := strings.Split(strings.Trim(stripVersion(path), "/"), "/")
	if len(parts) == 3 && parts[0] == "containers" && parts[2] == "logs" {
		return parts[1], true
	}
	return "", false
}

func parseQuery(raw string) (map[string][]string, error) {
	return url.ParseQuery(raw)
}
