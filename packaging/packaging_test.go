// Package packaging_test checks the files users copy from packaging/: the
// container image's config, and the compose quick start of README.md ("Run
// as a container"), which no test otherwise runs (its images are pulled).
package packaging_test

import (
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/knadh/koanf/parsers/yaml"

	"github.com/berthlog/berth/config"
)

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseYAML(t *testing.T, name string) map[string]any {
	t.Helper()
	m, err := yaml.Parser().Unmarshal(readFile(t, name))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

// get walks m by keys; nil if any is missing.
func get(m any, keys ...string) any {
	for _, k := range keys {
		mm, ok := m.(map[string]any)
		if !ok {
			return nil
		}
		m = mm[k]
	}
	return m
}

func strs(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, x := range list {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// mounts maps a service's mount targets to "source[:options]".
func mounts(svc any) map[string]string {
	out := map[string]string{}
	for _, v := range strs(get(svc, "volumes")) {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			continue
		}
		src := parts[0]
		if len(parts) > 2 {
			src += ":" + parts[2]
		}
		out[parts[1]] = src
	}
	return out
}

// environ is a service's environment (a map) as KEY=value lines.
func environ(svc any) []string {
	var out []string
	env, _ := get(svc, "environment").(map[string]any)
	for k, v := range env {
		s, _ := v.(string)
		out = append(out, k+"="+s)
	}
	return out
}

func port(t *testing.T, hostport string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("%q: %v", hostport, err)
	}
	return p
}

// TestContainerConfig: the image's config is valid and serves its
// endpoints where a published port reaches them.
func TestContainerConfig(t *testing.T) {
	cfg, err := config.Load("container.yaml", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.StateDir != "/var/lib/berth" {
		t.Errorf("state_dir %q, want /var/lib/berth (the image's volume)", cfg.StateDir)
	}
	if host, _, _ := net.SplitHostPort(cfg.HTTPAddr); host != "0.0.0.0" {
		t.Errorf("http_addr %q: in a container, only 0.0.0.0 is reachable through a published port", cfg.HTTPAddr)
	}
	df := string(readFile(t, "Dockerfile"))
	for _, want := range []string{"FROM scratch", "COPY packaging/container.yaml /etc/berth/berth.yaml", `VOLUME ["` + cfg.StateDir + `"]`, "USER 65532:65532", "EXPOSE " + port(t, cfg.HTTPAddr)} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile has no %q", want)
		}
	}
}

