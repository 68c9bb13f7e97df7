// Package multiline joins the lines of one log stream into records: a stack
// trace written as many lines becomes one record. It is pure (no I/O, no
// clock): the collector offers it each complete line with its timestamp and
// asks what to do, and it keeps the record being built.
//
// A record is built by one rule:
//
//   - start: a line matching the regular expression starts a record; every
//     other line belongs to the record before it.
//   - continue: a line matching the regular expression belongs to the record
//     before it; every other line starts a record.
//   - a preset by name (java, python, go): the usual stack traces of those
//     runtimes, recognised line by line.
//
// A record held open is closed by the next line that does not belong to it,
// by a line stamped more than Timeout after the record's last line, by
// MaxLines (then marked truncated), or by its owner (the collector closes it
// after Timeout of wall-clock quiet and when the container stops). A record
// is cut at max_line_bytes like a long line, and marked truncated.
package multiline

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/berthlog/berth/logs"
)

// The preset names.
const (
	PresetJava   = "java"
	PresetPython = "python"
	PresetGo     = "go"
)

// PresetNone joins nothing: a container labelled
// berth.multiline.preset=none has its lines sent one by one whatever the
// configuration says.
const PresetNone = "none"

// Presets lists the preset names, for error messages and documentation.
var Presets = []string{PresetJava, PresetPython, PresetGo, PresetNone}

// The label names a container sets its multiline rule with.
const (
	LabelPreset   = "berth.multiline.preset"
	LabelStart    = "berth.multiline.start"
	LabelContinue = "berth.multiline.continue"
)

type kind uint8

const (
	kindStart kind = iota + 1
	kindContinue
	kindJava
	kindPython
	kindGo
)

// Rules say how lines are joined. The zero value and nil join nothing.
// Rules are read-only once built and may be shared by many Joiners.
type Rules struct {
	kind kind
	re   *regexp.Regexp
	// Timeout closes a record when a line of its stream is stamped more
	// than this after the record's last line.
	Timeout time.Duration
	// MaxLines closes a record that has this many lines; it is marked
	// truncated.
	MaxLines int
}

// Spec is a rule as configured: at most one of its fields is set.
type Spec struct {
	Preset   string // java, python or go
	Start    string // a regular expression a record's first line matches
	Continue string // a regular expression a record's following lines match
}

// IsZero says that no rule is set: lines are not joined.
func (s Spec) IsZero() bool { return s == Spec{} }

// javaContinue matches the lines of a JVM stack trace after its first: the
// frames ("\tat ..."), "\t... 12 more", "Caused by: ..." and "Suppressed: ...".
// javaContinues is the same test, without a regular expression's cost per
// line (FuzzJavaContinues checks that they agree).
var javaContinue = regexp.MustCompile(`^\s+at \S|^\s+\.\.\. \d+ (?:more|common frames omitted)|^\s*Caused by: |^\s*Suppressed: `)

func javaContinues(line []byte) bool {
	i := 0
	for i < len(line) && isSpace(line[i]) {
		i++
	}
	rest := line[i:]
	if hasPrefix(rest, "Caused by: ") || hasPrefix(rest, "Suppressed: ") {
		return true
	}
	if i == 0 {
		return false
	}
	if hasPrefix(rest, "at ") {
		return len(rest) > 3 && !isSpace(rest[3])
	}
	if !hasPrefix(rest, "... ") {
		return false
	}
	rest = rest[4:]
	d := 0
	for d < len(rest) && rest[d] >= '0' && rest[d] <= '9' {
		d++
	}
	rest = rest[d:]
	return d > 0 && (hasPrefix(rest, " more") || hasPrefix(rest, " common frames omitted"))
}

// isSpace is RE2's \s: [\t\n\f\r ].
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r' }

