package dockerapi

import (
	"context"
	"net"
	"time"
)

// deadlinePolicy bounds every read and write on a connection.
type deadlinePolicy struct {
	// idle is how long one Read or Write may wait. Each call arms a fresh
	// deadline, so it bounds silence, not a whole response.
	idle time.Duration
	// lifetime, if set, bounds the connection from its dial: no Read may
	// wait past dial time + lifetime (a burst's max_burst).
	lifetime time.Duration
}

// deadlineConn arms a deadline before every Read and Write. When it passes,
// the runtime poller wakes the call with os.ErrDeadlineExceeded: no read on
// this connection can block longer than the policy allows, whoever holds it.
type deadlineConn struct {
	net.Conn
	policy deadlinePolicy
	hard   time.Time // zero: no lifetime bound
}

func (c *deadlineConn) deadline() time.Time {
	d := time.Now().Add(c.policy.idle)
	if !c.hard.IsZero() && c.hard.Before(d) {
		d = c.hard
	}
	return d
}

// Read arms the read deadline, then reads.
func (c *deadlineConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(c.deadline()); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

// Write arms the write deadline and re-arms the read deadline, then writes.
// On a kept-alive connection the answer to a request is read by a Read that
// has been waiting since the connection went idle, with a deadline armed
// then; re-arming it gives the answer the whole idle timeout from the
// request. (Without it the first attempt times out early and the transport
// silently sends the request again on a new connection.)
func (c *deadlineConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetDeadline(c.deadline()); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// dialer dials the daemon's endpoint itself, whatever address the HTTP
// transport asks for, and wraps the connection in the policy.
type dialer struct {
	network, address string
	policy           deadlinePolicy
	timeout          time.Duration
}

// DialContext dials the daemon and wraps the connection in the policy, with
// the idle bound of the request that dials it if it carries one (withIdle).
func (d dialer) DialContext(ctx context.Context, _, _ string) (net.Conn, error) {
	nd := net.Dialer{Timeout: d.timeout}
	conn, err := nd.DialContext(ctx, d.network, d.address)
	if err != nil {
		return nil, err
	}
	p := d.policy
	if idle, ok := ctx.Value(idleKey{}).(time.Duration); ok && idle > 0 {
		p.idle = idle
	}
	return newDeadlineConn(conn, p), nil
}

// idleKey is the context key of a request's idle bound.
type idleKey struct{}

// withIdle makes the connection a request dials bound each read by idle
// instead of its client's policy. Only a client that dials a connection per
// request (no keep-alive: the log bursts') may be given such a request: the
// transport dials with the request's context values.
func withIdle(ctx context.Context, idle time.Duration) context.Context {
	return context.WithValue(ctx, idleKey{}, idle)
}

// newDeadlineConn wraps a connection that was just dialled in the policy: its
// lifetime, if any, counts from now.
func newDeadlineConn(conn net.Conn, policy deadlinePolicy) *deadlineConn {
	dc := &deadlineConn{Conn: conn, policy: policy}
	if policy.lifetime > 0 {
		dc.hard = time.Now().Add(policy.lifetime)
	}
	return dc
}
