package parse

import (
	"unicode/utf8"

	"github.com/berthlog/berth/logs"
)

// logfmtFields parses line as logfmt: key=value pairs separated by spaces,
// a value either bare (up to the next space; it may be empty) or quoted
// with JSON's escapes ("a \"b\"\n"). Every pair needs its =: a line with a
// bare word (plain text) is not logfmt. Every value is a string.
func logfmtFields(line, buf []byte, fields []logs.Attr) ([]byte, []logs.Attr, bool) {
	n0, b0 := len(fields), len(buf)
	fail := func() ([]byte, []logs.Attr, bool) { return buf[:b0], fields[:n0], false }
	if !utf8.Valid(line) {
		return fail()
	}
	i := 0
	for {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r') {
			i++
		}
		if i >= len(line) {
			break
		}
		k := i
		for i < len(line) && line[i] > ' ' && line[i] != '=' && line[i] != '"' {
			i++
		}
		if i == k || i >= len(line) || line[i] != '=' {
			return fail()
		}
		key := line[k:i]
		i++
		var val []byte
		if i < len(line) && line[i] == '"' {
			var ok bool
			if val, buf, i, ok = jsonString(line, i, buf); !ok {
				return fail()
			}
			if i < len(line) && line[i] > ' ' {
				return fail() // "a"b
			}
		} else {
			v := i
			for i < len(line) && line[i] > ' ' {
				if line[i] == '"' {
					return fail()
				}
				i++
			}
			val = line[v:i]
		}
		fields = append(fields, logs.Attr{Key: key, Value: val, Kind: logs.KindString})
	}
	if len(fields) == n0 {
		return fail()
	}
	return buf, fields, true
}
