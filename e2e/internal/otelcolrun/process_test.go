//go:build unix

package otelcolrun

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStartFailsWhenTheProcessExits(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip(err)
	}
	// A "collector" that exits at once, whatever its arguments.
	bin := t.TempDir() + "/fake"
	if err := os.WriteFile(bin, []byte("#!"+sh+"\necho boom >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = Start(context.Background(), Options{Dir: t.TempDir(), Binary: bin, ReadyTimeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "exited before listening") || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Start: %v", err)
	}
}

// Stop kills a process that ignores SIGTERM once the grace period is over.
func TestStopKillsAfterGrace(t *testing.T) {
	cmd := exec.Command("sh", "-c", "trap '' TERM; exec sleep 60")
	lf, err := os.Create(t.TempDir() + "/log")
	if err != nil {
		t.Fatal(err)
	}
	c := &Collector{cmd: cmd, logFile: lf, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.waitErr = cmd.Wait(); close(c.exited) }()
	time.Sleep(200 * time.Millisecond) // let sh set the trap and exec
	begin := time.Now()
	err = c.Stop(300 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Stop: %v", err)
	}
	if el := time.Since(begin); el < 300*time.Millisecond || el > 5*time.Second {
		t.Errorf("Stop took %v", el)
	}
	if err := syscall.Kill(cmd.Process.Pid, 0); err == nil {
		t.Errorf("pid %d still exists", cmd.Process.Pid)
	}
	if err2 := c.Stop(time.Second); err2 != err {
		t.Errorf("second Stop: %v, want %v", err2, err)
	}
}
