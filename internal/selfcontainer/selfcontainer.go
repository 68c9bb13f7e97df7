// Package selfcontainer finds the ID of the container berth runs in, from
// inside it and without configuration, so that berth never collects its own
// log.
//
// Two sources, tried in order:
//
//   - /proc/self/mountinfo: Docker (and Podman) bind-mount the container's
//     /etc/hostname, /etc/hosts and /etc/resolv.conf from its directory on
//     the host, <data-root>/containers/<id>/ (Podman:
//     .../overlay-containers/<id>/userdata/). The mount's root names the ID
//     whatever the cgroup version or namespace.
//   - /proc/self/cgroup: with cgroup v1, or v2 without a private cgroup
//     namespace, the path ends in /docker/<id> (cgroupfs driver) or
//     docker-<id>.scope (systemd driver; libpod-<id>.scope for Podman). With
//     cgroup v2 and a private namespace (Docker's default there) it is "/"
//     and says nothing.
//
// The parsers are pure; Detect does the reading. An ID found is a claim: the
// events manager only excludes a container the daemon lists with that ID.
package selfcontainer

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
)

// idLen is the length of a full container ID: 64 lowercase hex digits.
const idLen = 64

// etcMounts are the files the runtime bind-mounts from the container's own
// directory on the host.
var etcMounts = map[string]bool{"/etc/hostname": true, "/etc/hosts": true, "/etc/resolv.conf": true}

// FromMountinfo returns the container ID named by the root of the bind
// mount of /etc/hostname, /etc/hosts or /etc/resolv.conf in a
// /proc/self/mountinfo, or "" if there is none.
func FromMountinfo(mountinfo []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(mountinfo))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options ... - fstype source superoptions
		f := strings.Fields(sc.Text())
		if len(f) < 5 || !etcMounts[f[4]] {
			continue
		}
		if id := idAfter(f[3], "containers", "overlay-containers"); id != "" {
			return id
		}
	}
	return ""
}

// FromCgroup returns the container ID at the end of a cgroup path in a
// /proc/self/cgroup (v1 or v2), or "" if there is none.
func FromCgroup(cgroup []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(cgroup))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// hierarchy-id:controllers:path
		_, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		_, path, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		// Podman (cgroup v2, systemd) runs the process in a "container"
		// child of its scope.
		path = strings.TrimSuffix(path, "/container")
		last := path[strings.LastIndexByte(path, '/')+1:]
		for _, prefix := range []string{"docker-", "libpod-", "crio-", "cri-containerd-"} {
			if s, ok := strings.CutPrefix(last, prefix); ok {
				last = strings.TrimSuffix(s, ".scope")
				break
			}
		}
		if isID(last) {
			return last
		}
	}
	return ""
}

// idAfter returns the path component that follows one of parents in path, if
// it is a container ID.
func idAfter(path string, parents ...string) string {
	parts := strings.Split(path, "/")
	for i := 0; i+1 < len(parts); i++ {
		for _, p := range parents {
			if parts[i] == p && isID(parts[i+1]) {
				return parts[i+1]
			}
		}
	}
	return ""
}

// isID reports whether s is a full container ID.
func isID(s string) bool {
	if len(s) != idLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Parse returns the container ID found in a /proc/self/mountinfo, else in a
// /proc/self/cgroup, or "".
func Parse(mountinfo, cgroup []byte) string {
	if id := FromMountinfo(mountinfo); id != "" {
		return id
	}
	return FromCgroup(cgroup)
}

// Detect reads /proc/self/mountinfo and /proc/self/cgroup and returns the ID
// of the container this process runs in, or "" outside a container. A file
// that cannot be read (not Linux, no /proc) is an error only if neither can
// be; the ID is then "".
func Detect() (string, error) {
	return detect(os.ReadFile)
}

// detect is Detect with its reader given (tests).
func detect(read func(string) ([]byte, error)) (string, error) {
	mi, err1 := read("/proc/self/mountinfo")
	cg, err2 := read("/proc/self/cgroup")
	if err1 != nil && err2 != nil {
		return "", fmt.Errorf("finding berth's own container: %w; %w", err1, err2)
	}
	return Parse(mi, cg), nil
}
