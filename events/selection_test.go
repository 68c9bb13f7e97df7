package events

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/berthlog/berth/collectors"
	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/selection"
)

// selected is a listed running container with an image and labels.
func selected(id, name, image string, labels ...string) Container {
	c := Container{ID: id, Name: name, State: "running", Image: image, Labels: map[string]string{}}
	for i := 0; i+1 < len(labels); i += 2 {
		c.Labels[labels[i]] = labels[i+1]
	}
	return c
}

// TestSelectionAtStart: the containers listed at start are read or not as
// the rules and labels say, and /status says which rule decided.
func TestSelectionAtStart(t *testing.T) {
	h := newHarness(t)
	h.self = []string{"self"}
	h.src.setList(
		selected("web", "web-1", "nginx:1.25"),
		selected("api", "api-1", "api:2"),
		selected("dbg", "web-debug", "nginx:1.25"),
		selected("off", "web-2", "nginx:1.25", selection.EnableLabel, "false"),
		selected("on", "batch", "batch:1", selection.EnableLabel, "true"),
		selected("bad", "web-3", "nginx:1.25", selection.EnableLabel, "yes"),
		selected("self", "berth", "berth:latest"),
		selected("ml", "web-4", "app:1", "berth.multiline.preset", "cobol"),
		selected("px", "web-5", "app:1", "berth.parse", "xml"),
	)
	cfg := testConfig()
	cfg.Include = []string{"name=web-*"}
	cfg.Exclude = []string{"name=*-debug"}
	h.start(cfg)
	s := h.src.waitStream(t, 1)
	for _, id := range []string{"web", "on", "bad", "ml", "px"} {
		h.col.waitBurst(t, id, 1)
	}
	st := h.sync(s)
	want := map[string]struct {
		state               State
		selectedBy, exclude string
		labelError          string
	}{
		"web":  {StateStreaming, "include name=web-*", "", ""},
		"api":  {StateExcluded, "", selection.ReasonNoInclude, ""},
		"dbg":  {StateExcluded, "", "exclude name=*-debug", ""},
		"off":  {StateExcluded, "", selection.ReasonDisabled, ""},
		"on":   {StateStreaming, selection.ReasonEnabled, "", ""},
		"bad":  {StateStreaming, selection.ReasonBadLabel, "", `berth.enable: "yes" is neither true nor false`},
		"self": {StateExcluded, "", reasonSelf, ""},
		// A bad multiline label is reported; the container is collected
		// (with the configured rule).
		"ml": {StateStreaming, "include name=web-*", "", `berth.multiline.preset: unknown preset "cobol"`},
		// So is a bad berth.parse (the configured format applies).
		"px": {StateStreaming, "include name=web-*", "", `berth.parse: "xml" is not a format`},
	}
	for id, w := range want {
		c, ok := lookup(st, id)
		if !ok {
			t.Errorf("%s is not in the status", id)
			continue
		}
		if c.State != w.state || c.SelectedBy != w.selectedBy || c.ExcludedBy != w.exclude {
			t.Errorf("%s: state %s, selected_by %q, excluded_by %q; want %s, %q, %q", id, c.State, c.SelectedBy, c.ExcludedBy, w.state, w.selectedBy, w.exclude)
		}
		switch {
		case w.labelError == "" && len(c.LabelErrors) != 0:
			t.Errorf("%s: label errors %q, want none", id, c.LabelErrors)
		case w.labelError != "" && (len(c.LabelErrors) != 1 || !strings.Contains(c.LabelErrors[0], w.labelError)):
			t.Errorf("%s: label errors %q, want one containing %q", id, c.LabelErrors, w.labelError)
		}
	}
	for _, id := range []string{"api", "dbg", "off", "self"} {
		if n := len(h.col.of(id)); n != 0 {
			t.Errorf("%s is excluded but had %d bursts", id, n)
		}
	}
}

// TestSelectionFromEvents: a container first seen in its events is chosen by
// the name, image and labels the events carry (Docker copies the labels
// into the attributes).
func TestSelectionFromEvents(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig()
	// exitCode is an attribute Docker adds to a die event, not a label: the
	// container that has it must not be excluded by it.
	cfg.Exclude = []string{"image=busybox:*", "label=team=payments", "label=exitCode"}
	h.start(cfg)
	s := h.src.waitStream(t, 1)
	s.send(
		h.ev("start", "bb", "image", "busybox:1.36"),
		h.ev("start", "pay", "image", "app:1", "team", "payments"),
		h.ev("start", "off", "image", "app:1", selection.EnableLabel, "false"),
		h.ev("die", "ok", "image", "app:1", "exitCode", "0"),
		h.ev("start", "app", "image", "app:1", "team", "orders"),
	)
	h.col.waitBurst(t, "app", 1)
	b := h.col.waitBurst(t, "ok", 1)
	if b.spec.Follow {
		t.Errorf("%s: want a drain of the stopped container", b)
	}
	b.end(t, outcome{End: collectors.EndEOF})
	st := h.sync(s)
	for id, want := range map[string]string{"bb": "exclude image=busybox:*", "pay": "exclude label=team=payments", "off": selection.ReasonDisabled} {
		if c, _ := lookup(st, id); c.State != StateExcluded || c.ExcludedBy != want {
			t.Errorf("%s: %+v, want excluded by %q", id, c, want)
		}
		if n := len(h.col.of(id)); n != 0 {
			t.Errorf("%s is excluded but had %d bursts", id, n)
		}
	}
	if got := labelsOf(map[string]string{"name": "x", "image": "y", "exitCode": "1", "oldName": "/z", "signal": "15", "execDuration": "3", "team": "a"}); !maps.Equal(got, map[string]string{"team": "a"}) {
		t.Errorf("labelsOf = %v, want only the label team", got)
	}
}

