package selection

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"web", "web", true},
		{"web", "web-1", false},
		{"web-*", "web-1", true},
		{"web-*", "web-", true},
		{"web-*", "api-1", false},
		{"*", "", true},
		{"", "", true},
		{"", "a", false},
		{"*-db", "orders-db", true},
		{"*-db", "orders-db-1", false},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"a*b", "abab", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"a?c", "aéc", true},                                // ? is one character, not one byte
		{"registry:5000/*", "registry:5000/team/app", true}, // * crosses /
		{"[ab]", "a", false},                                // no classes: [ is a plain character
		{"[ab]", "[ab]", true},
		{`a\*`, `a\x`, true}, // no escapes: \ is a plain character
		{"**", "anything", true},
		{"*", "*0", true}, // a * in the string is a plain character
	}
	for _, tt := range tests {
		if got := Match(tt.pattern, tt.s); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

// globRegexp is Match's meaning written as a regular expression: the
// reference FuzzMatch compares Match with.
func globRegexp(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`^`)
	for _, r := range pattern {
		switch r {
		case '*':
			b.WriteString(`(?s:.*)`)
		case '?':
			b.WriteString(`(?s:.)`)
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString(`$`)
	return regexp.MustCompile(b.String())
}

// FuzzMatch: Match agrees with the regular expression its documentation
// describes, on any pattern and string of valid UTF-8.
func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{{"web-*", "web-1"}, {"a*b*c", "aXbXc"}, {"a?c", "aéc"}, {"*x*", "yyy"}, {"??", "é"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if !utf8.ValidString(pattern) || !utf8.ValidString(s) || len(pattern) > 64 {
			t.Skip()
		}
		if got, want := Match(pattern, s), globRegexp(pattern).MatchString(s); got != want {
			t.Fatalf("Match(%q, %q) = %v; the regular expression says %v", pattern, s, got, want)
		}
	})
}

func TestParseRuleErrors(t *testing.T) {
	tests := []struct{ rule, want string }{
		{"", "is empty"},
		{" name=web", "spaces around it"},
		{"web-*", "has no '='"},
		{"nmae=web-*", `"nmae" is not a kind of rule`},
		{"Name=web", `"Name" is not a kind of rule`},
		{"name=", "empty name"},
		{"image=", "empty image"},
		{"label=", "empty label key"},
		{"label==x", "empty label key"},
	}
	for _, tt := range tests {
		_, err := ParseRule(tt.rule)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseRule(%q) = %v, want an error containing %q", tt.rule, err, tt.want)
		}
	}
	for _, ok := range []string{"name=web", "name=/web", "image=nginx", "image=nginx:*", "label=team", "label=team=", "label=a=b=c", "label=com.example.*=pay*"} {
		if _, err := ParseRule(ok); err != nil {
			t.Errorf("ParseRule(%q): %v", ok, err)
		}
	}
}

func TestRuleMatch(t *testing.T) {
	web := Container{Name: "web-1", Image: "nginx:1.25", Labels: map[string]string{"team": "payments", "tier": "", "com.example.owner": "ops"}}
	tests := []struct {
		rule  string
		c     Container
		match bool
	}{
		{"name=web-*", web, true},
		{"name=/web-1", web, true},
		{"name=web", web, false},
		{"name=web-1", Container{Name: "/web-1"}, true},
		// image: without a tag, the repository; with one, repository:tag
		{"image=nginx", web, true},
		{"image=nginx:1.25", web, true},
		{"image=nginx:1.*", web, true},
		{"image=nginx:1.24", web, false},
		{"image=ngin", web, false},
		{"image=nginx:*", Container{Image: "nginx"}, true},
		{"image=nginx:latest", Container{Image: "nginx"}, true},                      // no tag is latest
		{"image=nginx", Container{Image: "docker.io/library/nginx:1"}, true},         // Docker Hub's short form
		{"image=docker.io/library/nginx:1", Container{Image: "nginx:1"}, true},       // both ways
		{"image=library/nginx", Container{Image: "nginx"}, true},                     //
		{"image=grafana/*", Container{Image: "docker.io/grafana/loki:3.0"}, true},    //
		{"image=registry:5000/app", Container{Image: "registry:5000/app:2"}, true},   // a port is not a tag
		{"image=registry:5000/app:2", Container{Image: "registry:5000/app:2"}, true}, //
		{"image=registry:5000/app:3", Container{Image: "registry:5000/app:2"}, false},
		{"image=registry:5000/*", Container{Image: "registry:5000/team/app"}, true},
		{"image=nginx", Container{Image: "nginx@sha256:0123"}, true},     // digest: the repository matches
		{"image=nginx:*", Container{Image: "nginx@sha256:0123"}, false},  // but it has no tag
		{"image=nginx:1", Container{Image: "nginx:1@sha256:0123"}, true}, // tag and digest
		{"image=sha256:01*", Container{Image: "sha256:0123"}, true},      // created from an ID
		{"image=nginx:*", Container{Image: "sha256:0123"}, false},        //
		// labels: a key, or key=value, globs in both
		{"label=team", web, true},
		{"label=team=payments", web, true},
		{"label=team=pay*", web, true},
		{"label=team=orders", web, false},
		{"label=tier=", web, true},
		{"label=tier", web, true},
		{"label=com.example.*", web, true},
		{"label=com.example.*=ops", web, true},
		{"label=com.example.*=dev", web, false},
		{"label=absent", web, false},
		{"label=team", Container{}, false},
	}
	for _, tt := range tests {
		r, err := ParseRule(tt.rule)
		if err != nil {
			t.Fatalf("ParseRule(%q): %v", tt.rule, err)
		}
		if got := r.Match(tt.c); got != tt.match {
			t.Errorf("%s on %+v: match = %v, want %v", tt.rule, tt.c, got, tt.match)
		}
	}
}

