//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// dockerdPID finds the daemon behind the suite's socket: the process at the
// other end of a connection to it (SO_PEERCRED), so that a private daemon
// (DOCKER_HOST) is measured, never another dockerd on the machine.
func dockerdPID(t *testing.T) int {
	t.Helper()
	conn, err := net.DialTimeout("unix", suite.sock, 5*time.Second)
	if err != nil {
		t.Fatalf("connecting to %s to find the daemon's pid: %v", suite.sock, err)
	}
	defer conn.Close()
	raw, err := conn.(*net.UnixConn).SyscallConn()
	if err != nil {
		t.Fatalf("the daemon's pid: %v", err)
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || credErr != nil {
		t.Fatalf("the daemon's pid (SO_PEERCRED on %s): %v %v", suite.sock, err, credErr)
	}
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cred.Pid))
	if c := strings.TrimSpace(string(comm)); c != "dockerd" {
		t.Fatalf("the process serving %s is %q (pid %d), not dockerd", suite.sock, c, cred.Pid)
	}
	return int(cred.Pid)
}

// procCPU returns utime+stime of pid (all its threads).
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("reading dockerd's CPU: %v", err)
	}
	// the command may contain spaces: fields start after the last ')'
	s := string(data)
	s = s[strings.LastIndexByte(s, ')')+2:]
	f := strings.Fields(s)
	// f[0] is field 3 (state); utime is field 14, stime 15
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("parsing /proc/%d/stat: %q", pid, data)
	}
	return time.Duration(ut+st) * time.Second / clockTicks
}
