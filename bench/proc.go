package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat: 100
// on every Linux architecture Go supports.
const clockTicks = 100

// procCPU returns utime+stime of pid, all its threads.
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("CPU of pid %d: %w", pid, err)
	}
	s := string(data)
	s = s[strings.LastIndexByte(s, ')')+2:] // the command may hold spaces
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0, fmt.Errorf("CPU of pid %d: short /proc/%d/stat %q", pid, pid, data)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	st, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("CPU of pid %d: parsing %q", pid, data)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// procStatusKB returns a "kB" field of /proc/<pid>/status (VmHWM, VmRSS).
func procStatusKB(pid int, key string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("%s of pid %d: %w", key, pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != key {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s of pid %d: %q", key, pid, v)
		}
		return n, nil
	}
	return 0, fmt.Errorf("%s of pid %d: not in /proc/%d/status", key, pid, pid)
}

// procFDs counts the open file descriptors of pid.
func procFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, fmt.Errorf("FDs of pid %d: %w", pid, err)
	}
	return len(ents), nil
}

// dockerdPID finds the process that serves the daemon's unix socket (the
// client's DOCKER_HOST, a private daemon's included) by asking the kernel
// who is at the other end of a connection to it (SO_PEERCRED): the only way
// that cannot mistake one dockerd for another. It only connects and reads.
func dockerdPID(host string) (int, error) {
	path, ok := strings.CutPrefix(host, "unix://")
	if !ok {
		return 0, fmt.Errorf("the daemon at %s is not on a unix socket: its CPU cannot be measured from /proc", host)
	}
	conn, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return 0, fmt.Errorf("connecting to %s to find the daemon's pid: %w", path, err)
	}
	defer conn.Close()
	raw, err := conn.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("the daemon's pid: %w", err)
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, fmt.Errorf("the daemon's pid: %w", err)
	}
	if credErr != nil {
		return 0, fmt.Errorf("the daemon's pid (SO_PEERCRED on %s): %w", path, credErr)
	}
	if comm := commOf(int(cred.Pid)); comm != "dockerd" {
		return 0, fmt.Errorf("the process serving %s is %q (pid %d), not dockerd", path, comm, cred.Pid)
	}
	return int(cred.Pid), nil
}

func commOf(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// cpuMeter measures a process's CPU over a window.
type cpuMeter struct {
	pid   int
	start time.Duration
}

func startCPU(pid int) (cpuMeter, error) {
	c, err := procCPU(pid)
	return cpuMeter{pid: pid, start: c}, err
}

// since returns the CPU spent since startCPU.
func (m cpuMeter) since() (time.Duration, error) {
	c, err := procCPU(m.pid)
	return c - m.start, err
}

func numCPU() int { return runtime.NumCPU() }
