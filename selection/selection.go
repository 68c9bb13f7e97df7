// Package selection decides which containers berth collects: include and
// exclude rules by name, image and label (with globs), the opt-in mode and
// the berth.enable label. It is pure (no I/O, no clock) and imports nothing
// of berth; config validates rules with ParseRule, events decides with
// Rules.Decide.
package selection

import (
	"errors"
	"fmt"
	"strings"
)

// EnableLabel is the label by which a container says whether berth collects
// it: "true" or "false" (in any case). It overrides the rules.
const EnableLabel = "berth.enable"

// Container is what the rules look at.
type Container struct {
	Name   string            // without the leading "/"
	Image  string            // the reference it was created from, e.g. nginx:1.25 or sha256:...
	Labels map[string]string // all its labels
}

// Decision is whether a container is collected, and why.
type Decision struct {
	// Collect says whether berth reads the container's log.
	Collect bool
	// Reason is the rule that decided, as /status shows it: "default",
	// "include name=web-*", "exclude image=nginx:*", "label berth.enable=false",
	// "opt_in", "no include rule matches", ...
	Reason string
	// LabelError reports a berth.enable value that is neither true nor
	// false, naming the value and the fix; the container is then collected.
	// Empty when there is none.
	LabelError string
}

// The reasons that are not a rule of the configuration.
const (
	// ReasonDefault: no rule applies, and berth collects every container.
	ReasonDefault = "default"
	// ReasonNoInclude: include rules are set and none matches.
	ReasonNoInclude = "no include rule matches"
	// ReasonOptIn: opt_in is on and the container is not labelled
	// berth.enable=true.
	ReasonOptIn = "opt_in (no berth.enable=true label)"
	// ReasonEnabled and ReasonDisabled: the container's berth.enable label.
	ReasonEnabled  = "label " + EnableLabel + "=true"
	ReasonDisabled = "label " + EnableLabel + "=false"
	// ReasonBadLabel: the berth.enable label is neither true nor false (see
	// Decision.LabelError); the container is collected.
	ReasonBadLabel = "label " + EnableLabel + " invalid (collected)"
)

// kind is what a rule looks at.
type kind string

const (
	kindName  kind = "name"
	kindImage kind = "image"
	kindLabel kind = "label"
)

// Rule is one include or exclude entry: name=PATTERN, image=PATTERN,
// label=KEY or label=KEY=VALUE. Patterns are globs (see Match).
type Rule struct {
	text     string
	kind     kind
	pattern  string // name, image, or label key
	value    string // label value
	hasValue bool   // label=KEY=VALUE rather than label=KEY
	withTag  bool   // an image pattern with a tag: matched against repository:tag
}

// ruleHelp ends every parse error: the syntax, with examples.
const ruleHelp = "write name=PATTERN, image=PATTERN or label=KEY[=VALUE], e.g. name=web-*, image=nginx:1.*, label=com.example.team=payments (* matches any characters, ? one)"

// ParseRule parses one include or exclude entry.
func ParseRule(s string) (Rule, error) {
	if strings.TrimSpace(s) == "" {
		return Rule{}, errors.New("is empty; " + ruleHelp)
	}
	if strings.TrimSpace(s) != s {
		return Rule{}, errors.New("has spaces around it; remove them")
	}
	k, pattern, ok := strings.Cut(s, "=")
	if !ok {
		return Rule{}, fmt.Errorf("has no '='; %s", ruleHelp)
	}
	r := Rule{text: s, kind: kind(k), pattern: pattern}
	switch r.kind {
	case kindName:
		r.pattern = strings.TrimPrefix(pattern, "/")
	case kindImage:
		r.withTag = hasTag(pattern)
		r.pattern = familiar(pattern)
	case kindLabel:
		r.pattern, r.value, r.hasValue = strings.Cut(pattern, "=")
	default:
		return Rule{}, fmt.Errorf("%q is not a kind of rule; %s", k, ruleHelp)
	}
	if r.pattern == "" {
		return Rule{}, fmt.Errorf("has an empty %s; %s", map[kind]string{kindName: "name", kindImage: "image", kindLabel: "label key"}[r.kind], ruleHelp)
	}
	return r, nil
}

// String returns the rule as it was written.
func (r Rule) String() string { return r.text }

// Match reports whether the rule matches c.
func (r Rule) Match(c Container) bool {
	switch r.kind {
	case kindName:
		return Match(r.pattern, strings.TrimPrefix(c.Name, "/"))
	case kindImage:
		repo, tag := splitRef(c.Image)
		if r.withTag {
			if tag == "" {
				return Match(r.pattern, repo)
			}
			return Match(r.pattern, repo+":"+tag)
		}
		return Match(r.pattern, repo)
	case kindLabel:
		for k, v := range c.Labels {
			if Match(r.pattern, k) && (!r.hasValue || Match(r.value, v)) {
				return true
			}
		}
	}
	return false
}

