package events

import (
	"testing"
	"time"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/telemetry"
)

func TestStatusAfterStop(t *testing.T) {
	m, err := NewManager(nil, nil, nil, config.Containers{}, config.Backoff{}, telemetry.NopSettings())
	if err != nil {
		t.Fatal(err)
	}
	close(m.stopped) // as Run does when it returns
	start := time.Now()
	if _, err := m.Status(t.Context()); err != ErrNotRunning {
		t.Fatalf("Status after stop: %v, want ErrNotRunning", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("Status after stop took %v", d)
	}
}
