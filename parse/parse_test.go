package parse

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/berthlog/berth/logs"
)

type field struct {
	k, v string
	kind logs.Kind
}

func fieldsOf(attrs []logs.Attr) []field {
	out := make([]field, 0, len(attrs))
	for _, a := range attrs {
		out = append(out, field{string(a.Key), string(a.Value), a.Kind})
	}
	return out
}

func TestJSONFields(t *testing.T) {
	S, I, D, B, N, J := logs.KindString, logs.KindInt, logs.KindDouble, logs.KindBool, logs.KindNull, logs.KindJSON
	for _, tc := range []struct {
		line string
		want []field // nil: not parsed
	}{
		{`{}`, []field{}},
		{` { "a" : "b" } `, []field{{"a", "b", S}}},
		{`{"msg":"hi","n":-12,"f":1.5e3,"t":true,"x":false,"z":null}`,
			[]field{{"msg", "hi", S}, {"n", "-12", I}, {"f", "1.5e3", D}, {"t", "true", B}, {"x", "false", B}, {"z", "null", N}}},
		{`{"o":{"a":[1,{"b":"\""}]},"arr":[]}`, []field{{"o", `{"a":[1,{"b":"\""}]}`, J}, {"arr", `[]`, J}}},
		{`{"e":"a\"b\\c\/d\n\t\u00e9\ud83d\ude00","k\u0041":1}`, []field{{"e", "a\"b\\c/d\n\té😀", S}, {"kA", "1", I}}},
		{`{"lone":"\ud800x"}`, []field{{"lone", "\uFFFDx", S}}},
		{`{"a":0.5,"b":0,"c":-0.0e-1}`, []field{{"a", "0.5", D}, {"b", "0", I}, {"c", "-0.0e-1", D}}},
		{`{"dup":1,"dup":2}`, []field{{"dup", "1", I}, {"dup", "2", I}}},
		// Not JSON objects: kept as lines.
		{``, nil},
		{`plain text`, nil},
		{`["a"]`, nil},
		{`"s"`, nil},
		{`{"a":1}x`, nil},
		{`{"a":1,}`, nil},
		{`{"a" 1}`, nil},
		{`{a:1}`, nil},
		{`{"a":01}`, nil},
		{`{"a":1.}`, nil},
		{`{"a":-}`, nil},
		{`{"a":tru}`, nil},
		{`{"a":"\x"}`, nil},
		{`{"a":"\u12"}`, nil},
		{"{\"a\":\"tab\there\"}", nil},
		{`{"a":"unterminated}`, nil},
		{`{"a":{"b":1}`, nil},
		{`{"a":[1,2}`, nil},
		{"{\"a\":\"\xff\"}", nil},
		{`{"deep":` + strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1) + `}`, nil},
		{`{"deep":` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + `}`,
			[]field{{"deep", strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth), J}}},
	} {
		t.Run(tc.line, func(t *testing.T) {
			prior := []logs.Attr{{Key: []byte("before")}}
			buf := []byte("kept")
			buf, got, ok := Fields(JSON, []byte(tc.line), buf, prior)
			if ok != (tc.want != nil) {
				t.Fatalf("ok = %v, want %v (fields %v)", ok, tc.want != nil, fieldsOf(got))
			}
			if string(buf[:4]) != "kept" || len(got) < 1 || string(got[0].Key) != "before" {
				t.Fatalf("what was in buf or fields before was changed: %q %v", buf, fieldsOf(got))
			}
			if !ok {
				if len(got) != 1 || len(buf) != 4 {
					t.Errorf("a line that does not parse left %d fields and %q in buf", len(got)-1, buf[4:])
				}
				return
			}
			if g := fieldsOf(got[1:]); !reflect.DeepEqual(g, tc.want) {
				t.Errorf("fields = %v\nwant     %v", g, tc.want)
			}
		})
	}
}

