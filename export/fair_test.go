package export

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
)

// TestOTLPSinkFairAcrossContainers: noisy containers that keep the
// in-flight bound full cannot starve a quiet one. Consume waits for room in
// the order the bursts asked (the byte budget is a FIFO semaphore, the
// export queue a channel): once the quiet container's batch waits, at most
// one batch of each noisy container (each burst hands over one batch at a
// time) is accepted before it, and it is exported and acknowledged within
// as many export requests, while the noisy ones never stop writing.
func TestOTLPSinkFairAcrossContainers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		exp := &fakeExporter{gate: make(chan struct{})}
		acks := &ackLog{}
		def := config.Default()
		def.MaxInFlightBytes = 1 << 20
		s, err := NewOTLPSink(exp, acks, def.Export, def.Backoff, withVersion(telemetry.NopSettings()))
		if err != nil {
			t.Fatal(err)
		}
		ctx, stopNoisy := context.WithCancel(context.Background())
		var (
			mu       sync.Mutex
			accepted []string // the order Consume accepted batches in
		)
		accept := func(who string) {
			mu.Lock()
			defer mu.Unlock()
			accepted = append(accepted, who)
		}
		big := strings.Repeat("x", 300<<10) // three fill the bound
		const noisy = 3
		var wg sync.WaitGroup
		for n := range noisy {
			meta := &logs.Meta{ID: fmt.Sprintf("noisy%d", n), Name: fmt.Sprintf("noisy%d", n), HostName: "h"}
			wg.Go(func() {
				for i := 1; ; i++ {
					if err := s.Consume(ctx, batchOf(meta, i, big)); err != nil {
						return // stopped
					}
					accept(meta.ID)
				}
			})
		}
		synctest.Wait() // the bound is full; every noisy burst waits for room
		if n := s.Stats().InFlightBytes; n < def.MaxInFlightBytes*3/4 {
			t.Fatalf("in flight %d: the noisy containers do not fill the bound", n)
		}

		quiet := &logs.Meta{ID: "quiet", Name: "quiet", HostName: "h"}
		mu.Lock()
		before := len(accepted)
		mu.Unlock()
		quietDone := make(chan error, 1)
		go func() { quietDone <- s.Consume(context.Background(), batchOf(quiet, 7, "hello")) }()
		synctest.Wait()

		acked := func() bool { return slices.Contains(acks.list(), "quiet@7") }
		var exports int
		quietIn := false
		for exports = 0; exports < 50 && !acked(); exports++ {
			exp.gate <- struct{}{} // the backend takes one request
			time.Sleep(time.Millisecond)
			synctest.Wait()
			if !quietIn {
				select {
				case err := <-quietDone:
					if err != nil {
						t.Fatal(err)
					}
					quietIn = true
					mu.Lock()
					ahead := accepted[before:]
					mu.Unlock()
					t.Logf("noisy batches accepted while the quiet one waited: %v", ahead)
					if len(ahead) > noisy {
						t.Errorf("%d noisy batches accepted while the quiet one waited (%v), want at most %d: one per noisy container", len(ahead), ahead, noisy)
					}
				default:
				}
			}
		}
		if !acked() {
			t.Fatalf("the quiet container's batch was not acknowledged after %d exports; acks %v", exports, acks.list())
		}
		t.Logf("quiet acknowledged after %d exports", exports)
		if exports > noisy+1 {
			t.Errorf("the quiet container's batch was acknowledged after %d exports, want at most %d", exports, noisy+1)
		}
		mu.Lock()
		total := len(accepted)
		mu.Unlock()
		if total <= before {
			t.Error("the noisy containers were not accepted again: the test did not keep the bound full")
		}
		stopNoisy()
		close(exp.gate)
		wg.Wait()
		if err := s.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}
