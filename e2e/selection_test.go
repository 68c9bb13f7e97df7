//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/berthlog/berth/e2e/internal/lines"
)

// selLines is what each test container of the selection tests writes
// (every 7th line on stderr) before it exits.
const selLines = 300

// runSel creates and starts a generator container with the suite's labels,
// the given ones and no network, running loggen with args; cleanup removes
// it.
func runSel(t *testing.T, name string, labels map[string]string, args ...string) *Ctr {
	t.Helper()
	all := map[string]string{labelKey: labelValue, runLabel: suite.runID}
	maps.Copy(all, labels)
	ctx, cancel := dctx(30 * time.Second)
	defer cancel()
	resp, err := suite.docker.ContainerCreate(ctx,
		&container.Config{Image: imageRef, Cmd: args, Labels: all},
		&container.HostConfig{NetworkMode: "none", LogConfig: container.LogConfig{Type: "json-file"}},
		nil, nil, name)
	if err != nil {
		t.Fatalf("creating container %s: %v", name, err)
	}
	c := &Ctr{ID: resp.ID, Name: name}
	t.Cleanup(func() { c.remove(t) })
	c.start(t)
	return c
}

// selWriter is runSel for a container that writes selLines lines at 300/s
// and exits.
func selWriter(t *testing.T, name string, labels map[string]string) *Ctr {
	return runSel(t, name, labels, "-n", fmt.Sprint(selLines), "-stderr-every", "7", "-rate", "300")
}

// waitSelReady proves berth follows new containers it selects, like
// waitReady, with a canary carrying labels.
func (b *Berth) waitSelReady(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	c := runSel(t, name, labels, "-n", "0", "-rate", "20")
	waitFor(t, "a record of the canary container "+name+" (berth following new containers)", 30*time.Second, func() (bool, string) {
		b.poll(t)
		n := len(b.out.records(c.Name))
		return n > 0, fmt.Sprintf("%d canary records, %d records in all", n, len(b.out.recs))
	})
	c.remove(t)
}

// statusEntry returns c's entry of /status, decoded.
func (b *Berth) statusEntry(t *testing.T, c *Ctr) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(b.statusOf(t, c)), &m); err != nil {
		return nil
	}
	return m
}

// waitStatus waits until c's /status entry has field = want.
func (b *Berth) waitStatus(t *testing.T, c *Ctr, field, want string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("/status of %s to say %s %q", c.Name, field, want), 30*time.Second, func() (bool, string) {
		e := b.statusEntry(t, c)
		got, _ := e[field].(string)
		return got == want, b.statusOf(t, c)
	})
}

// rename renames c and returns the time the daemon had renamed it by.
func (c *Ctr) rename(t *testing.T, name string) time.Time {
	t.Helper()
	ctx, cancel := dctx(30 * time.Second)
	defer cancel()
	if err := suite.docker.ContainerRename(ctx, c.ID, name); err != nil {
		t.Fatalf("renaming %s to %s: %v", c.Name, name, err)
	}
	c.Name = name
	return time.Now()
}