func TestLogfmtFields(t *testing.T) {
	S := logs.KindString
	for _, tc := range []struct {
		line string
		want []field
	}{
		{`level=info msg="user logged in" user=alice`, []field{{"level", "info", S}, {"msg", "user logged in", S}, {"user", "alice", S}}},
		{`a= b="" c="q\"x\n" d=1.5 e=x=y`, []field{{"a", "", S}, {"b", "", S}, {"c", "q\"x\n", S}, {"d", "1.5", S}, {"e", "x=y", S}}},
		{"  t=1\tu=2  ", []field{{"t", "1", S}, {"u", "2", S}}},
		{`log.level=warn`, []field{{"log.level", "warn", S}}},
		{``, nil},
		{`   `, nil},
		{`hello world`, nil},
		{`a=1 hello`, nil},
		{`=1`, nil},
		{`a="unterminated`, nil},
		{`a="x"y`, nil},
		{`a=x"y`, nil},
		{`"k"=1`, nil},
		{"a=\xff", nil},
	} {
		t.Run(tc.line, func(t *testing.T) {
			buf, got, ok := Fields(Logfmt, []byte(tc.line), nil, nil)
			if ok != (tc.want != nil) {
				t.Fatalf("ok = %v, want %v (fields %v)", ok, tc.want != nil, fieldsOf(got))
			}
			if !ok {
				if len(got) != 0 || len(buf) != 0 {
					t.Errorf("a line that does not parse left fields %v, buf %q", fieldsOf(got), buf)
				}
				return
			}
			if g := fieldsOf(got); !reflect.DeepEqual(g, tc.want) {
				t.Errorf("fields = %v\nwant     %v", g, tc.want)
			}
		})
	}
}

func TestStructure(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		f          Format
		body       Body
		wantBody   string
		wantSev    logs.Severity
		wantText   string
		wantAttrs  []string
	}{
		{"json message and level", `{"time":"t","level":"warn","msg":"disk low","free":3}`, JSON, BodyMessage,
			"disk low", logs.SeverityWarn, "warn", []string{"time", "free"}},
		{"message when msg is absent", `{"message":"m","severity":"ERROR"}`, JSON, BodyMessage, "m", logs.SeverityError, "ERROR", []string{}},
		{"msg before message", `{"message":"second","msg":"first"}`, JSON, BodyMessage, "first", 0, "", []string{"message"}},
		{"level before lvl", `{"lvl":"debug","level":"info"}`, JSON, BodyMessage,
			`{"lvl":"debug","level":"info"}`, logs.SeverityInfo, "info", []string{"lvl"}},
		{"no message keeps the line", `{"a":1}`, JSON, BodyMessage, `{"a":1}`, 0, "", []string{"a"}},
		{"pino number", `{"level":30,"msg":"x"}`, JSON, BodyMessage, "x", logs.SeverityInfo, "30", []string{}},
		{"unknown level kept as text", `{"level":"verbose2x","msg":"x"}`, JSON, BodyMessage, "x", 0, "verbose2x", []string{}},
		{"map body keeps every field", `{"level":"info","msg":"x","a":1}`, JSON, BodyMap,
			`{"level":"info","msg":"x","a":1}`, logs.SeverityInfo, "info", []string{"level", "msg", "a"}},
		{"logfmt", `ts=1 log.level=error msg="it broke" err=EOF`, Logfmt, BodyMessage, "it broke", logs.SeverityError, "error", []string{"ts", "err"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := logs.Record{Body: []byte(tc.line)}
			_, fields, ok := Fields(tc.f, r.Body, nil, nil)
			if !ok {
				t.Fatal("did not parse")
			}
			Structure(&r, fields, tc.body)
			keys := []string{}
			for _, a := range r.Attrs {
				keys = append(keys, string(a.Key))
			}
			if string(r.Body) != tc.wantBody || r.Severity != tc.wantSev || string(r.SeverityText) != tc.wantText ||
				!reflect.DeepEqual(keys, tc.wantAttrs) || r.BodyMap != (tc.body == BodyMap) {
				t.Errorf("body %q severity %d %q attrs %v map %v\nwant body %q severity %d %q attrs %v",
					r.Body, r.Severity, r.SeverityText, keys, r.BodyMap, tc.wantBody, tc.wantSev, tc.wantText, tc.wantAttrs)
			}
		})
	}
}

