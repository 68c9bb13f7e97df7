//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// minAutoRemoveCaught is the fraction of `docker run --rm` jobs whose lines
// TestAutoRemoveJobs requires berth to catch: measured 93 and 100 of 100 with a
// -race berth on 2 busy CPUs (36 before berth requested the logs ahead of
// the inspect), with a margin for a loaded CI machine. Not 100%: the start
// event is sent once the process already runs, and the daemon deletes the
// log within milliseconds of a process that exits at once; only a request
// in before the start could win every time, and the API has none a reader
// may make (logs of a created container end at once; attach is a POST).
const minAutoRemoveCaught = 0.85

// maxAutoRemoveLeft bounds the jobs whose removal by the daemon failed
// because a logs request reached it after they stopped (Docker 20.10
// re-creates the log file of a stopped container it is asked to read): 0 to
// 2 of 100 in this suite's runs on a loaded 2-core machine.
const maxAutoRemoveLeft = 4

// TestAutoRemoveJobs: 100 containers with AutoRemove (docker run --rm), 5 at
// a time, each printing a few sequence-numbered lines and exiting at once.
// The daemon deletes a container's log when it removes it, so berth catches
// a container only if its logs request is in before then. The test reports
// the fraction caught and requires at least minAutoRemoveCaught; every
// container caught has each of its lines exactly once.
func TestAutoRemoveJobs(t *testing.T) {
	needDocker(t)
	const jobs, atOnce, n = 100, 5, 5
	b := startBerth(t, BerthConfig{})
	b.waitReady(t)
	cs := make([]*Ctr, jobs)
	var next, leftByDaemon atomic.Int64
	var mu sync.Mutex
	var errs []string
	start := time.Now()
	parallel(atOnce, func(int) {
		for {
			i := int(next.Add(1)) - 1
			if i >= jobs {
				return
			}
			c := createContainer(t, ContainerSpec{Name: uniqueName(t, fmt.Sprint(i)), AutoRemove: true, Args: []string{"-n", fmt.Sprint(n)}})
			cs[i] = c
			if err := c.startErr(); err != nil {
				mu.Lock()
				errs = append(errs, err.Error())
				mu.Unlock()
				return
			}
			// The next job starts once this one is gone, as a cron-style
			// loop of `docker run --rm` would. Docker 20.10 can fail its
			// own removal ("unlinkat .../containers/<id>: directory not
			// empty" in its log) when a logs request reaches it after the
			// container stopped: it re-creates the log file meanwhile.
			// berth sends none to a --rm container it knows stopped, but
			// its first request may still land in that window: such a
			// container stays, dead; it is counted, and removed here.
			var exitedAt time.Time
			ok, state := waitUntil(time.Minute, func() (bool, string) {
				st, gone := c.state()
				switch {
				case gone:
					return true, ""
				case st == "dead" || st == "exited":
					if exitedAt.IsZero() {
						exitedAt = time.Now()
					}
					if time.Since(exitedAt) > 10*time.Second {
						return true, st
					}
				}
				return false, "still exists, " + st
			})
			if !ok {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("%s: %s after 1m", c.Name, state))
				mu.Unlock()
				return
			}
			if state != "" {
				leftByDaemon.Add(1)
				c.remove(t)
			}
		}
	})
	if len(errs) > 0 {
		t.Fatalf("running the jobs: %s", strings.Join(errs, "; "))
	}
	t.Logf("%d jobs, %d at a time, ran and were removed in %v", jobs, atOnce, time.Since(start).Round(time.Millisecond))
	// Once /status lists none of them, berth has finished every burst it
	// started for them: nothing more of theirs can come.
	waitFor(t, "berth to forget every removed job", time.Minute, func() (bool, string) {
		m, err := b.status()
		if err != nil {
			return false, err.Error()
		}
		list, _ := m["containers"].([]any)
		left := 0
		for _, e := range list {
			em, _ := e.(map[string]any)
			name, _ := em["name"].(string)
			if strings.HasPrefix(name, "berth-e2e-testautoremovejobs-") {
				left++
			}
		}
		return left == 0, fmt.Sprintf("%d of the jobs still listed", left)
	})
	b.stop(t)
	caught, partial := 0, 0
	var missed []string
	for _, c := range cs {
		recs := b.out.records(c.Name)
		switch {
		case len(recs) == 0:
			missed = append(missed, c.Name[len(c.Name)-9:])
			continue
		case len(recs) < n:
			partial++
		}
		caught++
		checkSharedSeqs(t, c, recs, n, 0)
		checkRecordMeta(t, c, recs)
	}
	frac := float64(caught) / jobs
	t.Logf("caught %d of %d `docker run --rm` jobs (%.0f%%), %d of them only in part; missed: %v", caught, jobs, 100*frac, partial, missed)
	t.Logf("figure: %d of %d jobs left behind by the daemon's failed removal (a logs request racing it), removed by the test", leftByDaemon.Load(), jobs)
	if n := leftByDaemon.Load(); n > maxAutoRemoveLeft {
		t.Errorf("%d jobs were left behind by a failed removal, want at most %d", n, maxAutoRemoveLeft)
	}
	if frac < minAutoRemoveCaught {
		t.Errorf("caught %.0f%% of the jobs, want at least %.0f%%", 100*frac, 100*minAutoRemoveCaught)
	}
}

// state returns the container's state ("running", "exited", "dead", ...),
// or gone when the daemon no longer knows it.
func (c *Ctr) state() (status string, gone bool) {
	ctx, cancel := dctx(30 * time.Second)
	defer cancel()
	info, err := suite.docker.ContainerInspect(ctx, c.ID)
	if isNotFound(err) {
		return "", true
	}
	if err != nil || info.State == nil {
		return fmt.Sprint(err), false
	}
	return info.State.Status, false
}

// gone reports whether the daemon no longer knows the container.
func (c *Ctr) gone() bool {
	ctx, cancel := dctx(30 * time.Second)
	defer cancel()
	_, err := suite.docker.ContainerInspect(ctx, c.ID)
	return isNotFound(err)
}
