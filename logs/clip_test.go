package logs

import (
	"bytes"
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
		cut  bool
	}{
		{"hello", 10, "hello", false},
		{"hello", 5, "hello", false},
		{"hello", 3, "hel", true},
		{"héllo", 2, "h", true},  // é is 2 bytes at 1..2: do not split it
		{"héllo", 3, "hé", true}, // the cut falls after é
		{"h€llo", 3, "h", true},  // € is 3 bytes
		{"\xff\xfe\xfd\xfc", 2, "\xff\xfe", true},
		{"abc", 0, "", true},
	}
	for _, tt := range tests {
		got, cut := Clip([]byte(tt.in), tt.n)
		if string(got) != tt.want || cut != tt.cut {
			t.Errorf("Clip(%q, %d) = %q, %v; want %q, %v", tt.in, tt.n, got, cut, tt.want, tt.cut)
		}
	}
}

// FuzzClip: Clip(b, n) for n >= 0 returns a prefix of b (the same memory) of
// at most n bytes, truncated exactly when b is longer than n, never ends
// inside a multi-byte character that is valid in b, and drops at most
// utf8.UTFMax-1 bytes more than n asks. For valid UTF-8 the prefix is the
// longest run of whole characters that fits.
func FuzzClip(f *testing.F) {
	for _, s := range []string{"hello", "héllo", "h€llo", "a\U0001F600b", "\xff\xfe\xfd\xfc", "a\x80\x80\x80b", "\xe2\x82", "é\xa9\xa9", ""} {
		for n := range uint16(6) {
			f.Add([]byte(s), n)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, nn uint16) {
		n := int(nn) % (len(b) + 3)
		got, truncated := Clip(b, n)
		if len(got) > n {
			t.Fatalf("Clip(%q, %d) = %q: longer than %d", b, n, got, n)
		}
		if len(got) > 0 && &got[0] != &b[0] || !bytes.Equal(got, b[:len(got)]) {
			t.Fatalf("Clip(%q, %d) = %q: not a prefix", b, n, got)
		}
		if truncated != (len(b) > n) {
			t.Fatalf("Clip(%q, %d) = %q, truncated %v", b, n, got, truncated)
		}
		if !truncated {
			if len(got) != len(b) {
				t.Fatalf("Clip(%q, %d) = %q: cut without saying so", b, n, got)
			}
			return
		}
		if len(got) < n-(utf8.UTFMax-1) {
			t.Fatalf("Clip(%q, %d) = %q: dropped more than %d bytes", b, n, got, utf8.UTFMax-1)
		}
		// The cut is not inside a valid character of b.
		for i := 0; i < len(b); {
			r, size := utf8.DecodeRune(b[i:])
			if !(r == utf8.RuneError && size == 1) && i < len(got) && len(got) < i+size {
				t.Fatalf("Clip(%q, %d) = %q: splits the character %q at %d", b, n, got, r, i)
			}
			i += size
		}
		if utf8.Valid(b) {
			_, size := utf8.DecodeRune(b[len(got):])
			if !utf8.Valid(got) || len(got)+size <= n {
				t.Fatalf("Clip(%q, %d) = %q: not the longest whole-character prefix", b, n, got)
			}
		}
	})
}