// TestSelectionRename: a rename decides again. A container excluded by name
// and renamed to an included name is read from where berth would have
// started it (here: its first line, since it started after berth); renamed
// back to an excluded name, its burst is ended at once and it is excluded.
func TestSelectionRename(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig()
	cfg.Include = []string{"name=web-*"}
	h.start(cfg)
	s := h.src.waitStream(t, 1)
	s.send(h.ev("start", "c1", "name", "tmp-1"))
	st := h.sync(s)
	if c, _ := lookup(st, "c1"); c.State != StateExcluded || c.ExcludedBy != selection.ReasonNoInclude {
		t.Fatalf("before the rename: %+v, want excluded (no include rule matches)", c)
	}
	s.send(h.ev("rename", "c1", "name", "web-1", "oldName", "/tmp-1"))
	b := h.col.waitBurst(t, "c1", 1)
	if !b.spec.Follow || !b.spec.Cursor.IsBeginning() {
		t.Errorf("%s after the rename: follow=%v cursor=%+v, want a follow burst from the first line", b, b.spec.Follow, b.spec.Cursor)
	}
	c := h.waitState("c1", StateStreaming)
	if c.Name != "web-1" || c.SelectedBy != "include name=web-*" || c.ExcludedBy != "" {
		t.Errorf("after the rename: %+v, want web-1 selected by include name=web-*", c)
	}
	s.send(h.ev("rename", "c1", "name", "old-web-1", "oldName", "/web-1"))
	waitFor(t, "the burst of the container renamed out of the selection to end", b.returned, func() string { return h.col.describe("c1") })
	c = h.waitState("c1", StateExcluded)
	if c.ExcludedBy != selection.ReasonNoInclude || c.SelectedBy != "" {
		t.Errorf("after the second rename: %+v, want excluded by %q", c, selection.ReasonNoInclude)
	}
	consistently(t, 50*time.Millisecond, "no burst of the excluded container", func() bool { return len(h.col.of("c1")) == 1 })
}

// TestSelectionRenameAtEnd: with initial_position end, a container that
// existed when berth started and was excluded is read, once a rename
// selects it, from the time berth started (where berth would have started
// it), and that position is saved at once.
func TestSelectionRenameAtEnd(t *testing.T) {
	h := newHarness(t)
	cps := &memCheckpoints{cursors: map[string]logs.Cursor{}}
	h.cps = cps
	h.src.setList(selected("c1", "tmp-1", "app:1"))
	cfg := testConfig()
	cfg.InitialPosition = config.InitialPositionEnd
	cfg.Exclude = []string{"name=tmp-*"}
	h.start(cfg)
	s := h.src.waitStream(t, 1)
	h.waitState("c1", StateExcluded)
	if seeds := cps.seeds(); len(seeds) != 0 {
		t.Errorf("an excluded container's position was saved: %q", seeds)
	}
	s.send(h.ev("rename", "c1", "name", "app-1", "oldName", "/tmp-1"))
	b := h.col.waitBurst(t, "c1", 1)
	sub := h.src.subscribeCalls()[0].at
	if cur := b.spec.Cursor; !b.spec.Follow || cur.Threshold.Before(h.started) || cur.Threshold.After(sub) {
		t.Errorf("%s: follow=%v threshold %v, want a follow burst from berth's start, in [%v, %v]", b, b.spec.Follow, cur.Threshold, h.started, sub)
	}
	if seeds := cps.seeds(); len(seeds) != 1 || seeds[0] != "c1" {
		t.Errorf("seeds %q, want c1's starting position saved when it became collected", seeds)
	}
	if c := h.waitState("c1", StateStreaming); c.SelectedBy != selection.ReasonDefault {
		t.Errorf("%+v, want selected by default", c)
	}
}

// TestSelectionMissedRename: a rename while the events stream was down is
// caught by the list at the reconnect, and decided again.
func TestSelectionMissedRename(t *testing.T) {
	h := newHarness(t)
	h.src.setList(selected("c1", "web-1", "app:1"))
	cfg := testConfig()
	cfg.Exclude = []string{"name=old-*"}
	h.start(cfg)
	s := h.src.waitStream(t, 1)
	b := h.col.waitBurst(t, "c1", 1)
	h.src.setList(selected("c1", "old-web-1", "app:1"))
	s.fail(errSubscribe)
	h.src.waitStream(t, 2)
	waitFor(t, "the burst of the container renamed while disconnected to end", b.returned, func() string { return h.col.describe("c1") })
	if c := h.waitState("c1", StateExcluded); c.Name != "old-web-1" || c.ExcludedBy != "exclude name=old-*" {
		t.Errorf("%+v, want old-web-1 excluded by exclude name=old-*", c)
	}
}
