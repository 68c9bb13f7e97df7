//go:build e2e

package e2e

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestLogDrivers: berth reads through the counting proxy. A container on the
// "local" driver (a binary format file tailers cannot read) is collected like
// json-file: 3,000 numbered lines, every 7th on stderr, each exactly once,
// equal to the daemon's log. A container on "none" (nothing to read back) is
// reported once, with the daemon's reason, shown as stopped with that reason
// in /status, and not asked again while it keeps running: no further logs
// request and no further warning over a 3 s window.
func TestLogDrivers(t *testing.T) {
	needDocker(t)
	p := newProxy(t)
	b := startBerth(t, BerthConfig{DockerHost: p.Host()})
	b.waitReady(t)
	local := runContainer(t, ContainerSpec{LogDriver: "local", Args: []string{"-n", "3000", "-stderr-every", "7"}})
	none := runContainer(t, ContainerSpec{LogDriver: "none", Args: []string{"-n", "0", "-rate", "20"}})

	var st string
	waitFor(t, "/status to show the none-driver container stopped with the reason", 30*time.Second, func() (bool, string) {
		st = b.statusOf(t, none)
		return strings.Contains(st, `"state":"stopped"`) && strings.Contains(st, "does not support reading"), st
	})
	warnings := func() int {
		stderr, _ := os.ReadFile(b.stderrPath)
		n := 0
		for _, l := range strings.Split(string(stderr), "\n") {
			if strings.Contains(l, none.Name) && strings.Contains(l, "WARN") {
				n++
			}
		}
		return n
	}
	reqs, warns := len(p.LogsRequests(none.ID)), warnings()
	const window = 3 * time.Second
	time.Sleep(window) // the window in which nothing more may happen
	reqs2, warns2 := len(p.LogsRequests(none.ID)), warnings()
	if reqs < 1 || reqs2 != reqs {
		t.Errorf("logs requests for the none-driver container: %d when reported, %d %v later; want at least 1, then no more", reqs, reqs2, window)
	}
	if warns != 1 || warns2 != 1 {
		t.Errorf("warnings naming the none-driver container: %d when reported, %d %v later; want exactly 1:\n%s", warns, warns2, window, b.stderrTail(10))
	}

	local.waitExited(t, time.Minute)
	b.waitRecords(t, local.Name, 3000, time.Minute)
	b.stop(t)
	recs := b.out.records(local.Name)
	checkShared(t, local, recs, 3000, 7)
	compareWithDocker(t, local, recs)
	if n := b.out.count(none.Name); n != 0 {
		t.Errorf("%d records of the none-driver container, want 0", n)
	}
	assertOnlyReads(t, p)
	t.Logf("none driver: %d logs request(s), %d warning, none more over %v; /status: %s", reqs, warns, window, st)
}