// Rules is a parsed selection: include and exclude rules, and the opt-in
// mode.
type Rules struct {
	include, exclude []Rule
	optIn            bool
}

// New parses a selection. Each error names the list (include or exclude),
// the entry and the fix; opt_in cannot be combined with rules, since only
// the berth.enable label decides then.
func New(include, exclude []string, optIn bool) (*Rules, error) {
	r := &Rules{optIn: optIn}
	var errs []error
	parse := func(key string, list []string) []Rule {
		var out []Rule
		for i, s := range list {
			rule, err := ParseRule(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: entry %d %q: %w", key, i+1, s, err))
				continue
			}
			out = append(out, rule)
		}
		return out
	}
	r.include = parse("include", include)
	r.exclude = parse("exclude", exclude)
	if optIn && (len(include) > 0 || len(exclude) > 0) {
		errs = append(errs, errors.New("opt_in: true collects exactly the containers labelled berth.enable=true, so include and exclude have no effect with it; remove them, or set opt_in: false"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

// Decide says whether berth collects c, and why. In order: the berth.enable
// label (true collects, false excludes, any other value is reported and
// collects); opt_in (no berth.enable=true: excluded); the first exclude
// rule that matches; the first include rule that matches, or, with include
// rules set, none (excluded); else collected by default.
func (r *Rules) Decide(c Container) Decision {
	if v, ok := c.Labels[EnableLabel]; ok {
		switch {
		case strings.EqualFold(v, "true"):
			return Decision{Collect: true, Reason: ReasonEnabled}
		case strings.EqualFold(v, "false"):
			return Decision{Collect: false, Reason: ReasonDisabled}
		}
		return Decision{Collect: true, Reason: ReasonBadLabel,
			LabelError: fmt.Sprintf("%s: %q is neither true nor false; the container is collected as if it had no such label (write %s=true or %s=false)", EnableLabel, v, EnableLabel, EnableLabel)}
	}
	if r.optIn {
		return Decision{Collect: false, Reason: ReasonOptIn}
	}
	for _, rule := range r.exclude {
		if rule.Match(c) {
			return Decision{Collect: false, Reason: "exclude " + rule.text}
		}
	}
	if len(r.include) == 0 {
		return Decision{Collect: true, Reason: ReasonDefault}
	}
	for _, rule := range r.include {
		if rule.Match(c) {
			return Decision{Collect: true, Reason: "include " + rule.text}
		}
	}
	return Decision{Collect: false, Reason: ReasonNoInclude}
}

// Match reports whether s matches the glob pattern: * matches any run of
// characters (none included, / included), ? exactly one character; every
// other character matches itself. There is no escape and no character
// class, so no pattern is malformed.
func Match(pattern, s string) bool {
	p, t := []rune(pattern), []rune(s)
	// Iterative matching with one backtrack point: the last * seen and
	// where in t it started matching.
	pi, ti := 0, 0
	star, mark := -1, 0
	for ti < len(t) {
		switch {
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, ti
			pi++
		case pi < len(p) && (p[pi] == '?' || p[pi] == t[ti]):
			pi++
			ti++
		case star >= 0:
			pi = star + 1
			mark++
			ti = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// hasTag reports whether an image reference (or pattern) has a tag: a ':'
// after its last '/' (a ':' before it is a registry's port).
func hasTag(ref string) bool {
	ref, _, _ = strings.Cut(ref, "@")
	return strings.LastIndexByte(ref, ':') > strings.LastIndexByte(ref, '/')
}

// splitRef splits an image reference into its repository, in the short
// form docker prints (docker.io/library/nginx is nginx), and its tag:
// latest when it has neither tag nor digest, "" when it has only a digest.
// An image ID (sha256:...) is its own repository, without a tag.
func splitRef(ref string) (repo, tag string) {
	if strings.HasPrefix(ref, "sha256:") {
		return ref, ""
	}
	name, _, hasDigest := strings.Cut(ref, "@")
	if hasTag(name) {
		i := strings.LastIndexByte(name, ':')
		return familiar(name[:i]), name[i+1:]
	}
	if hasDigest {
		return familiar(name), ""
	}
	return familiar(name), "latest"
}

// familiar drops Docker Hub's registry and its library/ namespace from a
// reference or pattern: docker.io/library/nginx:1 is nginx:1,
// docker.io/grafana/loki is grafana/loki, library/nginx is nginx.
func familiar(ref string) string {
	for _, hub := range []string{"docker.io/", "index.docker.io/", "registry-1.docker.io/"} {
		if rest, ok := strings.CutPrefix(ref, hub); ok {
			ref = rest
			break
		}
	}
	if lib, ok := strings.CutPrefix(ref, "library/"); ok && !strings.Contains(lib, "/") {
		ref = lib
	}
	return ref
}
