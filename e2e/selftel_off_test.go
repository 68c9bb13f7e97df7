//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestSelfTelemetryOff: a logs-only OTLP backend (the in-test receiver
// serves only the logs service: metrics and traces get gRPC Unimplemented,
// HTTP 404) gets no error from berth's own telemetry with telemetry_otlp:
// false, over gRPC and HTTP. berth pushes its metrics every second and
// flushes its metrics and spans at SIGTERM, so with the switch on (auto,
// the control run) the refusals show in its log; with it off, nothing does.
func TestSelfTelemetryOff(t *testing.T) {
	needDocker(t)
	sdkErrors := []string{"OpenTelemetry SDK error", "berth's own last metrics and spans were not all sent"}
	for _, protocol := range []string{"grpc", "http/protobuf"} {
		for _, mode := range []string{"auto", "false"} {
			t.Run(strings.ReplaceAll(protocol, "/", "-")+"/"+mode, func(t *testing.T) {
				r := startReceiver(t)
				endpoint := r.GRPCEndpoint()
				if protocol == "http/protobuf" {
					endpoint = r.HTTPEndpoint()
				}
				b := startBerthOTLP(t, BerthConfig{Extra: append(otlpYAML(endpoint, protocol),
					"metrics_interval: 1s", "telemetry_otlp: "+quote(mode))}, otlpRun{})
				v := recvView(r)
				waitReadyOTLP(t, b, v)
				c := runContainer(t, ContainerSpec{Args: []string{"-n", "50"}})
				c.waitExited(t, time.Minute)
				waitAll(t, b, v, []*Ctr{c}, 50, 30*time.Second)
				b.stopOTLP(t) // flushes berth's own metrics and spans, if on
				stderr := b.stderrText()
				var found []string
				for _, s := range sdkErrors {
					if strings.Contains(stderr, s) {
						found = append(found, s)
					}
				}
				t.Logf("telemetry_otlp %s over %s: %d records at the receiver; berth's log names %v", mode, protocol, r.Count(), found)
				switch {
				case mode == "false" && len(found) > 0:
					t.Errorf("with telemetry_otlp: false berth logged errors of its own telemetry (%v):\n%s", found, tailString(stderr, 3000))
				case mode == "auto" && len(found) == 0:
					t.Errorf("control: with telemetry_otlp: auto berth logged no refusal of its metrics and spans by the logs-only receiver (the check above could not fail):\n%s", tailString(stderr, 3000))
				}
			})
		}
	}
}