func TestSeverityOf(t *testing.T) {
	S, I := logs.KindString, logs.KindInt
	for _, tc := range []struct {
		v    string
		kind logs.Kind
		want logs.Severity
	}{
		{"trace", S, 1}, {"TRACE3", S, 3}, {"debug", S, 5}, {"Dbug", S, 5}, {"debug4", S, 8},
		{"info", S, 9}, {"INFORMATION", S, 9}, {"informational", S, 9}, {"notice", S, 10}, {"info2", S, 10},
		{"warn", S, 13}, {"WARNING", S, 13}, {"warn4", S, 16},
		{"err", S, 17}, {"error", S, 17}, {"eror", S, 17}, {"crit", S, 18}, {"Critical", S, 18}, {"dpanic", S, 18},
		{"alert", S, 19}, {"panic", S, 19}, {"fatal", S, 21}, {"emerg", S, 21}, {"EMERGENCY", S, 21}, {"fatal4", S, 24},
		// syslog numbers
		{"0", I, 21}, {"1", I, 19}, {"2", I, 18}, {"3", I, 17}, {"4", I, 13}, {"5", I, 10}, {"6", I, 9}, {"7", I, 5},
		{"6", S, 9},
		// bunyan and pino
		{"10", I, 1}, {"20", I, 5}, {"30", I, 9}, {"35", I, 9}, {"40", I, 13}, {"50", I, 17}, {"60", I, 21}, {"69", I, 21},
		// unknown
		{"8", I, 0}, {"70", I, 0}, {"100", I, 0}, {"-1", I, 0}, {"30", logs.KindDouble, 0}, {"true", logs.KindBool, 0},
		{"", S, 0}, {"verbose", S, 0}, {"info5", S, 0}, {"notice2", S, 0}, {"warn1", S, 0}, {"averyveryverylongname", S, 0},
	} {
		if got := SeverityOf([]byte(tc.v), tc.kind); got != tc.want {
			t.Errorf("SeverityOf(%q, %d) = %d, want %d", tc.v, tc.kind, got, tc.want)
		}
	}
}

func TestFromLabels(t *testing.T) {
	for _, tc := range []struct {
		labels  map[string]string
		def     Format
		want    Format
		wantErr bool
	}{
		{nil, None, None, false},
		{nil, JSON, JSON, false},
		{map[string]string{Label: "json"}, None, JSON, false},
		{map[string]string{Label: "logfmt"}, JSON, Logfmt, false},
		{map[string]string{Label: "none"}, JSON, None, false},
		{map[string]string{Label: "xml"}, JSON, JSON, true},
		{map[string]string{Label: ""}, Logfmt, Logfmt, true},
	} {
		got, err := FromLabels(tc.labels, tc.def)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("FromLabels(%v, %v) = %v, %v; want %v, error %v", tc.labels, tc.def, got, err, tc.want, tc.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), Label) {
			t.Errorf("error %q does not name the label", err)
		}
	}
}

