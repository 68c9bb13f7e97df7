//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// dockerdPID finds the daemon behind the suite's socket: a process named
// dockerd holding the listening socket, else the only process named dockerd.
func dockerdPID(t *testing.T) int {
	t.Helper()
	inodes := socketInodes(suite.sock, "/var/run/docker.sock", "/run/docker.sock")
	var byName []int
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join(p, "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != "dockerd" {
			continue
		}
		byName = append(byName, pid)
		fds, _ := os.ReadDir(filepath.Join(p, "fd"))
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(p, "fd", fd.Name()))
			if err == nil && inodes[link] {
				return pid
			}
		}
	}
	if len(byName) == 1 {
		return byName[0]
	}
	t.Fatalf("cannot find the dockerd behind /var/run/docker.sock (dockerd processes: %v)", byName)
	return 0
}

// socketInodes returns "socket:[inode]" of the listening unix sockets bound
// to any of paths (/proc/net/unix).
func socketInodes(paths ...string) map[string]bool {
	out := map[string]bool{}
	f, err := os.Open("/proc/net/unix")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 8 {
			continue
		}
		for _, p := range paths {
			if fl[7] == p {
				out["socket:["+fl[6]+"]"] = true
			}
		}
	}
	return out
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
