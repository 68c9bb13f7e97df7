//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthlog/berth/e2e/internal/otelcolrun"
)

// TestGateway: README's "Scaling past one host" gateway, packaging/gateway.yaml
// as it is, run by a real OpenTelemetry Collector between berth and the
// backend (the in-test receiver): berth -> gateway (OTLP gRPC, batch, a
// retrying sending queue) -> backend. Every line arrives at the backend
// exactly once.
func TestGateway(t *testing.T) {
	needDocker(t)
	const n, every = 3000, 5
	ctx, cancel := dctx(10 * time.Minute)
	defer cancel()
	bin, err := otelcolrun.Build(ctx) // cached; a cold build takes minutes
	if err != nil {
		t.Fatalf("building the collector: %v", err)
	}
	backend := startReceiver(t)
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	logPath := filepath.Join(testDir(t), "gateway.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	gw := exec.Command(bin, "--config="+filepath.Join(suite.repo, "packaging", "gateway.yaml"))
	gw.Stdout, gw.Stderr = logFile, logFile
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") {
			gw.Env = append(gw.Env, kv)
		}
	}
	gw.Env = append(gw.Env, "GATEWAY_GRPC_ENDPOINT="+grpcAddr, "GATEWAY_HTTP_ENDPOINT="+httpAddr,
		"BACKEND_ENDPOINT="+backend.GRPCAddr(), "BACKEND_INSECURE=true")
	if err := gw.Start(); err != nil {
		t.Fatalf("starting the gateway: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- gw.Wait() }()
	t.Cleanup(func() {
		_ = gw.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = gw.Process.Kill()
			<-exited
		}
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("gateway log:\n%s", b)
			}
		}
	})
	waitFor(t, "the gateway's gRPC receiver to accept connections", 30*time.Second, func() (bool, string) {
		select {
		case err := <-exited:
			t.Fatalf("the gateway exited: %v", err)
		default:
		}
		c, err := net.DialTimeout("tcp", grpcAddr, time.Second)
		if err != nil {
			return false, err.Error()
		}
		c.Close()
		return true, ""
	})

	cfg := restartCfg("http://"+grpcAddr, "grpc", "telemetry_otlp: false")
	b := startBerthOTLP(t, cfg, otlpRun{})
	v := recvView(backend)
	waitReadyOTLP(t, b, v)
	c := runContainer(t, ContainerSpec{Args: []string{"-n", fmt.Sprint(n), "-rate", "1500", "-stderr-every", fmt.Sprint(every)}})
	waitAll(t, b, v, []*Ctr{c}, n, 2*time.Minute)
	c.waitExited(t, time.Minute)
	b.stopOTLP(t)
	v.poll(t)
	checkShared(t, c, v.records(c.Name), n, every)
	if !t.Failed() {
		t.Logf("figure: gateway: %d lines through packaging/gateway.yaml to the backend in %d requests; 0 lost, 0 duplicated", n, len(backend.Requests()))
	}
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
