//go:build e2e

package e2e

// Tests of the harness itself against Docker, without berth: the generator
// and its image, the ground-truth reader, the stalling proxy.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/berthlog/berth/e2e/internal/lines"
	"github.com/berthlog/berth/e2e/internal/stallproxy"
)

// asRecords turns daemon log lines into records (no resource) for the
// sequence checks.
func asRecords(ls []LogLine) []Record {
	out := make([]Record, len(ls))
	for i, l := range ls {
		out[i] = Record{Body: l.Body, Attributes: map[string]any{"log.iostream": l.Stream}, Line: i + 1}
	}
	return out
}

func TestHarnessLoggen(t *testing.T) {
	needDocker(t)

	t.Run("shared-sequence", func(t *testing.T) {
		c := runContainer(t, ContainerSpec{Args: []string{"-n", "700", "-stderr-every", "7", "-size", "120"}})
		c.waitExited(t, time.Minute)
		ls := dockerLog(t, c)
		if len(ls) != 700 {
			t.Fatalf("daemon has %d lines, want 700", len(ls))
		}
		checkSharedSeqs(t, c, asRecords(ls), 700, 7)
	})

	t.Run("both-streams", func(t *testing.T) {
		c := runContainer(t, ContainerSpec{Args: []string{"-both", "-n", "5000"}})
		c.waitExited(t, time.Minute)
		g := checkPerStream(t, c, asRecords(dockerLog(t, c)), map[string]int{lines.Out: 5000, lines.Err: 5000})
		if len(g) != 2 {
			t.Fatalf("groups %v", len(g))
		}
	})

	// What Docker 20.10 does with special lines, per log driver (the tests
	// of berth rely on it; see specialCase):
	//   json-file stores a line as a JSON string: it replaces invalid UTF-8
	//     (and so both halves of a character cut by the 16 KiB split) with
	//     U+FFFD; line boundaries are kept.
	//   local stores bytes exactly, but drops the newline after the last chunk
	//     of a split line (fixed in later engines), so the next line is glued
	//     to it; loggen -empty-after-big writes an empty line that restores
	//     the boundary.
	for _, sc := range specialCases {
		t.Run("special-lines-"+sc.name, func(t *testing.T) {
			c := runContainer(t, ContainerSpec{Tty: sc.tty, LogDriver: sc.driver, Args: sc.args})
			info := c.waitExited(t, time.Minute)
			ls := dockerLog(t, c)
			run := mustParse(t, ls[0].Body).Run
			want := sc.lines(run)
			if len(ls) != len(want) {
				t.Fatalf("daemon has %d lines, want %d", len(ls), len(want))
			}
			exact := true
			for i := range want {
				if ls[i].Body != want[i] {
					exact = false
					if sc.exact {
						t.Errorf("line %d (%d bytes): the daemon returns %d bytes, equal prefix %d", i, len(want[i]), len(ls[i].Body), commonPrefix(ls[i].Body, want[i]))
					}
				}
			}
			t.Logf("%s: the daemon returns the generator's exact bytes: %v", sc.name, exact)
			if sc.driver == "json-file" {
				chunks := jsonFileEntries(t, info.LogPath, 2)
				t.Logf("json-file entries of the 20 KiB line: %d-byte chunk ending %q, then %d bytes starting %q",
					len(chunks[0]), tailOf(chunks[0], 3), len(chunks[1]), headOf(chunks[1], 6))
			}
		})
	}
}

// specialCase is a container writing big, empty and invalid UTF-8 lines.
type specialCase struct {
	name   string
	driver string
	tty    bool
	args   []string
	// exact: the daemon returns the generator's bytes (local driver).
	exact bool
	// lines is what the daemon's log holds, line by line, for the run.
	lines func(run string) []string
}

var bigSizes = []int{20480, 204800, 3145728}