// New compiles s into Rules bounded by timeout and maxLines. It returns nil
// Rules (join nothing) for a zero Spec, and an error naming the problem
// for a bad one.
func New(s Spec, timeout time.Duration, maxLines int) (*Rules, error) {
	set := 0
	for _, v := range []string{s.Preset, s.Start, s.Continue} {
		if v != "" {
			set++
		}
	}
	if set == 0 || (set == 1 && s.Preset == PresetNone) {
		return nil, nil
	}
	if set > 1 {
		return nil, fmt.Errorf("set only one of preset, start and continue (got %d)", set)
	}
	r := &Rules{Timeout: timeout, MaxLines: maxLines}
	switch {
	case s.Preset != "":
		switch s.Preset {
		case PresetJava:
			r.kind = kindJava
		case PresetPython:
			r.kind = kindPython
		case PresetGo:
			r.kind = kindGo
		default:
			return nil, fmt.Errorf("unknown preset %q; use one of %s", s.Preset, strings.Join(Presets, ", "))
		}
	case s.Start != "":
		re, err := regexp.Compile(s.Start)
		if err != nil {
			return nil, fmt.Errorf("start %q is not a regular expression: %w", s.Start, err)
		}
		r.kind, r.re = kindStart, re
	default:
		re, err := regexp.Compile(s.Continue)
		if err != nil {
			return nil, fmt.Errorf("continue %q is not a regular expression: %w", s.Continue, err)
		}
		r.kind, r.re = kindContinue, re
	}
	return r, nil
}

// FromLabels returns the rule a container's berth.multiline.* labels set,
// or def when they set none. Bad labels give def and an error naming them
// and what is allowed.
func FromLabels(labels map[string]string, def Spec) (Spec, error) {
	s := Spec{Preset: labels[LabelPreset], Start: labels[LabelStart], Continue: labels[LabelContinue]}
	if s.IsZero() {
		return def, nil
	}
	if _, err := New(s, time.Second, 2); err != nil {
		name := LabelPreset
		switch {
		case s.Preset != "":
		case s.Start != "":
			name = LabelStart
		default:
			name = LabelContinue
		}
		return def, fmt.Errorf("%s: %w; the configured multiline rule applies", name, err)
	}
	return s, nil
}

// Action is what to do with a line.
type Action uint8

// The actions. "Close" means: hand on the held record (if any) as it is.
const (
	// Begin: close the held record; the line begins a new one, held.
	Begin Action = iota + 1
	// Continue: the line is appended to the held record.
	Continue
	// End: the line is appended to the held record, which is then closed.
	End
	// Single: close the held record; the line is a record by itself, never
	// continued.
	Single
)

// Joiner builds the records of one stream. Its memory is reused: no
// allocation per line once its buffer has grown.
type Joiner struct {
	r        *Rules
	maxBytes int
	held     bool
	state    uint8 // a preset's state while a record is held: 1 inside a trace
	ts, last time.Time
	buf      []byte
	lines    int
	trunc    bool
	cut      bool // the byte bound was reached: later lines add nothing
}

// Reset binds j to r (nil joins nothing) and to maxBytes, the longest
// record, and drops any held record.
func (j *Joiner) Reset(r *Rules, maxBytes int) {
	*j = Joiner{r: r, maxBytes: maxBytes, buf: j.buf[:0]}
}

// Held reports whether a record is held open.
func (j *Joiner) Held() bool { return j.held }

// Expired reports whether a line stamped ts closes the held record by the
// timeout: it is stamped more than Timeout after the record's last line.
func (j *Joiner) Expired(ts time.Time) bool {
	return j.held && j.r.Timeout > 0 && ts.Sub(j.last) > j.r.Timeout
}

// Step says what to do with line, given the held record. Call Expired (and
// close the held record if it says so) first. Apply the action with Begin,
// Append and Take.
func (j *Joiner) Step(line []byte) Action {
	a := j.classify(line)
	if j.held && (a == Continue || a == End) && j.r.MaxLines > 0 && j.lines >= j.r.MaxLines {
		// Full: the record is closed, marked, and the line goes on.
		j.trunc = true
		if a == End {
			j.state = 0
			return Single
		}
		return Begin
	}
	return a
}

