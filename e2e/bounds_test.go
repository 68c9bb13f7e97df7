//go:build e2e

package e2e

// Requests bounded by bytes (issue 11): backends with gRPC's default 4 MiB
// limit on a message receive thousands of 8 KiB lines and a line of
// max_line_bytes, every one exactly once.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/berthlog/berth/e2e/internal/lines"
	"github.com/berthlog/berth/e2e/internal/otelcolrun"
)

// TestOTLPLargeRequests: five containers write 800 lines of 8 KiB each, as
// fast as they can, the first after a line longer than max_line_bytes (1 MiB,
// berth's default; the record is that line cut to 1 MiB, the largest record
// berth makes). Each log stays under 10 MB: the suite's daemon rotates
// json-file logs at 10m, and Docker 20.10's follow reader can send a stretch
// of the log again when it rotates, which is not what this test is about. berth runs with its default otlp.max_request_bytes (3 MiB).
// Against the real OpenTelemetry Collector and the in-test receiver, both
// over gRPC with its default 4 MiB limit (before the bound, batches of 1024
// such lines made 8 MiB requests, refused with RESOURCE_EXHAUSTED and retried
// forever): every line arrives exactly once, none is rejected, the long one
// whole up to max_line_bytes and marked truncated. The receiver also measures
// every request: none is over 3 MiB.
func TestOTLPLargeRequests(t *testing.T) {
	needDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	bin, err := otelcolrun.Build(ctx) // cached; a cold build takes minutes
	if err != nil {
		t.Fatal(err)
	}
	const containers, n, size, maxLine, maxRequest = 5, 800, 8 << 10, 1 << 20, 3 << 20
	bigSize := maxLine + 4096

	for _, backend := range []string{"collector", "receiver"} {
		t.Run(backend, func(t *testing.T) {
			var endpoint string
			var v *otlpView
			var requests func() (count, largest int)
			switch backend {
			case "collector":
				col, err := otelcolrun.Start(ctx, otelcolrun.Options{Dir: testDir(t), Binary: bin})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					_ = col.Stop(0)
					if t.Failed() {
						t.Logf("collector log %s (tail):\n%s", col.LogPath, tail(col.Log(), 30))
					}
				})
				endpoint, v = col.GRPCEndpoint(), collectorView(col.OutputPath)
			case "receiver":
				r := startReceiver(t)
				endpoint, v = r.GRPCEndpoint(), recvView(r)
				t.Cleanup(func() {
					if t.Failed() {
						var qs []string
						for _, q := range r.Requests() {
							qs = append(qs, fmt.Sprintf("%s %s %d records %d B", q.Time.Format("15:04:05.000"), q.Outcome, q.Records, q.Bytes))
						}
						t.Logf("receiver requests:\n%s", strings.Join(qs, "\n"))
					}
				})
				requests = func() (count, largest int) {
					for _, q := range r.Requests() {
						count++
						largest = max(largest, q.Bytes)
					}
					return count, largest
				}
			}
			b := startBerthOTLP(t, BerthConfig{Extra: append(otlpYAML(endpoint, "grpc"), "trace_sampling: 0")}, otlpRun{})
			waitReadyOTLP(t, b, v)

			big := createContainer(t, ContainerSpec{Name: uniqueName(t, "big"),
				Args: []string{"-line-sizes", fmt.Sprint(bigSize), "-n", fmt.Sprint(n), "-size", fmt.Sprint(size)}})
			cs := []*Ctr{big}
			for i := 1; i < containers; i++ {
				cs = append(cs, createContainer(t, ContainerSpec{Name: uniqueName(t, fmt.Sprint(i)),
					Args: []string{"-n", fmt.Sprint(n), "-size", fmt.Sprint(size)}}))
			}
			base := b.otlpStatus(t).Exporter.Exported
			start := time.Now()
			startAll(t, cs)
			waitAll(t, b, v, cs[1:], n, 3*time.Minute)
			waitAll(t, b, v, cs[:1], n+1, time.Minute)
			elapsed := time.Since(start)
			for _, c := range cs {
				c.waitExited(t, time.Minute)
			}
			st := b.otlpStatus(t)
			b.stopOTLP(t)
			v.poll(t)

			checkShared(t, big, v.records(big.Name), n+1, 0) // seq 0 is the long line
			for _, c := range cs[1:] {
				checkShared(t, c, v.records(c.Name), n, 0)
			}
			if total := int64(containers*n + 1); st.Exporter.Rejected != 0 || st.Exporter.Exported-base < total {
				t.Errorf("/status exporter: exported %d (want >= %d), rejected %d (want 0)", st.Exporter.Exported-base, total, st.Exporter.Rejected)
			}
			if s := b.stderrText(); strings.Contains(s, "too large") {
				t.Errorf("berth logged a record too large:\n%s", b.stderrTail(20))
			}
			// The long line: the daemon's line cut at max_line_bytes (never
			// inside a character), marked truncated.
			truth := dockerLog(t, big)
			var got []Record
			for _, r := range v.records(big.Name) {
				if p, ok := lines.Parse(r.Body); ok && p.Seq == 0 {
					got = append(got, r)
				}
			}
			if len(got) != 1 {
				t.Fatalf("%d records of the long line, want 1", len(got))
			}
			body, err := got[0].BodyBytes()
			if err != nil {
				t.Fatal(err)
			}
			want := truth[0].Body
			if len(want) <= maxLine || !strings.HasPrefix(want, string(body)) || len(body) < maxLine-3 || !got[0].Truncated() {
				t.Errorf("the long line: %d bytes, truncated %v; want a prefix of the daemon's %d-byte line, cut within 3 bytes of max_line_bytes (%d), truncated",
					len(body), got[0].Truncated(), len(want), maxLine)
			}
			figure := fmt.Sprintf("figure: %s (gRPC, 4 MiB limit): %d lines of %d B and one record of %d B (a %d B line cut at max_line_bytes) exported in %v, each exactly once, none rejected",
				backend, containers*n, size, len(body), len(want), elapsed.Round(time.Millisecond))
			if requests != nil {
				count, largest := requests()
				figure += fmt.Sprintf("; %d requests, the largest %d B encoded (otlp.max_request_bytes %d)", count, largest, maxRequest)
				if largest > maxRequest {
					t.Errorf("a request of %d B encoded, over otlp.max_request_bytes (%d)", largest, maxRequest)
				}
			}
			t.Log(figure)
		})
	}
}