// jsonFileLines: big lines of 20 KiB, 200 KiB and 3 MiB (seq 0-2), an empty
// line, an invalid UTF-8 line (seq 3), and 3 normal lines (seq 4-6). The
// daemon's version has U+FFFD where the generator wrote invalid bytes.
func jsonFileLines(run string) []string {
	return []string{
		lines.Big(run, lines.Out, 0, bigSizes[0]),
		lines.Big(run, lines.Out, 1, bigSizes[1]),
		lines.Big(run, lines.Out, 2, bigSizes[2]),
		"",
		lines.InvalidUTF8(run, lines.Out, 3),
		lines.Format(run, lines.Out, 4, 0),
		lines.Format(run, lines.Out, 5, 0),
		lines.Format(run, lines.Out, 6, 0),
	}
}

// localLines: the same without the empty line, which -empty-after-big
// spends on restoring the split lines' ends.
func localLines(run string) []string {
	l := jsonFileLines(run)
	return append(l[:3:3], l[4:]...)
}

var specialCases = []specialCase{
	{name: "json-file", driver: "json-file", args: []string{"-line-sizes", "20480,204800,3145728", "-empty", "-invalid-utf8", "-n", "3"}, lines: jsonFileLines},
	{name: "json-file-tty", driver: "json-file", tty: true, args: []string{"-line-sizes", "20480,204800,3145728", "-empty", "-invalid-utf8", "-n", "3"}, lines: jsonFileLines},
	// TTY is left out with local: the empty line would leave a "\r" behind.
	{name: "local", driver: "local", exact: true, args: []string{"-line-sizes", "20480,204800,3145728", "-empty-after-big", "-invalid-utf8", "-n", "3"}, lines: localLines},
}

func mustParse(t *testing.T, s string) lines.Parsed {
	t.Helper()
	p, ok := lines.Parse(s)
	if !ok {
		t.Fatalf("not a loggen line: %.100q", s)
	}
	return p
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

func tailOf(s string, n int) string {
	if len(s) < n {
		return s
	}
	return s[len(s)-n:]
}

func headOf(s string, n int) string {
	if len(s) < n {
		return s
	}
	return s[:n]
}

// jsonFileEntries returns the "log" fields of the first n entries of a
// json-file log.
func jsonFileEntries(t *testing.T, path string, n int) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("opening the json-file log: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	var out []string
	for len(out) < n && sc.Scan() {
		var e struct{ Log string }
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e.Log)
	}
	return out
}

// followReader reads a follow logs stream on its own goroutine and records
// the sequence numbers it sees. Stop it by cancelling its context.
type followReader struct {
	mu     sync.Mutex
	seqs   []int
	bytes  int
	done   chan struct{}
	err    error
	cancel context.CancelFunc
}

func (f *followReader) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bytes += len(p)
	for _, l := range strings.Split(string(p), "\n") {
		if pr, ok := lines.Parse(l); ok {
			f.seqs = append(f.seqs, pr.Seq)
		}
	}
	return len(p), nil
}

func (f *followReader) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.seqs)
}

func startFollow(t *testing.T, cli *client.Client, c *Ctr) *followReader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	headers := time.AfterFunc(20*time.Second, cancel) // bound the wait for the response headers
	rc, err := cli.ContainerLogs(ctx, c.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: true})
	if !headers.Stop() || err != nil {
		cancel()
		t.Fatalf("logs follow %s: no response within 20s or error: %v", c.Name, err)
	}
	f := &followReader{done: make(chan struct{}), cancel: cancel}
	go func() { // owned: ends at EOF or when cancel closes the connection
		defer close(f.done)
		defer rc.Close()
		// each write from stdcopy is one frame: one whole line here
		_, f.err = stdcopy.StdCopy(f, f, rc)
	}()
	t.Cleanup(func() { cancel(); <-f.done })
	return f
}

