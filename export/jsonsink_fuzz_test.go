package export

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/berthlog/berth/logs"
)

// FuzzAppendString checks the JSON string encoder: appended after other
// bytes, its output is one valid JSON string (valid UTF-8 when its input is)
// that encoding/json decodes to what it decodes json.Marshal(string(s)) to:
// the input, with each byte of invalid UTF-8 replaced by U+FFFD. And a whole
// record line of the sink, with s as its body and its container name, is one
// line of valid JSON (UTF-8 when s is) that gives back the body (as base64 of its exact bytes
// when it is not UTF-8), the name, and both timestamps in the sink's format.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{
		"", "plain", `quote " backslash \ slash /`, "tab \t cr \r nl \n nul \x00 bell \x07 esc \x1b del \x7f",
		"ünïcödé ✓ \U0001F600", "<html> & \u2028\u2029", "\xff\xfe invalid", "é"[:1] + "cut", "\xed\xa0\x80 surrogate", "\xf4\x90\x80\x80 beyond U+10FFFF",
	} {
		f.Add([]byte(s), int64(1714558830123456789), int64(1714558830123456789+86400e9))
	}
	f.Add([]byte("before 1970"), int64(-1), int64(-86400e9-1))
	f.Fuzz(func(t *testing.T, s []byte, ts, observed int64) {
		prefix := []byte(`{"k":`)
		out := appendString(bytes.Clone(prefix), s)
		if !bytes.HasPrefix(out, prefix) {
			t.Fatalf("appendString overwrote what was before it: %q", out)
		}
		enc := out[len(prefix):]
		if !json.Valid(enc) {
			t.Fatalf("appendString(%q) = %q: not valid JSON", s, enc)
		}
		if utf8.Valid(s) && !utf8.Valid(enc) {
			t.Fatalf("appendString(%q) = %q: not UTF-8", s, enc)
		}
		var got, want string
		if err := json.Unmarshal(enc, &got); err != nil {
			t.Fatalf("appendString(%q) = %q: %v", s, enc, err)
		}
		ref, err := json.Marshal(string(s))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(ref, &want); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("appendString(%q) decodes to %q, json.Marshal's to %q", s, got, want)
		}

		// A whole record line.
		meta := &logs.Meta{ID: "c1", Name: string(s), ImageTags: []string{string(s)}, HostName: "h"}
		r := logs.Record{Timestamp: time.Unix(0, ts), Observed: time.Unix(0, observed), Body: s, Stream: logs.Stderr, Truncated: len(s)%2 == 1}
		var tf timeFormatter
		line := appendRecord(nil, &r, appendResource(nil, meta), &tf)
		if bytes.IndexByte(line, '\n') != len(line)-1 {
			t.Fatalf("record %q is not one line", line)
		}
		var rec struct {
			Timestamp  string         `json:"timestamp"`
			Observed   string         `json:"observed_timestamp"`
			Body       string         `json:"body"`
			Attributes map[string]any `json:"attributes"`
			Resource   map[string]any `json:"resource"`
		}
		// (Docker's strings are UTF-8, decoded from JSON; the body is checked
		// and sent as base64 when it is not.)
		if !json.Valid(line) || utf8.Valid(s) && !utf8.Valid(line) {
			t.Fatalf("record %q is not valid JSON in UTF-8", line)
		}
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("record %q: %v", line, err)
		}
		body := []byte(rec.Body)
		if rec.Attributes["log.body.encoding"] == "base64" {
			if utf8.Valid(s) {
				t.Fatalf("UTF-8 body %q sent as base64", s)
			}
			if body, err = base64.StdEncoding.DecodeString(rec.Body); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
		}
		if !bytes.Equal(body, s) {
			t.Fatalf("body %q decodes to %q", s, body)
		}
		if rec.Resource["container.name"] != want {
			t.Fatalf("container.name %q decodes to %q, want %q", s, rec.Resource["container.name"], want)
		}
		if tags, _ := rec.Resource["container.image.tags"].([]any); len(tags) != 1 || tags[0] != want {
			t.Fatalf("image tags %q decode to %v, want [%q]", s, rec.Resource["container.image.tags"], want)
		}
		if (rec.Attributes["log.truncated"] == true) != r.Truncated {
			t.Fatalf("log.truncated %v, want %v", rec.Attributes["log.truncated"], r.Truncated)
		}
		const layout = "2006-01-02T15:04:05.000000000Z07:00"
		if w := r.Timestamp.UTC().Format(layout); rec.Timestamp != w {
			t.Fatalf("timestamp %q, want %q", rec.Timestamp, w)
		}
		if w := r.Observed.UTC().Format(layout); rec.Observed != w {
			t.Fatalf("observed timestamp %q, want %q (after %v)", rec.Observed, w, r.Timestamp)
		}
	})
}