func (j *Joiner) classify(line []byte) Action {
	switch j.r.kind {
	case kindStart:
		if j.held && !j.r.re.Match(line) {
			return Continue
		}
		return Begin
	case kindContinue:
		if j.held && j.r.re.Match(line) {
			return Continue
		}
		return Begin
	case kindJava:
		if j.held && javaContinues(line) {
			return Continue
		}
		return Begin
	case kindPython:
		if j.held && j.state == 1 {
			if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
				return Continue
			}
			j.state = 0
			return End // the exception line: "ValueError: boom"
		}
		if string(line) == "Traceback (most recent call last):" {
			j.state = 1
			return Begin
		}
		return Single
	case kindGo:
		if j.held && j.state == 1 && goContinues(line) {
			return Continue
		}
		if hasPrefix(line, "panic: ") || hasPrefix(line, "fatal error: ") {
			j.state = 1
			return Begin
		}
		j.state = 0
		return Single
	}
	return Single
}

// goFrame matches a Go stack frame's function line: "main.main()",
// "main.(*T).m(0xc000012345, {0x1, 0x2})", "panic({0x45d0a0?, 0x4b5b18?})".
var goFrame = regexp.MustCompile(`^[^\s(]+\(.*\)$`)

// goContinues says whether line is part of a Go panic's report after its
// first line: blank lines, indented lines (file:line, a nested panic), the
// goroutine headers, frames, "created by", the signal line.
func goContinues(line []byte) bool {
	if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
		return true
	}
	return hasPrefix(line, "goroutine ") || hasPrefix(line, "created by ") ||
		hasPrefix(line, "[signal ") || hasPrefix(line, "runtime stack:") ||
		hasPrefix(line, "panic: ") || goFrame.Match(line)
}

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }

// Begin holds a new record whose first line is line, stamped ts; truncated
// says that the line itself was cut. Take the held record first.
func (j *Joiner) Begin(ts time.Time, line []byte, truncated bool) {
	j.held, j.ts, j.last, j.lines = true, ts, ts, 1
	j.buf = append(j.buf[:0], line...)
	j.trunc, j.cut = truncated, truncated
	if len(j.buf) > j.maxBytes {
		part, _ := logs.Clip(j.buf, j.maxBytes)
		j.buf, j.trunc, j.cut = part, true, true
	}
}

// Append adds line, stamped ts, to the held record, separated by a newline;
// beyond maxBytes it is cut, and the record marked truncated.
func (j *Joiner) Append(ts time.Time, line []byte, truncated bool) {
	j.last = ts
	j.lines++
	if j.cut {
		return
	}
	room := j.maxBytes - len(j.buf) - 1
	if room < 0 {
		j.trunc, j.cut = true, true
		return
	}
	part, cut := logs.Clip(line, room)
	j.buf = append(j.buf, '\n')
	j.buf = append(j.buf, part...)
	if cut || truncated {
		j.trunc, j.cut = true, true
	}
}

// Take closes the held record and returns it: the first line's timestamp,
// the body (valid until the next Begin) and whether it was cut. Blank lines
// at its end are dropped from the body.
func (j *Joiner) Take() (ts time.Time, body []byte, truncated bool) {
	if !j.held {
		return time.Time{}, nil, false
	}
	body = j.buf
	for j.lines > 1 && len(body) > 0 && body[len(body)-1] == '\n' {
		body = body[:len(body)-1]
	}
	ts, truncated = j.ts, j.trunc
	// A preset's state matters only while a record is held: Step may have
	// set it for the line that closed this record.
	j.held, j.lines, j.trunc, j.cut = false, 0, false, false
	return ts, body, truncated
}