func TestDecide(t *testing.T) {
	labelled := func(name, image string, kv ...string) Container {
		c := Container{Name: name, Image: image, Labels: map[string]string{}}
		for i := 0; i+1 < len(kv); i += 2 {
			c.Labels[kv[i]] = kv[i+1]
		}
		return c
	}
	type want struct {
		collect  bool
		reason   string
		labelErr string
	}
	tests := []struct {
		name             string
		include, exclude []string
		optIn            bool
		c                Container
		want             want
	}{
		{"no rules: everything", nil, nil, false, labelled("a", "x"), want{true, ReasonDefault, ""}},
		{"an exclude rule that matches", nil, []string{"name=a*"}, false, labelled("ab", "x"), want{false, "exclude name=a*", ""}},
		{"an exclude rule that does not match", nil, []string{"name=a*"}, false, labelled("b", "x"), want{true, ReasonDefault, ""}},
		{"the first exclude rule that matches decides", nil, []string{"image=y", "name=b", "label=t"}, false, labelled("b", "x", "t", "1"), want{false, "exclude name=b", ""}},
		{"an include rule that matches", []string{"image=x:*"}, nil, false, labelled("a", "x:1"), want{true, "include image=x:*", ""}},
		{"include rules none of which matches", []string{"image=y", "name=b"}, nil, false, labelled("a", "x"), want{false, ReasonNoInclude, ""}},
		{"exclude wins over include", []string{"name=*"}, []string{"label=team=payments"}, false, labelled("a", "x", "team", "payments"), want{false, "exclude label=team=payments", ""}},
		{"the first include rule that matches decides", []string{"label=t", "name=a"}, nil, false, labelled("a", "x"), want{true, "include name=a", ""}},
		{"berth.enable=false opts out", nil, nil, false, labelled("a", "x", EnableLabel, "false"), want{false, ReasonDisabled, ""}},
		{"berth.enable=FALSE, in any case", nil, nil, false, labelled("a", "x", EnableLabel, "FALSE"), want{false, ReasonDisabled, ""}},
		{"berth.enable=false wins over an include rule", []string{"name=a"}, nil, false, labelled("a", "x", EnableLabel, "false"), want{false, ReasonDisabled, ""}},
		{"berth.enable=true wins over an exclude rule", nil, []string{"name=a"}, false, labelled("a", "x", EnableLabel, "true"), want{true, ReasonEnabled, ""}},
		{"berth.enable=true wins over include rules that do not match", []string{"name=b"}, nil, false, labelled("a", "x", EnableLabel, "True"), want{true, ReasonEnabled, ""}},
		{"opt_in: labelled true", nil, nil, true, labelled("a", "x", EnableLabel, "true"), want{true, ReasonEnabled, ""}},
		{"opt_in: not labelled", nil, nil, true, labelled("a", "x"), want{false, ReasonOptIn, ""}},
		{"opt_in: labelled false", nil, nil, true, labelled("a", "x", EnableLabel, "false"), want{false, ReasonDisabled, ""}},
		{"a bad berth.enable is collected and reported", nil, nil, false, labelled("a", "x", EnableLabel, "yes"), want{true, ReasonBadLabel, `berth.enable: "yes" is neither true nor false`}},
		{"a bad berth.enable is collected despite an exclude rule", nil, []string{"name=a"}, false, labelled("a", "x", EnableLabel, ""), want{true, ReasonBadLabel, `berth.enable: "" is neither`}},
		{"a bad berth.enable is collected in opt_in mode", nil, nil, true, labelled("a", "x", EnableLabel, "1"), want{true, ReasonBadLabel, `berth.enable: "1" is neither`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.include, tt.exclude, tt.optIn)
			if err != nil {
				t.Fatal(err)
			}
			d := r.Decide(tt.c)
			if d.Collect != tt.want.collect || d.Reason != tt.want.reason || !strings.Contains(d.LabelError, tt.want.labelErr) || (tt.want.labelErr == "") != (d.LabelError == "") {
				t.Errorf("Decide(%+v) = %+v, want %+v", tt.c, d, tt.want)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	_, err := New([]string{"name=a", "nmae=b"}, []string{"", "label=x"}, false)
	for _, want := range []string{`include: entry 2 "nmae=b": "nmae" is not a kind of rule`, `exclude: entry 1 "": is empty`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New: %v, want an error containing %q", err, want)
		}
	}
	for _, lists := range [][2][]string{{{"name=a"}, nil}, {nil, {"name=a"}}} {
		_, err := New(lists[0], lists[1], true)
		if err == nil || !strings.Contains(err.Error(), "opt_in: true collects exactly the containers labelled berth.enable=true") {
			t.Errorf("New(%q, %q, opt_in): %v, want the opt_in error", lists[0], lists[1], err)
		}
	}
	if _, err := New(nil, nil, true); err != nil {
		t.Errorf("New(opt_in alone): %v", err)
	}
}
