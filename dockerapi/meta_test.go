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
		"com.docker.compose.service": "worker", "com.docker.compose.project": "shop", "team": "payments", "other": "x",
	}
	static := []logs.Label{{Key: "deployment.environment", Value: "prod"}}
	m := metaOfEvent("c1", attrs, describer{selectors: []string{"team"}, static: static})
	want := &logs.Meta{
		ID: "c1", Name: "job", ImageName: "registry:5000/app", ImageTags: []string{"1.2"}, ServiceName: "worker",
		ServiceNamespace: "shop",
		Labels:           map[string]string{"com.docker.compose.service": "worker", "com.docker.compose.project": "shop", "team": "payments", "other": "x"},
		SelectedLabels:   []logs.Label{{Key: "team", Value: "payments"}},
		Static:           static,
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("metaOfEvent = %+v\nwant %+v", m, want)
	}
	if m := metaOfEvent("c1", map[string]string{"image": "app"}, describer{}); m != nil {
		t.Errorf("attributes without a name gave %+v, want nil", m)
	}
}

// TestInspectImage: an inspect gives the image's ID and, from the image
// inspect, its repo digests, asked once per image; the compose labels name
// the service and its namespace; the static attributes are on every Meta.
func TestInspectImage(t *testing.T) {
	d := newFakeDaemon(t)
	d.setContainer("aaa", map[string]any{
		"Id": "aaa", "Name": "/shop-web-1", "Image": "sha256:1111",
		"Config": map[string]any{"Image": "app", "Labels": map[string]string{
			"com.docker.compose.project": "shop", "com.docker.compose.service": "web"}},
		"State": map[string]any{"Running": true, "Status": "running"},
	})
	d.setImage("sha256:1111", map[string]any{"Id": "sha256:1111", "RepoDigests": []string{"registry/app@sha256:bbbb", "app@sha256:aaaa"}})
	c := newTestClient(t, d, config.Docker{ResourceAttributes: map[string]string{"team": "payments", "deployment.environment": "prod"}}, config.Bursts{})
	for range 2 {
		m, err := c.Inspect(testCtx(t), "aaa")
		if err != nil {
			t.Fatalf("Inspect: %v", err)
		}
		want := &logs.Meta{ID: "aaa", Name: "shop-web-1", ImageName: "app", ImageTags: []string{"latest"}, ImageID: "sha256:1111",
			ImageRepoDigests: []string{"app@sha256:aaaa", "registry/app@sha256:bbbb"}, ServiceName: "web", ServiceNamespace: "shop",
			Static: []logs.Label{{Key: "deployment.environment", Value: "prod"}, {Key: "team", Value: "payments"}}, Running: true}
		m.Labels = nil
		if !reflect.DeepEqual(m, want) {
			t.Errorf("Inspect = %+v\nwant %+v", m, want)
		}
	}
	if n := d.imageInspects(); n != 1 {
		t.Errorf("%d image inspects for two container inspects, want 1", n)
	}
}
