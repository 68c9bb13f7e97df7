package parse

import (
	"unicode/utf16"
	"unicode/utf8"

	"github.com/berthlog/berth/logs"
)

// maxDepth bounds the nesting of a JSON value inside a line's object: a
// deeper line is not parsed (and is sent as it is).
const maxDepth = 64

// jsonFields parses line as one JSON object (RFC 8259, white space around
// it allowed) and appends its members. A nested object or array is one
// field, its JSON text as written.
func jsonFields(line, buf []byte, fields []logs.Attr) ([]byte, []logs.Attr, bool) {
	n0, b0 := len(fields), len(buf)
	if !utf8.Valid(line) {
		return buf, fields, false
	}
	i := skipSpace(line, 0)
	if i >= len(line) || line[i] != '{' {
		return buf, fields, false
	}
	i = skipSpace(line, i+1)
	ok := true
	if i < len(line) && line[i] == '}' {
		i++
	} else {
		for {
			var key, val []byte
			var kind logs.Kind
			if i >= len(line) || line[i] != '"' {
				ok = false
				break
			}
			key, buf, i, ok = jsonString(line, i, buf)
			if !ok {
				break
			}
			i = skipSpace(line, i)
			if i >= len(line) || line[i] != ':' {
				ok = false
				break
			}
			i = skipSpace(line, i+1)
			val, kind, buf, i, ok = jsonValue(line, i, buf)
			if !ok {
				break
			}
			fields = append(fields, logs.Attr{Key: key, Value: val, Kind: kind})
			i = skipSpace(line, i)
			if i < len(line) && line[i] == ',' {
				i = skipSpace(line, i+1)
				continue
			}
			if i < len(line) && line[i] == '}' {
				i++
				break
			}
			ok = false
			break
		}
	}
	if !ok || skipSpace(line, i) != len(line) {
		return buf[:b0], fields[:n0], false
	}
	return buf, fields, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// jsonValue reads the value at line[i]: a string (decoded), a number, true,
// false or null (as written), or an object or array (its text).
func jsonValue(line []byte, i int, buf []byte) (val []byte, kind logs.Kind, _ []byte, end int, ok bool) {
	if i >= len(line) {
		return nil, 0, buf, i, false
	}
	switch c := line[i]; {
	case c == '"':
		val, buf, end, ok = jsonString(line, i, buf)
		return val, logs.KindString, buf, end, ok
	case c == '{' || c == '[':
		end, ok = skipValue(line, i, 1)
		return line[i:end], logs.KindJSON, buf, end, ok
	case c == 't':
		return literal(line, i, "true", logs.KindBool, buf)
	case c == 'f':
		return literal(line, i, "false", logs.KindBool, buf)
	case c == 'n':
		return literal(line, i, "null", logs.KindNull, buf)
	case c == '-' || (c >= '0' && c <= '9'):
		end, integer, ok := number(line, i)
		kind = logs.KindDouble
		if integer {
			kind = logs.KindInt
		}
		return line[i:end], kind, buf, end, ok
	}
	return nil, 0, buf, i, false
}

func literal(line []byte, i int, lit string, kind logs.Kind, buf []byte) ([]byte, logs.Kind, []byte, int, bool) {
	end := i + len(lit)
	if end > len(line) || string(line[i:end]) != lit {
		return nil, 0, buf, i, false
	}
	return line[i:end], kind, buf, end, true
}

// number reads the JSON number at line[i]; integer says it has neither
// fraction nor exponent.
func number(line []byte, i int) (end int, integer, ok bool) {
	if line[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(line) && line[i] >= '0' && line[i] <= '9' {
			i++
			n++
		}
		return n
	}
	switch {
	case i < len(line) && line[i] == '0':
		i++
	case digits() == 0:
		return i, false, false
	}
	integer = true
	if i < len(line) && line[i] == '.' {
		i++
		integer = false
		if digits() == 0 {
			return i, false, false
		}
	}
	if i < len(line) && (line[i] == 'e' || line[i] == 'E') {
		i++
		integer = false
		if i < len(line) && (line[i] == '+' || line[i] == '-') {
			i++
		}
		if digits() == 0 {
			return i, false, false
		}
	}
	return i, integer, true
}

// skipValue returns the end of the JSON value at line[i], validating it;
// depth is the nesting of the value.
func skipValue(line []byte, i, depth int) (int, bool) {
	if i >= len(line) {
		return i, false
	}
	switch line[i] {
	case '"':
		return skipString(line, i)
	case '{', '[':
		if depth > maxDepth {
			return i, false
		}
		closing := byte('}')
		if line[i] == '[' {
			closing = ']'
		}
		i = skipSpace(line, i+1)
		if i < len(line) && line[i] == closing {
			return i + 1, true
		}
		for {
			var ok bool
			if closing == '}' {
				if i >= len(line) || line[i] != '"' {
					return i, false
				}
				if i, ok = skipString(line, i); !ok {
					return i, false
				}
				i = skipSpace(line, i)
				if i >= len(line) || line[i] != ':' {
					return i, false
				}
				i = skipSpace(line, i+1)
			}
			if i, ok = skipValue(line, i, depth+1); !ok {
				return i, false
			}
			i = skipSpace(line, i)
			if i >= len(line) {
				return i, false
			}
			switch line[i] {
			case ',':
				i = skipSpace(line, i+1)
			case closing:
				return i + 1, true
			default:
				return i, false
			}
		}
	}
	_, _, _, end, ok := jsonValue(line, i, nil)
	return end, ok
}

// skipString returns the end of the JSON string at line[i], validating its
// escapes, without decoding it.
func skipString(line []byte, i int) (int, bool) {
	for i++; i < len(line); i++ {
		switch c := line[i]; {
		case c == '"':
			return i + 1, true
		case c < 0x20:
			return i, false
		case c == '\\':
			n, ok := escapeLen(line, i)
			if !ok {
				return i, false
			}
			i += n - 1
		}
	}
	return i, false
}

// escapeLen returns the length of the escape at line[i] (a backslash).
func escapeLen(line []byte, i int) (int, bool) {
	if i+1 >= len(line) {
		return 0, false
	}
	switch line[i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2, true
	case 'u':
		if _, ok := hex4(line, i+2); ok {
			return 6, true
		}
	}
	return 0, false
}

// hex4 reads four hex digits at line[i].
func hex4(line []byte, i int) (rune, bool) {
	if i+4 > len(line) {
		return 0, false
	}
	var r rune
	for _, c := range line[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// jsonString reads the string at line[i] (a quote). A string without
// escapes is a slice of line; one with escapes is decoded into buf (a lone
// surrogate becomes U+FFFD).
func jsonString(line []byte, i int, buf []byte) (val, _ []byte, end int, ok bool) {
	start := i + 1
	j := start
	for j < len(line) && line[j] != '"' && line[j] != '\\' && line[j] >= 0x20 {
		j++
	}
	if j >= len(line) || line[j] < 0x20 {
		return nil, buf, j, false
	}
	if line[j] == '"' {
		return line[start:j], buf, j + 1, true
	}
	b0 := len(buf)
	buf = append(buf, line[start:j]...)
	for j < len(line) {
		c := line[j]
		switch {
		case c == '"':
			return buf[b0:len(buf):len(buf)], buf, j + 1, true
		case c < 0x20:
			return nil, buf[:b0], j, false
		case c != '\\':
			buf = append(buf, c)
			j++
			continue
		}
		n, ok := escapeLen(line, j)
		if !ok {
			return nil, buf[:b0], j, false
		}
		switch e := line[j+1]; e {
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, _ := hex4(line, j+2)
			if utf16.IsSurrogate(r) {
				if r2, ok := lowSurrogate(line, j+6); ok {
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						r = d
						n += 6
					}
				}
			}
			buf = utf8.AppendRune(buf, r) // a lone surrogate is U+FFFD
		default: // " \ /
			buf = append(buf, e)
		}
		j += n
	}
	return nil, buf[:b0], j, false
}

// lowSurrogate reads a \uXXXX escape at line[i].
func lowSurrogate(line []byte, i int) (rune, bool) {
	if i+1 >= len(line) || line[i] != '\\' || line[i+1] != 'u' {
		return 0, false
	}
	return hex4(line, i+2)
}