func TestHarnessProxy(t *testing.T) {
	needDocker(t)
	p, err := stallproxy.New(suite.sock, testDir(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	pc, err := client.NewClientWithOpts(client.WithHost(p.Host()), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })

	c := runContainer(t, ContainerSpec{Args: []string{"-n", "0", "-rate", "200"}})
	f := startFollow(t, pc, c)
	waitFor(t, "20 lines through the proxy", 20*time.Second, func() (bool, string) {
		return f.count() >= 20, fmt.Sprint(f.count())
	})
	logs := p.LogsRequests(c.ID)
	if len(logs) != 1 {
		t.Fatalf("proxy saw %d logs requests for the container, want 1: %+v", len(logs), p.Requests())
	}
	connID := logs[0].Conn

	p.Freeze(c.ID)
	var held time.Time
	waitFor(t, "the proxy to hold the logs response", 5*time.Second, func() (bool, string) {
		ci, _ := p.Conn(connID)
		held = ci.HeldSince
		return !held.IsZero(), fmt.Sprintf("%+v", ci)
	})
	n0 := f.count()
	// Bounded negative check: for one second, while the container writes
	// 200 lines, nothing reaches the client.
	time.Sleep(time.Second)
	if n1 := f.count(); n1 != n0 {
		t.Fatalf("%d lines arrived through a frozen response", n1-n0)
	}
	ci, _ := p.Conn(connID)
	t.Logf("frozen: %d bytes held, connection open=%v", ci.BytesHeld, ci.Closed.IsZero())
	if !ci.Closed.IsZero() {
		t.Fatal("the frozen connection was closed")
	}

	p.Resume(c.ID)
	waitFor(t, "lines to flow again after resume", 10*time.Second, func() (bool, string) {
		return f.count() > n0+50, fmt.Sprint(f.count())
	})
	c.stop(t, 5)
	select {
	case <-f.done:
	case <-time.After(20 * time.Second):
		t.Fatal("timed out after 20s waiting for the follow stream to end after the container stopped")
	}
	truth := dockerLog(t, c)
	f.mu.Lock()
	missing, dups := missingDups(f.seqs, len(truth))
	got := len(f.seqs)
	f.mu.Unlock()
	if len(missing) > 0 || len(dups) > 0 {
		t.Fatalf("through freeze/resume: %d lines of %d; missing %s; duplicated %s", got, len(truth), ranges(missing), dupString(dups))
	}
	t.Logf("through freeze/resume: all %d lines once", got)

	// A client that gives up on a frozen response is seen closing it.
	c2 := runContainer(t, ContainerSpec{Args: []string{"-n", "0", "-rate", "50"}})
	f2 := startFollow(t, pc, c2)
	waitFor(t, "lines of the second container", 10*time.Second, func() (bool, string) {
		return f2.count() > 0, fmt.Sprint(f2.count())
	})
	conn2 := p.LogsRequests(c2.ID)[0].Conn
	p.Freeze(c2.ID[:12]) // by id prefix this time
	waitFor(t, "the second logs response to be held", 10*time.Second, func() (bool, string) {
		ci, _ := p.Conn(conn2)
		return !ci.HeldSince.IsZero(), fmt.Sprintf("%+v", ci)
	})
	cancelAt := time.Now()
	f2.cancel()
	waitFor(t, "the proxy to see the client close the held connection", 5*time.Second, func() (bool, string) {
		ci, _ := p.Conn(conn2)
		return !ci.Closed.IsZero() && ci.ByClient, fmt.Sprintf("%+v", ci)
	})
	ci2, _ := p.Conn(conn2)
	t.Logf("client close seen %v after cancel", ci2.Closed.Sub(cancelAt).Round(time.Millisecond))

	// Methods other than GET and HEAD are refused before the daemon.
	p.RejectNonRead(true)
	ctx, cancel := dctx(20 * time.Second)
	defer cancel()
	err = pc.ContainerStart(ctx, c.ID, container.StartOptions{})
	if err == nil {
		t.Fatal("POST start through the rejecting proxy succeeded")
	}
	if st := c.inspect(t).State; st.Running {
		t.Fatal("the refused start reached the daemon")
	}
	if m := p.Methods(); m["POST"] != 1 {
		t.Fatalf("methods seen %v", m)
	}
	t.Logf("requests by path: %v", p.Counts())
}