// TestNoAllocation: parsing a line into reused memory allocates nothing.
func TestNoAllocation(t *testing.T) {
	line := []byte(`{"time":"2026-01-01T00:00:00Z","level":"info","msg":"request \"done\"","status":200,"ok":true}`)
	lf := []byte(`time=2026-01-01T00:00:00Z level=info msg="request done" status=200`)
	buf := make([]byte, 0, 1024)
	fields := make([]logs.Attr, 0, 16)
	allocs := testing.AllocsPerRun(100, func() {
		for _, l := range []struct {
			f    Format
			line []byte
		}{{JSON, line}, {Logfmt, lf}} {
			b, fs, ok := Fields(l.f, l.line, buf[:0], fields[:0])
			if !ok {
				panic(fmt.Sprintf("%s did not parse", l.line))
			}
			var r logs.Record
			r.Body = l.line
			Structure(&r, fs, BodyMessage)
			_ = b
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per line, want 0", allocs)
	}
}

// jsonEqual says whether the fields are the members of the object line, as
// encoding/json decodes it.
func jsonEqual(t *testing.T, line []byte, fields []logs.Attr) {
	t.Helper()
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil {
		t.Fatalf("parsed %q, which encoding/json refuses: %v", line, err)
	}
	last := map[string]logs.Attr{}
	for _, f := range fields {
		last[string(f.Key)] = f
	}
	if len(last) != len(obj) {
		t.Fatalf("%d keys, encoding/json has %d: %q", len(last), len(obj), line)
	}
	for k, raw := range obj {
		f, ok := last[k]
		if !ok {
			t.Fatalf("key %q missing from %q", k, line)
		}
		switch f.Kind {
		case logs.KindString:
			var s string
			if err := json.Unmarshal(raw, &s); err != nil || s != string(f.Value) {
				t.Fatalf("key %q: %q, encoding/json has %s (%v)", k, f.Value, raw, err)
			}
		default:
			if !json.Valid(f.Value) || string(f.Value) != string(raw) {
				t.Fatalf("key %q: %s, encoding/json has %s", k, f.Value, raw)
			}
		}
	}
}

// FuzzJSON: a line parses if and only if encoding/json takes it as an
// object (valid UTF-8, nested at most maxDepth deep), with the same members; a line
// that does not parse leaves fields and buf as they were.
func FuzzJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":"b\n"}`, `{"msg":"x","level":30,"o":{"k":[1,2.5e-3,true,null]}}`,
		`{"e":"\ud83d\ude00\ud800"}`, `[1]`, `{"a":1,}`, "{\"\xff\":1}", `{"a":-0.5E+2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		buf := make([]byte, 0, len(line))
		buf2, fields, ok := Fields(JSON, line, buf, nil)
		var obj map[string]json.RawMessage
		stdOK := utf8.Valid(line) && json.Unmarshal(line, &obj) == nil && obj != nil && depth(line) <= maxDepth+1
		if ok != stdOK {
			t.Fatalf("ok = %v, encoding/json %v: %q", ok, stdOK, line)
		}
		if !ok {
			if len(fields) != 0 || len(buf2) != 0 {
				t.Fatalf("a line that does not parse left %d fields, %d bytes", len(fields), len(buf2))
			}
			return
		}
		if cap(buf2) != cap(buf) {
			t.Fatalf("buf grew: decoded strings took more than the line's %d bytes", len(line))
		}
		jsonEqual(t, line, fields)
	})
}

// depth is the deepest nesting of brackets outside strings in a valid JSON
// text.
func depth(line []byte) int {
	d, deepest, in := 0, 0, false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case in && c == '\\':
			i++
		case c == '"':
			in = !in
		case !in && (c == '{' || c == '['):
			d++
			deepest = max(deepest, d)
		case !in && (c == '}' || c == ']'):
			d--
		}
	}
	return deepest
}

// FuzzLogfmt: fields written back as logfmt (every value quoted) parse to
// the same fields; a line that does not parse leaves nothing behind.
func FuzzLogfmt(f *testing.F) {
	for _, s := range []string{`a=1 b="x y" c=`, `level=info msg="a \"q\""`, `plain`, `a="\u00e9"`, "a=\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		buf := make([]byte, 0, len(line))
		buf2, fields, ok := Fields(Logfmt, line, buf, nil)
		if !ok {
			if len(fields) != 0 || len(buf2) != 0 {
				t.Fatalf("a line that does not parse left %d fields, %d bytes", len(fields), len(buf2))
			}
			return
		}
		if cap(buf2) != cap(buf) {
			t.Fatalf("buf grew: decoded strings took more than the line's %d bytes", len(line))
		}
		var again []byte
		for i, fl := range fields {
			if i > 0 {
				again = append(again, ' ')
			}
			q, _ := json.Marshal(string(fl.Value))
			again = append(append(append(again, fl.Key...), '='), q...)
		}
		_, fields2, ok := Fields(Logfmt, again, nil, nil)
		if !ok || !reflect.DeepEqual(fieldsOf(fields), fieldsOf(fields2)) {
			t.Fatalf("%q parsed to %v; written back as %q it parses to %v (ok %v)", line, fieldsOf(fields), again, fieldsOf(fields2), ok)
		}
	})
}

func TestEncodedBound(t *testing.T) {
	for _, tc := range []struct {
		line string
		body Body
		want int
	}{
		{`{"msg":"hello"}`, BodyMessage, 5},
		{`{"msg":"hello","level":"info","n":12}`, BodyMessage, 5 + 4 + 64 + 1 + 2 + 9},
		{`{"msg":"hello","a":[1,2]}`, BodyMessage, 5 + 64 + 1 + 18*5},
		{`{"msg":"hello","level":"info"}`, BodyMap, 4 + (64 + 3 + 5 + 9) + (64 + 5 + 4 + 9)},
	} {
		r := logs.Record{Body: []byte(tc.line)}
		_, fields, ok := Fields(JSON, r.Body, nil, nil)
		if !ok {
			t.Fatalf("%q does not parse", tc.line)
		}
		Structure(&r, fields, tc.body)
		if got := EncodedBound(&r); got != tc.want {
			t.Errorf("EncodedBound(%s) = %d, want %d", tc.line, got, tc.want)
		}
	}
}
