package logs

import "unicode/utf8"

// Clip cuts b to at most n bytes, backing off so as not to split a UTF-8
// character; it reports whether it cut. A line longer than max_line_bytes,
// and a joined record longer than it, are cut so and marked truncated.
func Clip(b []byte, n int) ([]byte, bool) {
	if len(b) <= n {
		return b, false
	}
	if n < 0 {
		n = 0
	}
	cut := n
	for i := 0; i < utf8.UTFMax && cut > 0 && cut < len(b) && !utf8.RuneStart(b[cut]); i++ {
		cut--
	}
	if cut < n-utf8.UTFMax+1 || (cut < len(b) && !utf8.RuneStart(b[cut])) {
		cut = n // not UTF-8 there: cut at the byte limit
	}
	return b[:cut], true
}