// TestSelection: include and exclude rules by name and label, the
// berth.enable label (false, true, and a bad value), and renames, on the real
// daemon. The selected containers' lines arrive exactly once, the excluded
// ones' never; /status names the rule that decided each; a container
// excluded by name and renamed into the selection is read from its first
// line; one renamed out of it is read no more.
func TestSelection(t *testing.T) {
	needDocker(t)
	prefix := "berth-e2e-sel-" + suite.runID[len(suite.runID)-6:] + "-"
	name := func(what string) string { u := uniqueName(t, what); return prefix + what + "-" + u[len(u)-6:] }
	b := startBerth(t, BerthConfig{Extra: []string{
		"include:",
		"  - " + quote("name="+prefix+"*"),
		"exclude:",
		"  - " + quote("name=*-skip-*"),
		"  - " + quote("label=berth.e2e.sel=skip"),
	}})
	b.waitSelReady(t, name("canary"), nil)

	keep := selWriter(t, name("keep"), nil)
	skipName := selWriter(t, name("skip"), nil)
	skipLabel := selWriter(t, name("label"), map[string]string{"berth.e2e.sel": "skip"})
	optOut := selWriter(t, name("optout"), map[string]string{"berth.enable": "false"})
	outside := selWriter(t, uniqueName(t, "outside"), nil)
	enabled := selWriter(t, uniqueName(t, "enabled"), map[string]string{"berth.enable": "true"})
	bad := selWriter(t, name("bad"), map[string]string{"berth.enable": "maybe"})
	// renamed into the selection while it writes: excluded by name first
	renamedIn := runSel(t, name("skip-in"), nil, "-n", fmt.Sprint(selLines), "-stderr-every", "7", "-rate", "100")
	// renamed out of it while it writes, and writing on after
	renamedOut := runSel(t, name("out"), nil, "-n", "0", "-rate", "50")

	b.waitStatus(t, renamedIn, "excluded_by", "exclude name=*-skip-*")
	inNewName := name("in")
	renamedIn.rename(t, inNewName)
	b.waitStatus(t, renamedIn, "selected_by", "include name="+prefix+"*")

	b.waitRecords(t, renamedOut.Name, 20, time.Minute)
	outOldName := renamedOut.Name
	renamedAt := renamedOut.rename(t, strings.Replace(outOldName, "-out-", "-skip-out-", 1))
	b.waitStatus(t, renamedOut, "excluded_by", "exclude name=*-skip-*")
	b.waitStatus(t, renamedOut, "state", "excluded")
	// It writes on: 2 s of lines after the rename, which berth must not send.
	waitFor(t, "the renamed-out container to write 2 s past its rename", 30*time.Second, func() (bool, string) {
		ts, _ := lastLogLine(t, renamedOut)
		return ts.After(renamedAt.Add(2 * time.Second)), fmt.Sprintf("last line at %v, renamed at %v", ts, renamedAt)
	})

	writers := []*Ctr{keep, skipName, skipLabel, optOut, outside, enabled, bad, renamedIn}
	for _, c := range writers {
		c.waitExited(t, time.Minute)
	}
	for _, c := range []*Ctr{keep, enabled, bad, renamedIn} {
		b.waitRecords(t, c.Name, selLines, time.Minute)
	}
	want := []struct {
		c                    *Ctr
		state, field, reason string
	}{
		{keep, "stopped", "selected_by", "include name=" + prefix + "*"},
		{skipName, "excluded", "excluded_by", "exclude name=*-skip-*"},
		{skipLabel, "excluded", "excluded_by", "exclude label=berth.e2e.sel=skip"},
		{optOut, "excluded", "excluded_by", "label berth.enable=false"},
		{outside, "excluded", "excluded_by", "no include rule matches"},
		{enabled, "stopped", "selected_by", "label berth.enable=true"},
		{bad, "stopped", "selected_by", "label berth.enable invalid (collected)"},
		{renamedIn, "stopped", "selected_by", "include name=" + prefix + "*"},
		{renamedOut, "excluded", "excluded_by", "exclude name=*-skip-*"},
	}
	for _, w := range want {
		e := b.statusEntry(t, w.c)
		if e["state"] != w.state || e[w.field] != w.reason {
			t.Errorf("%s: /status %s; want state %q, %s %q", w.c.Name, b.statusOf(t, w.c), w.state, w.field, w.reason)
		}
	}
	if errs, _ := b.statusEntry(t, bad)["label_errors"].([]any); len(errs) != 1 || !strings.Contains(fmt.Sprint(errs[0]), `berth.enable: "maybe" is neither true nor false`) {
		t.Errorf("%s: /status label_errors %v, want the bad berth.enable named", bad.Name, errs)
	}
	b.stop(t)

	// Selected: every line exactly once (the renamed-in one: its whole log,
	// written partly while it was excluded).
	for _, c := range []*Ctr{keep, enabled, bad, renamedIn} {
		checkShared(t, c, b.out.records(c.Name), selLines, 7)
		compareWithDocker(t, c, b.out.records(c.Name))
	}
	// Excluded: never a record (the renamed-out one: none written after
	// its rename, with 1 s for berth to see the event).
	for _, c := range []*Ctr{skipName, skipLabel, optOut, outside} {
		if n := b.out.count(c.Name); n != 0 {
			t.Errorf("%s is excluded; berth sent %d of its records", c.Name, n)
		}
	}
	outRecs := append(b.out.records(outOldName), b.out.records(renamedOut.Name)...)
	var seqs []int
	late := 0
	for _, r := range outRecs {
		if p, ok := lines.Parse(r.Body); ok {
			seqs = append(seqs, p.Seq)
		}
		if ts, err := time.Parse(time.RFC3339Nano, r.Timestamp); err == nil && ts.After(renamedAt.Add(time.Second)) {
			late++
		}
	}
	if late > 0 {
		t.Errorf("%s: %d records written more than 1 s after its rename out of the selection", renamedOut.Name, late)
	}
	if missing, dups := missingDups(seqs, len(seqs)); len(missing) > 0 || len(dups) > 0 {
		t.Errorf("%s: before its rename, %d records with gaps %s or duplicates %s", renamedOut.Name, len(seqs), ranges(missing), dupString(dups))
	}
	if len(seqs) < 20 {
		t.Errorf("%s: %d records before the rename, want at least 20", renamedOut.Name, len(seqs))
	}
	stderr, err := os.ReadFile(b.stderrPath)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(stderr), `berth.enable: \"maybe\" is neither true nor false`); n != 1 {
		t.Errorf("berth logged the bad berth.enable of %s %d times, want once", bad.Name, n)
	}
}

// TestSelectionOptIn: with opt_in, only the containers labelled
// berth.enable=true are read, each line exactly once; a container without
// the label and one labelled false are not.
func TestSelectionOptIn(t *testing.T) {
	needDocker(t)
	b := startBerth(t, BerthConfig{Extra: []string{"opt_in: true"}})
	b.waitSelReady(t, uniqueName(t, "canary"), map[string]string{"berth.enable": "true"})
	enabled := selWriter(t, uniqueName(t, "enabled"), map[string]string{"berth.enable": "TRUE"})
	plain := selWriter(t, uniqueName(t, "plain"), nil)
	off := selWriter(t, uniqueName(t, "off"), map[string]string{"berth.enable": "false"})
	for _, c := range []*Ctr{enabled, plain, off} {
		c.waitExited(t, time.Minute)
	}
	b.waitRecords(t, enabled.Name, selLines, time.Minute)
	b.waitStatus(t, plain, "excluded_by", "opt_in (no berth.enable=true label)")
	b.waitStatus(t, off, "excluded_by", "label berth.enable=false")
	b.waitStatus(t, enabled, "selected_by", "label berth.enable=true")
	b.stop(t)
	checkShared(t, enabled, b.out.records(enabled.Name), selLines, 7)
	for _, c := range []*Ctr{plain, off} {
		if n := b.out.count(c.Name); n != 0 {
			t.Errorf("%s is excluded; berth sent %d of its records", c.Name, n)
		}
	}
}
