package config

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/structs"
	"github.com/knadh/koanf/v2"
)

// The settings' documentation, checked against Default() by
// TestDocsListEverySetting: the README's configuration table and the
// packaged berth.yaml.
const (
	readmePath      = "../README.md"
	packageYAMLPath = "../packaging/berth.yaml"
)

// resolved is the value a key whose Default() is empty takes from elsewhere,
// as the documentation states it; "" means the key has no default at all
// (the README says none, or names the OTEL_* variable it falls back to).
var resolved = map[string]string{
	"docker_host":         DefaultDockerHost,
	"otlp.endpoint":       "",
	"otlp.headers":        "",
	"otlp.protocol":       "http/protobuf",
	"otlp.compression":    "gzip",
	"otlp.timeout":        "10s", // the OTLP exporters' own default
	"labels":              "",
	"include":             "",
	"exclude":             "",
	"resource_attributes": "",
}

// examples are keys that berth.yaml shows with an example value (commented
// out), not their default, which is empty.
var examples = []string{"otlp.endpoint", "otlp.headers", "labels", "include", "exclude", "resource_attributes"}

// defaultSettings returns every key of Default() with its default as the
// documentation writes it.
func defaultSettings(t *testing.T) map[string]string {
	t.Helper()
	k := koanf.New(".")
	if err := k.Load(structs.Provider(Default(), "koanf"), nil); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, key := range k.Keys() {
		out[key] = formatValue(k.Get(key))
	}
	for key, v := range resolved {
		if _, ok := out[key]; !ok && key != "otlp.headers" && key != "labels" && key != "resource_attributes" {
			t.Errorf("resolved lists %s, which is not a key of Default()", key)
		}
		out[key] = v
	}
	return out
}

// readmeSettings parses the README's configuration table: key -> default cell.
func readmeSettings(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(data), "| key | default | meaning |")
	if !ok {
		t.Fatalf("%s has no configuration table (| key | default | meaning |)", readmePath)
	}
	row := regexp.MustCompile("^\\| `([a-z_.]+)` \\| (.*?) \\| .* \\|$")
	out := map[string]string{}
	for _, line := range strings.Split(table, "\n")[2:] {
		if !strings.HasPrefix(line, "|") {
			break
		}
		m := row.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("%s: configuration table row not understood: %s", readmePath, line)
			continue
		}
		if _, dup := out[m[1]]; dup {
			t.Errorf("%s: %s has two rows", readmePath, m[1])
		}
		out[m[1]] = m[2]
	}
	return out
}

// commentedKey is a commented-out setting of berth.yaml: "#key: value",
// "#  nested: value", "#  - list entry".
var commentedKey = regexp.MustCompile(`^#(\s*([a-z_]+:|- ))`)

// packageYAMLSettings reads berth.yaml with its commented-out settings
// uncommented: key -> value as written. It also returns the uncommented text.
func packageYAMLSettings(t *testing.T, leaves map[string]string) (map[string]string, string) {
	t.Helper()
	data, err := os.ReadFile(packageYAMLPath)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		if commentedKey.MatchString(line) {
			line = line[1:]
		}
		b.WriteString(line + "\n")
	}
	m, err := yaml.Parser().Unmarshal([]byte(b.String()))
	if err != nil {
		t.Fatalf("%s, uncommented, is not YAML: %v", packageYAMLPath, err)
	}
	out := map[string]string{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			key := prefix + k
			if sub, ok := v.(map[string]any); ok {
				if _, leaf := leaves[key]; !leaf {
					walk(key+".", sub)
					continue
				}
			}
			if _, dup := out[key]; dup {
				t.Errorf("%s: %s is set twice", packageYAMLPath, key)
			}
			out[key] = fmt.Sprint(v)
		}
	}
	walk("", m)
	return out, b.String()
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestDocsListEverySetting: the README's configuration table and
// packaging/berth.yaml list every key of Default(), and no other, each with
// its default, so that the documentation cannot drift from the code. A new
// setting needs a row in the table and an entry in berth.yaml.
func TestDocsListEverySetting(t *testing.T) {
	want := defaultSettings(t)
	readme := readmeSettings(t)
	yml, text := packageYAMLSettings(t, want)
	for _, key := range sortedKeys(want) {
		def := want[key]
		cell, ok := readme[key]
		switch {
		case !ok:
			t.Errorf("%s: the configuration table has no row for %s (default %q)", readmePath, key, def)
		case def == "" && !strings.Contains(cell, "none") && !strings.Contains(cell, "OTEL_EXPORTER_OTLP"):
			t.Errorf("%s: %s has no default; its row says %q, want none or the OTEL_EXPORTER_OTLP_* variable it falls back to", readmePath, key, cell)
		case def != "" && !strings.Contains(cell, "`"+def+"`"):
			t.Errorf("%s: the default of %s is `%s`; its row says %q", readmePath, key, def, cell)
		}
		got, ok := yml[key]
		switch {
		case !ok:
			t.Errorf("%s does not list %s (default %q)", packageYAMLPath, key, def)
		case slices.Contains(examples, key):
		case got != def:
			t.Errorf("%s: %s is shown as %q; its default is %q", packageYAMLPath, key, got, def)
		}
	}
	for _, key := range sortedKeys(readme) {
		if _, ok := want[key]; !ok {
			t.Errorf("%s: the configuration table has a row for %s, which is not a setting", readmePath, key)
		}
	}
	for _, key := range sortedKeys(yml) {
		if _, ok := want[key]; !ok && !strings.HasPrefix(key, "otlp.headers.") && !strings.HasPrefix(key, "resource_attributes.") {
			t.Errorf("%s lists %s, which is not a setting", packageYAMLPath, key)
		}
	}
	// Uncommented as a whole, the file is a configuration berth accepts.
	path := filepath.Join(t.TempDir(), "berth.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, nil, nil)
	if err != nil {
		t.Fatalf("%s, uncommented, does not load: %v", packageYAMLPath, err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("%s, uncommented, is not valid: %v", packageYAMLPath, err)
	}
}
