package selfcontainer

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// captured is the ID of the container whose /proc/self files are in
// testdata/docker20-cgroupv1.* (Docker 20.10, cgroup v1, cgroupfs driver,
// captured on the build machine). host.* are the same files of a process
// outside any container on that machine.
const captured = "1d07123f0250c9522077e92bd39d12c67c38bd8661a8804705444af35205fbc9"

const id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFromMountinfo(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"captured: docker 20.10, cgroup v1", string(readTestdata(t, "docker20-cgroupv1.mountinfo")), captured},
		{"captured: outside a container", string(readTestdata(t, "host.mountinfo")), ""},
		{"custom data-root",
			"86 69 254:0 /srv/docker/containers/" + id + "/hostname /etc/hostname rw,relatime - ext4 /dev/vda rw\n", id},
		{"podman",
			"700 650 0:52 /containers/storage/overlay-containers/" + id + "/userdata/hosts /etc/hosts rw,nosuid,nodev - tmpfs tmpfs rw\n", id},
		{"resolv.conf alone",
			"86 69 254:0 /var/lib/docker/containers/" + id + "/resolv.conf /etc/resolv.conf rw - ext4 /dev/vda rw\n", id},
		{"an ID mounted elsewhere is not ours",
			"86 69 254:0 /var/lib/docker/containers/" + id + " /data rw - ext4 /dev/vda rw\n", ""},
		{"an ID not under containers/ is not ours",
			"86 69 254:0 /var/lib/other/" + id + "/hostname /etc/hostname rw - ext4 /dev/vda rw\n", ""},
		{"a short ID is not an ID",
			"86 69 254:0 /var/lib/docker/containers/0123456789ab/hostname /etc/hostname rw - ext4 /dev/vda rw\n", ""},
		{"upper-case hex is not an ID",
			"86 69 254:0 /var/lib/docker/containers/0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef/hostname /etc/hostname rw - ext4 /dev/vda rw\n", ""},
		{"torn lines", "86 69\n\n - \n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FromMountinfo([]byte(tt.in)); got != tt.want {
				t.Errorf("FromMountinfo = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFromCgroup(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"captured: docker 20.10, cgroup v1, cgroupfs", string(readTestdata(t, "docker20-cgroupv1.cgroup")), captured},
		{"captured: outside a container", string(readTestdata(t, "host.cgroup")), ""},
		{"cgroup v2, private namespace: says nothing", "0::/\n", ""},
		{"cgroup v2, host namespace, cgroupfs", "0::/docker/" + id + "\n", id},
		{"cgroup v2, systemd driver", "0::/system.slice/docker-" + id + ".scope\n", id},
		{"cgroup v1, systemd driver", "4:memory:/system.slice/docker-" + id + ".scope\n", id},
		{"podman", "0::/machine.slice/libpod-" + id + ".scope/container\n", id},
		{"podman, scope leaf", "0::/machine.slice/libpod-" + id + ".scope\n", id},
		{"a service on the host", "0::/system.slice/berth.service\n", ""},
		{"torn lines", "0\n0:\n::\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FromCgroup([]byte(tt.in)); got != tt.want {
				t.Errorf("FromCgroup = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParsePrefersMountinfo(t *testing.T) {
	other := "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	mi := []byte("86 69 254:0 /var/lib/docker/containers/" + id + "/hostname /etc/hostname rw - ext4 /dev/vda rw\n")
	cg := []byte("0::/docker/" + other + "\n")
	if got := Parse(mi, cg); got != id {
		t.Errorf("Parse = %q, want the mountinfo's %q", got, id)
	}
	if got := Parse(nil, cg); got != other {
		t.Errorf("Parse without mountinfo = %q, want the cgroup's %q", got, other)
	}
}

func TestDetect(t *testing.T) {
	files := map[string][]byte{"/proc/self/cgroup": []byte("0::/docker/" + id + "\n")}
	read := func(name string) ([]byte, error) {
		if b, ok := files[name]; ok {
			return b, nil
		}
		return nil, os.ErrNotExist
	}
	got, err := detect(read)
	if err != nil || got != id {
		t.Errorf("detect with only a cgroup file = %q, %v; want %q, nil", got, err, id)
	}
	delete(files, "/proc/self/cgroup")
	got, err = detect(read)
	if !errors.Is(err, os.ErrNotExist) || got != "" {
		t.Errorf("detect with no file = %q, %v; want \"\" and ErrNotExist", got, err)
	}
}
