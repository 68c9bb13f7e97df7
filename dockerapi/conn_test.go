package dockerapi

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"testing/synctest"
	"time"
)

// TestDeadlineConn pins the deadline policy exactly, on an in-memory
// connection in a synctest bubble (the tests against the fake daemon use a
// real socket, whose timing the runtime's scheduler decides): every Read
// waits at most idle, never past the connection's lifetime from its dial,
// and a Write gives a Read that is already waiting the whole idle timeout
// from the write.
func TestDeadlineConn(t *testing.T) {
	const idle = 30 * time.Second

	t.Run("idle", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			client, server := net.Pipe()
			defer server.Close()
			c := newDeadlineConn(client, deadlinePolicy{idle: idle})
			defer c.Close()
			go func() {
				time.Sleep(idle - time.Nanosecond) // just in time
				_, _ = server.Write([]byte("x"))
			}()
			buf := make([]byte, 8)
			if n, err := c.Read(buf); n != 1 || err != nil {
				t.Fatalf("a byte idle-1ns after the read began: Read = %d, %v", n, err)
			}
			start := time.Now()
			_, err := c.Read(buf)
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("silence: Read = %v, want os.ErrDeadlineExceeded", err)
			}
			if el := time.Since(start); el != idle {
				t.Errorf("the silent Read ended after %v, want exactly idle %v", el, idle)
			}
		})
	})

	t.Run("lifetime", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			const lifetime = 5 * time.Minute
			client, server := net.Pipe()
			defer server.Close()
			dial := time.Now()
			c := newDeadlineConn(client, deadlinePolicy{idle: idle, lifetime: lifetime})
			defer c.Close()
			wrote := make(chan struct{})
			go func() {
				defer close(wrote)
				// A busy stream: a byte every second (at half past), never
				// idle.
				time.Sleep(time.Second / 2)
				for {
					if _, err := server.Write([]byte("x")); err != nil {
						return
					}
					time.Sleep(time.Second)
				}
			}()
			buf := make([]byte, 8)
			reads := 0
			for {
				_, err := c.Read(buf)
				if err != nil {
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						t.Fatalf("Read = %v, want os.ErrDeadlineExceeded", err)
					}
					break
				}
				reads++
			}
			if el := time.Since(dial); el != lifetime {
				t.Errorf("the busy connection's Read ended %v after the dial, want exactly its lifetime %v", el, lifetime)
			}
			if reads != int(lifetime/time.Second) {
				t.Errorf("%d reads before the lifetime ended, want one a second", reads)
			}
			_ = c.Close() // ends the writer
			<-wrote
		})
	})

	t.Run("a write re-arms the waiting read", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			client, server := net.Pipe()
			defer server.Close()
			c := newDeadlineConn(client, deadlinePolicy{idle: idle})
			defer c.Close()
			// The kept-alive connection's Read has waited since it went
			// idle, with the deadline armed then.
			type result struct {
				n   int
				err error
				at  time.Time
			}
			read := make(chan result, 1)
			go func() {
				buf := make([]byte, 8)
				n, err := c.Read(buf)
				read <- result{n, err, time.Now()}
			}()
			go func() {
				// The daemon reads the request and answers it 20s later.
				req := make([]byte, 8)
				if _, err := io.ReadFull(server, req[:3]); err != nil {
					return
				}
				time.Sleep(20 * time.Second)
				_, _ = server.Write([]byte("ok"))
			}()
			time.Sleep(idle - time.Second) // a request shortly before the old deadline
			sent := time.Now()
			if _, err := c.Write([]byte("GET")); err != nil {
				t.Fatalf("Write: %v", err)
			}
			r := <-read
			if r.err != nil || r.n != 2 {
				t.Fatalf("the waiting Read = %d, %v; want the answer, 20s after the request (within idle of it)", r.n, r.err)
			}
			if el := r.at.Sub(sent); el != 20*time.Second {
				t.Errorf("answer read %v after the request, want exactly 20s", el)
			}
		})
	})
}
