package collectors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
)

// removedDaemon is a container that the daemon removes as soon as it has
// answered a logs request (docker run --rm of a job that exits at once): an
// inspect that comes after the logs request finds nothing, and one that
// comes first finds it but takes the log with it.
type removedDaemon struct {
	fakeDaemon
	logsCalled chan struct{} // closed by the first logs request
	once       sync.Once
	mu         sync.Mutex
	removed    bool
	order      []string
}

func newRemovedDaemon(tty bool, log []fakeMsg) *removedDaemon {
	return &removedDaemon{fakeDaemon: fakeDaemon{tty: tty, log: log}, logsCalled: make(chan struct{})}
}

func (d *removedDaemon) Inspect(ctx context.Context, _ string) (*logs.Meta, error) {
	select {
	case <-d.logsCalled:
	case <-time.After(time.Second):
		// The burst inspects before it asks for the logs (berth before the
		// hint): the job exits and is removed meanwhile.
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.order = append(d.order, "inspect")
	d.removed = true
	return nil, fmt.Errorf("%w: no such container", ErrNotFound)
}

func (d *removedDaemon) Logs(ctx context.Context, id string, req LogRequest) (io.ReadCloser, error) {
	d.mu.Lock()
	d.order = append(d.order, "logs")
	removed := d.removed
	d.mu.Unlock()
	if removed {
		return nil, fmt.Errorf("%w: no such container", ErrNotFound)
	}
	defer d.once.Do(func() { close(d.logsCalled) })
	return d.fakeDaemon.Logs(ctx, id, req)
}

// metaSink keeps the Meta of every batch it accepted.
type metaSink struct {
	memSink
	metas []logs.Meta
}

func (s *metaSink) Consume(ctx context.Context, b *logs.Batch) error {
	s.mu.Lock()
	s.metas = append(s.metas, *b.Meta)
	s.mu.Unlock()
	return s.memSink.Consume(ctx, b)
}

// TestBurstHintRequestsLogsFirst: with a Hint (the start event's attributes)
// and no Meta, the logs request goes out before the inspect, so a job
// removed right after it is still read; its records are described by the
// Hint, and the stream's first byte tells a TTY's raw stream from a
// multiplexed one.
func TestBurstHintRequestsLogsFirst(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	log := []fakeMsg{
		{logs.Stdout, t0, "seq=0\n"},
		{logs.Stderr, t0.Add(time.Millisecond), "seq=1\n"},
		{logs.Stdout, t0.Add(2 * time.Millisecond), "seq=2\n"},
	}
	for _, tty := range []bool{false, true} {
		t.Run(fmt.Sprintf("tty=%v", tty), func(t *testing.T) {
			src := newRemovedDaemon(tty, log)
			sink := &metaSink{}
			c := newCollector(t, src, sink, testBursts(1<<20, 100), telemetry.NopSettings())
			var meta atomic.Pointer[logs.Meta]
			hint := &logs.Meta{Name: "job", ServiceName: "job", ImageName: "alpine", ImageTags: []string{"3"}}
			res := c.Burst(context.Background(), BurstSpec{ID: "c1", Follow: true, Cursor: logs.BeginningCursor(), Meta: &meta, Hint: hint})
			if res.Lines != 3 || res.End != EndEOF {
				t.Fatalf("burst: %d lines, end %s, err %v (requests in order %v); want 3 lines, eof", res.Lines, res.End, res.Err, src.order)
			}
			want := []string{"stdout:seq=0", "stderr:seq=1", "stdout:seq=2"}
			if tty {
				want = []string{"stdout:seq=0", "stdout:seq=1", "stdout:seq=2"} // a TTY has one stream
			}
			if got := sink.bodies(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("records %q, want %q", got, want)
			}
			for _, m := range sink.metas {
				if m.ID != "c1" || m.Name != "job" || m.ImageName != "alpine" || m.HostName != "h" {
					t.Errorf("batch Meta %+v, want the hint's with ID c1 and host h", m)
				}
			}
			if !res.Gone || !res.Stopped {
				t.Errorf("gone %v stopped %v, want both (the container was removed)", res.Gone, res.Stopped)
			}
			if m := meta.Load(); m == nil || m.Name != "job" {
				t.Errorf("stored Meta %+v, want the hint's", m)
			}
		})
	}
}

// TestBurstHintLogsRefusedIsGone: a logs request the daemon refuses while
// the concurrent inspect finds no container is the container's removal,
// not a fault to back off from.
func TestBurstHintLogsRefusedIsGone(t *testing.T) {
	src := &refusingDaemon{}
	c := newCollector(t, src, &memSink{}, testBursts(1<<20, 100), telemetry.NopSettings())
	var meta atomic.Pointer[logs.Meta]
	res := c.Burst(context.Background(), BurstSpec{ID: "c1", Follow: true, Cursor: logs.BeginningCursor(), Meta: &meta, Hint: &logs.Meta{Name: "job"}})
	if !res.Gone || !errors.Is(res.Err, ErrNotFound) {
		t.Errorf("gone %v, err %v; want gone, with ErrNotFound in the error", res.Gone, res.Err)
	}
}

// refusingDaemon cannot open the log of a container it is removing.
type refusingDaemon struct{}

func (refusingDaemon) Inspect(context.Context, string) (*logs.Meta, error) {
	return nil, fmt.Errorf("%w: no such container", ErrNotFound)
}

func (refusingDaemon) Logs(context.Context, string, LogRequest) (io.ReadCloser, error) {
	return nil, errors.New("open /var/lib/docker/containers/c1/c1-json.log: no such file or directory")
}
