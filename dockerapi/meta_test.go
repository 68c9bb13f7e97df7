package dockerapi

import (
	"reflect"
	"testing"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/logs"
)

// TestInspectSelectsLabels: the labels option chooses the labels a Meta
// exports, sorted by key; every label is still in Meta.Labels.
func TestInspectSelectsLabels(t *testing.T) {
	all := map[string]string{
		"com.docker.compose.service": "frontend",
		"com.example.tier":           "edge",
		"com.example.owner":          "ops",
		"team":                       "payments",
		"secret.token":               "not selected",
	}
	d := newFakeDaemon(t)
	d.setContainer("aaa", map[string]any{
		"Id":     "aaa",
		"Name":   "/web",
		"Config": map[string]any{"Image": "app:1", "Labels": all},
		"State":  map[string]any{"Running": true, "Status": "running"},
	})
	d.setContainer("bbb", map[string]any{
		"Id":     "bbb",
		"Name":   "/db",
		"Config": map[string]any{"Image": "db"},
		"State":  map[string]any{"Running": true, "Status": "running"},
	})
	for _, tc := range []struct {
		name      string
		selectors []string
		id        string
		want      []logs.Label
	}{
		{"none by default", nil, "aaa", nil},
		{"keys and a prefix", []string{"team", "com.example.*", "absent"}, "aaa", []logs.Label{
			{Key: "com.example.owner", Value: "ops"}, {Key: "com.example.tier", Value: "edge"}, {Key: "team", Value: "payments"},
		}},
		{"a container without labels", []string{"*"}, "bbb", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			selectors := append([]string(nil), tc.selectors...)
			c := newTestClient(t, d, config.Docker{Labels: selectors}, config.Bursts{})
			for i := range selectors {
				selectors[i] = "*" // the client keeps its own copy
			}
			m, err := c.Inspect(testCtx(t), tc.id)
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			if !reflect.DeepEqual(m.SelectedLabels, tc.want) {
				t.Errorf("SelectedLabels = %v, want %v", m.SelectedLabels, tc.want)
			}
			if tc.id == "aaa" && !reflect.DeepEqual(m.Labels, all) {
				t.Errorf("Labels = %v, want every label %v", m.Labels, all)
			}
		})
	}
}

// TestMetaOfEvent: a start event's attributes describe the container as an
// inspect would (name, image and tag, labels with the selected ones, the
// compose service), for a burst that reads before the inspect answers.
func TestMetaOfEvent(t *testing.T) {
	attrs := map[string]string{
		"name": "job", "image": "registry:5000/app:1.2",
		"com.docker.compose.service": "worker", "team": "payments", "other": "x",
	}
	m := metaOfEvent("c1", attrs, []string{"team"})
	want := &logs.Meta{
		ID: "c1", Name: "job", ImageName: "registry:5000/app", ImageTags: []string{"1.2"}, ServiceName: "worker",
		Labels:         map[string]string{"com.docker.compose.service": "worker", "team": "payments", "other": "x"},
		SelectedLabels: []logs.Label{{Key: "team", Value: "payments"}},
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("metaOfEvent = %+v\nwant %+v", m, want)
	}
	if m := metaOfEvent("c1", map[string]string{"image": "app"}, nil); m != nil {
		t.Errorf("attributes without a name gave %+v, want nil", m)
	}
}