// TestCompose: compose.yaml's services, the socket mount, berth's config
// (container.yaml plus the service's environment, through config.Load), and
// the Collector's config that receives what berth sends and writes it to a
// mounted directory. README.md shows both files as they are here.
func TestCompose(t *testing.T) {
	c := parseYAML(t, "compose.yaml")
	services, _ := get(c, "services").(map[string]any)
	if len(services) != 2 || services["berth"] == nil || services["otelcol"] == nil {
		t.Fatalf("services %v, want berth and otelcol", services)
	}
	berth, otelcol := services["berth"], services["otelcol"]

	if img, _ := get(berth, "image").(string); !strings.HasPrefix(img, "berthlog/berth:") {
		t.Errorf("berth's image %q, want berthlog/berth:<tag> (.goreleaser.yaml, dockers)", img)
	}
	bm := mounts(berth)
	if got := bm["/var/run/docker.sock"]; got != "/var/run/docker.sock:ro" {
		t.Errorf("berth mounts %q at /var/run/docker.sock, want the host's socket read-only", got)
	}
	if len(strs(get(berth, "group_add"))) != 1 {
		t.Errorf("berth's group_add %v, want the socket's group (user 65532 reads the socket through it)", get(berth, "group_add"))
	}

	cfg, err := config.Load("container.yaml", environ(berth), nil)
	if err != nil {
		t.Fatalf("berth's config (container.yaml and compose.yaml's environment): %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("berth's config (container.yaml and compose.yaml's environment): %v", err)
	}
	if vol := bm[cfg.StateDir]; vol == "" || !slices.Contains(keys(get(c, "volumes")), vol) {
		t.Errorf("state_dir %s is not a named volume of compose.yaml (mounts %v)", cfg.StateDir, bm)
	}
	wantPublished := "127.0.0.1:" + port(t, cfg.HTTPAddr) + ":" + port(t, cfg.HTTPAddr)
	if got := strs(get(berth, "ports")); !slices.Equal(got, []string{wantPublished}) {
		t.Errorf("berth's ports %v, want [%s]: its endpoints need no credentials, publish them on loopback", got, wantPublished)
	}

	// berth's OTLP endpoint is the Collector's HTTP receiver.
	ep, err := url.Parse(cfg.OTLP.Endpoint)
	if err != nil || ep.Scheme != "http" || ep.Hostname() != "otelcol" {
		t.Fatalf("berth's otlp.endpoint %q, want http://otelcol:<port>", cfg.OTLP.Endpoint)
	}
	if dep := strs(get(berth, "depends_on")); !slices.Equal(dep, []string{"otelcol"}) {
		t.Errorf("berth depends_on %v, want [otelcol]", dep)
	}
	args := strs(get(otelcol, "command"))
	if len(args) != 1 || !strings.HasPrefix(args[0], "--config=") {
		t.Fatalf("otelcol's command %v, want [--config=<path>]", args)
	}
	om := mounts(otelcol)
	confSrc := om[strings.TrimPrefix(args[0], "--config=")]
	if confSrc != "./otelcol.yaml:ro" {
		t.Fatalf("otelcol's --config file is mounted from %q, want ./otelcol.yaml:ro", confSrc)
	}
	oc := parseYAML(t, "otelcol.yaml")
	recv, _ := get(oc, "receivers", "otlp", "protocols", "http", "endpoint").(string)
	if port(t, recv) != ep.Port() {
		t.Errorf("the Collector receives OTLP/HTTP on %q, berth sends to %q", recv, cfg.OTLP.Endpoint)
	}
	out, _ := get(oc, "exporters", "file", "path").(string)
	if src := om[path.Dir(out)]; !strings.HasPrefix(src, "./") {
		t.Errorf("the file exporter writes %q, which is not in a directory mounted from the host (mounts %v)", out, om)
	}
	logs := get(oc, "service", "pipelines", "logs")
	if !slices.Equal(strs(get(logs, "receivers")), []string{"otlp"}) || !slices.Equal(strs(get(logs, "exporters")), []string{"file"}) {
		t.Errorf("the logs pipeline %v, want otlp -> file", logs)
	}

	readme := string(readFile(t, "../README.md"))
	for _, f := range []string{"compose.yaml", "otelcol.yaml"} {
		if !strings.Contains(readme, "```yaml\n"+string(readFile(t, f))+"```\n") {
			t.Errorf("README.md does not show packaging/%s as it is (a ```yaml block)", f)
		}
	}
}

func keys(m any) []string {
	mm, _ := m.(map[string]any)
	var out []string
	for k := range mm {
		out = append(out, k)
	}
	return out
}

// TestComposeConfig runs `docker compose config` (or Debian's docker-compose)
// on compose.yaml where one is installed: the Compose implementation's own
// check. TestCompose is the check that always runs.
func TestComposeConfig(t *testing.T) {
	var cmd *exec.Cmd
	if err := exec.Command("docker", "compose", "version").Run(); err == nil {
		cmd = exec.Command("docker", "compose", "-f", "compose.yaml", "config", "-q")
	} else if p, err := exec.LookPath("docker-compose"); err == nil {
		cmd = exec.Command(p, "-f", "compose.yaml", "config", "-q")
	} else {
		t.Skip("neither `docker compose` nor docker-compose is installed (TestCompose checks the file)")
	}
	cmd.Env = append(os.Environ(), "DOCKER_GID=999")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
}
