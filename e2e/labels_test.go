//go:build e2e

package e2e

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
)

// labelSelection is what both tests give berth: an exact key, a prefix, and
// a key no container carries.
var labelSelection = []string{"com.example.team", "berth.e2e.sel.*", "absent.key"}

// testLabels are the labels the labelled container carries besides the
// suite's own: the selection picks three of them.
var testLabels = map[string]string{
	"com.example.team":    "payments",          // selected: exact key
	"com.example.teams":   "not selected",      // longer than the exact key
	"berth.e2e.sel.tier":  "edge",              // selected: prefix
	"berth.e2e.sel.owner": `ops "night" shift`, // selected: prefix, a value JSON escapes
	"berth.e2e.selx":      "not selected",      // the prefix without its dot
	"other":               "not selected",
}

// wantLabels are the container.label.<key> attributes of the labelled
// container's records: exactly these.
var wantLabels = map[string]string{
	"container.label.com.example.team":    "payments",
	"container.label.berth.e2e.sel.tier":  "edge",
	"container.label.berth.e2e.sel.owner": `ops "night" shift`,
}

// TestLabels: berth, given a label selection in its YAML file, exports
// exactly the selected labels of a container as container.label.<key>, and
// none of a container whose labels the selection does not match.
func TestLabels(t *testing.T) {
	needDocker(t)
	extra := []string{"labels:"}
	for _, s := range labelSelection {
		extra = append(extra, "  - "+quote(s))
	}
	b := startBerth(t, BerthConfig{Extra: extra})
	checkLabels(t, b)
}

// TestLabelsFromEnvironment: the same selection, as the comma-separated
// BERTH_LABELS (with spaces around the entries), selects the same labels.
func TestLabelsFromEnvironment(t *testing.T) {
	needDocker(t)
	b := startBerthProc(t, BerthConfig{}, berthProc{Env: []string{"BERTH_LABELS=" + strings.Join(labelSelection, " , ")}})
	checkLabels(t, b)
}

// checkLabels runs a labelled container and a plain one (the suite's labels
// only) after berth, reads their records and checks their label attributes.
func checkLabels(t *testing.T, b *Berth) {
	t.Helper()
	b.waitReady(t)
	const n = 5
	labelled := runLabelled(t, uniqueName(t, "labelled"), testLabels, n)
	plain := runLabelled(t, uniqueName(t, "plain"), nil, n)
	b.waitRecords(t, labelled.Name, n, time.Minute)
	b.waitRecords(t, plain.Name, n, time.Minute)
	b.stop(t)

	for _, tc := range []struct {
		c    *Ctr
		want map[string]string
	}{
		{labelled, wantLabels},
		{plain, map[string]string{}},
	} {
		recs := b.out.records(tc.c.Name)
		if len(recs) != n {
			t.Errorf("%s: %d records, want %d", tc.c.Name, len(recs), n)
		}
		checkRecordMeta(t, tc.c, recs)
		for _, r := range recs {
			got := map[string]string{}
			for k, v := range r.Resource {
				if strings.HasPrefix(k, "container.label.") {
					s, ok := v.(string)
					if !ok {
						t.Errorf("%s: record at stdout line %d: %s is %T %v, want a string", tc.c.Name, r.Line, k, v, v)
					}
					got[k] = s
				}
			}
			if !maps.Equal(got, tc.want) {
				t.Fatalf("%s: record at stdout line %d has the label attributes\n%s\nwant exactly\n%s",
					tc.c.Name, r.Line, describeLabels(got), describeLabels(tc.want))
			}
		}
	}
}

// runLabelled creates and starts a generator container writing n lines, with
// the suite's labels, the given ones and no network; cleanup removes it.
func runLabelled(t *testing.T, name string, labels map[string]string, n int) *Ctr {
	t.Helper()
	all := map[string]string{labelKey: labelValue, runLabel: suite.runID}
	maps.Copy(all, labels)
	ctx, cancel := dctx(30 * time.Second)
	defer cancel()
	resp, err := suite.docker.ContainerCreate(ctx,
		&container.Config{Image: imageRef, Cmd: []string{"-n", fmt.Sprint(n)}, Labels: all},
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

// describeLabels lists label attributes one per line, in key order.
func describeLabels(m map[string]string) string {
	if len(m) == 0 {
		return "  (none)"
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "  %s = %q\n", k, m[k])
	}
	return strings.TrimSuffix(b.String(), "\n")
}
