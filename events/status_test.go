package events

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/telemetry"
)

func TestStatusAfterStop(t *testing.T) {
	synctest.Test(t, testStatusAfterStop)
}

func testStatusAfterStop(t *testing.T) {
	m, err := NewManager(nil, nil, nil, config.Containers{}, config.Backoff{}, telemetry.NopSettings())
	if err != nil {
		t.Fatal(err)
	}
	close(m.stopped) // as Run does when it returns
	start := time.Now()
	if _, err := m.Status(t.Context()); err != ErrNotRunning {
		t.Fatalf("Status after stop: %v, want ErrNotRunning", err)
	}
	// In the bubble time moves only when every goroutine waits: an answer
	// that waited for anything (a timer, the manager) would take time.
	if d := time.Since(start); d != 0 {
		t.Fatalf("Status after stop took %v, want an answer at once", d)
	}
}
