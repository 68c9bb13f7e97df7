package lines

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestFormatParse(t *testing.T) {
	for _, size := range []int{0, 10, 40, 200} {
		l := Format("123", Err, 42, size)
		if size > 40 && len(l) != size {
			t.Fatalf("size %d: got len %d", size, len(l))
		}
		p, ok := Parse(l)
		if !ok || p != (Parsed{"123", Err, 42}) {
			t.Fatalf("Parse(%q) = %+v, %v", l, p, ok)
		}
	}
	if _, ok := Parse(""); ok {
		t.Fatal("empty line parsed")
	}
}

func TestBig(t *testing.T) {
	for _, size := range []int{20480, 204800, 3 << 20} {
		l := Big("9", Out, 1, size)
		if len(l) != size {
			t.Fatalf("len %d want %d", len(l), size)
		}
		if !utf8.ValidString(l) {
			t.Fatalf("size %d: invalid UTF-8", size)
		}
		offs := StraddleOffsets(size)
		if len(offs) == 0 {
			t.Fatalf("size %d: no straddler", size)
		}
		for _, o := range offs {
			// the split boundary must fall strictly inside a character
			b := (o/SplitSize + 1) * SplitSize
			if utf8.RuneStart(l[b]) {
				t.Fatalf("size %d: boundary %d is a rune start", size, b)
			}
		}
		if size > 1<<20 {
			// ASCII around the default max_line_bytes cut
			if l[1<<20-1] >= 0x80 || l[1<<20] >= 0x80 {
				t.Fatal("non-ASCII at the 1 MiB cut")
			}
		}
		p, ok := Parse(l)
		if !ok || p.Seq != 1 {
			t.Fatalf("Parse big: %+v %v", p, ok)
		}
	}
	if l := Big("9", Out, 1, 20480); strings.Count(l, "€") != 1 {
		t.Fatalf("20 KiB line: want one straddling €")
	}
}

func TestInvalid(t *testing.T) {
	l := InvalidUTF8("1", Out, 3)
	if utf8.ValidString(l) {
		t.Fatal("valid")
	}
	if p, ok := Parse(l); !ok || p.Seq != 3 {
		t.Fatal("parse")
	}
}
