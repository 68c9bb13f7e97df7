package logs

import (
	"reflect"
	"testing"
)

func TestSelectLabels(t *testing.T) {
	labels := map[string]string{
		"team":                       "payments",
		"teams":                      "x",
		"com.example.tier":           "edge",
		"com.example.owner":          "ops",
		"com.examplex":               "not under com.example.",
		"com.docker.compose.service": "web",
		"empty":                      "",
	}
	tests := []struct {
		name      string
		labels    map[string]string
		selectors []string
		want      []Label
	}{
		{"no selector selects nothing", labels, nil, nil},
		{"empty selection selects nothing", labels, []string{}, nil},
		{"no labels", nil, []string{"team", "*"}, nil},
		{"exact key only, not a longer one", labels, []string{"team"}, []Label{{"team", "payments"}}},
		{"missing key", labels, []string{"absent"}, nil},
		{"empty value is kept", labels, []string{"empty"}, []Label{{"empty", ""}}},
		{"prefix, sorted by key", labels, []string{"com.example.*"}, []Label{
			{"com.example.owner", "ops"}, {"com.example.tier", "edge"},
		}},
		{"prefix without the dot", labels, []string{"com.example*"}, []Label{
			{"com.example.owner", "ops"}, {"com.example.tier", "edge"}, {"com.examplex", "not under com.example."},
		}},
		{"prefix matches a key equal to it", labels, []string{"team*"}, []Label{{"team", "payments"}, {"teams", "x"}}},
		{"overlapping selectors give each label once", labels, []string{"com.example.*", "com.example.tier", "com.*"}, []Label{
			{"com.docker.compose.service", "web"}, {"com.example.owner", "ops"}, {"com.example.tier", "edge"}, {"com.examplex", "not under com.example."},
		}},
		{"lone star selects every label", map[string]string{"b": "2", "a": "1"}, []string{"*"}, []Label{{"a", "1"}, {"b", "2"}}},
		{"keys and prefixes together", labels, []string{"team", "com.docker.*"}, []Label{
			{"com.docker.compose.service", "web"}, {"team", "payments"},
		}},
		{"case matters", labels, []string{"TEAM", "COM.*"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := SelectLabels(tc.labels, tc.selectors); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("SelectLabels(%v) = %v, want %v", tc.selectors, got, tc.want)
			}
		})
	}
}
