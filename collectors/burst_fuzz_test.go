package collectors

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/berthlog/berth/logs"
)

// fuzzLog turns a script into a small log, one message per byte: bit 0 picks
// the stream (stdout only for TTY), bits 1-2 move that stream's clock by 0 to
// 3 ns (so messages share timestamps), bits 3-5 pick the content, and bits 6-7
// both set make the message a partial chunk (not for TTY, whose chunks are
// 16 KiB). A line still open at the end is closed by an empty message. It
// returns the log and the lines each stream must yield, in order.
//
// The log keeps the cursor's precondition (logs.Cursor): two messages of one
// stream with the same content never share a timestamp; the clock moves on
// instead. (Without it a re-attach whose tail window starts inside such a run
// can match its first message to the wrong one and repeat the rest.)
func fuzzLog(script []byte, tty bool) (log []fakeMsg, lines [3][]string) {
	alphabet := [8]string{"", "a", "b", "ab", "é", "€x", "x", "ok"}
	var clock [3]int
	var open [3]bool
	var line [3]strings.Builder
	var seen [3]map[string]bool // the contents at the stream's clock
	var seenAt [3]int           // the clock seen is for
	add := func(s logs.Stream, content string, ends bool) {
		if seenAt[s] == clock[s] && seen[s][content] {
			clock[s]++
		}
		if seen[s] == nil || seenAt[s] != clock[s] {
			seen[s], seenAt[s] = map[string]bool{}, clock[s]
		}
		seen[s][content] = true
		if ends {
			content += "\n"
		}
		log = append(log, fakeMsg{s, at(clock[s]), content})
	}
	for _, c := range script[:min(len(script), 256)] {
		s := logs.Stream(1 + c&1)
		if tty {
			s = logs.Stdout
		}
		clock[s] += int(c>>1) & 3
		content := alphabet[c>>3&7]
		line[s].WriteString(content)
		if !tty && c>>6 == 3 {
			add(s, content, false)
			open[s] = true
			continue
		}
		add(s, content, true)
		lines[s] = append(lines[s], line[s].String())
		line[s].Reset()
		open[s] = false
	}
	for s := logs.Stdout; s <= logs.Stderr; s++ {
		if open[s] {
			add(s, "", true)
			lines[s] = append(lines[s], line[s].String())
		}
	}
	return log, lines
}

// runePrefix is the longest prefix of s, valid UTF-8, of at most n bytes that
// does not split a character.
func runePrefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// FuzzBurstReread: a burst over a whole log (both streams, messages sharing
// timestamps, lines in chunks, multi-byte characters) yields every line
// exactly once, in order per stream, cut to max_line_bytes at a character
// boundary and marked truncated when it was longer; and a second burst over
// the same log, from the cursor the first one returned, yields nothing.
func FuzzBurstReread(f *testing.F) {
	f.Add([]byte{0x08, 0x11, 0x1a, 0x20, 0x29}, false, uint8(255), uint8(3))       // lines on both streams, some at one timestamp
	f.Add([]byte{0xc8, 0xc8, 0x08, 0x09, 0xd1, 0x10}, false, uint8(255), uint8(0)) // lines in chunks, interleaved
	f.Add([]byte{0xe0, 0xe8, 0x20, 0x28, 0x30}, false, uint8(2), uint8(1))         // multi-byte characters cut by a small max line
	f.Add([]byte{0x08, 0x10, 0x18, 0x20, 0x28, 0x30, 0x38}, true, uint8(3), uint8(2))
	f.Add([]byte{0x08, 0x0a, 0x0c, 0x0e, 0x01, 0x03}, false, uint8(255), uint8(7))
	f.Fuzz(func(t *testing.T, script []byte, tty bool, maxLine, tail uint8) {
		ml := 1024
		if maxLine < 224 {
			ml = 1 + int(maxLine%32)
		}
		log, lines := fuzzLog(script, tty)
		d := &fakeDaemon{log: log, tty: tty}
		sink := &memSink{}
		c := newTestCollector(t, d, sink, ml, 1+int(tail%8))

		res := c.Burst(context.Background(), spec(logs.BeginningCursor(), true))
		if res.End != EndEOF || res.Err != nil {
			t.Fatalf("first burst ended %v (%v)", res.End, res.Err)
		}
		var got [3][]logs.Record
		for _, r := range sink.records {
			if len(r.Body) > ml {
				t.Fatalf("a record of %d bytes, beyond max_line_bytes %d", len(r.Body), ml)
			}
			got[r.Stream] = append(got[r.Stream], r)
		}
		for s := logs.Stdout; s <= logs.Stderr; s++ {
			if len(got[s]) != len(lines[s]) {
				t.Fatalf("%v: %d records, want %d: %q", s, len(got[s]), len(lines[s]), sink.bodies())
			}
			for i, want := range lines[s] {
				r := got[s][i]
				if string(r.Body) != runePrefix(want, ml) || r.Truncated != (len(want) > ml) {
					t.Fatalf("%v record %d: %q (truncated %v), want %q of %q (max line %d)", s, i, r.Body, r.Truncated, runePrefix(want, ml), want, ml)
				}
			}
		}

		n := len(sink.records)
		res2 := c.Burst(context.Background(), spec(res.Cursor, true))
		if res2.End != EndEOF || res2.Err != nil {
			t.Fatalf("second burst ended %v (%v)", res2.End, res2.Err)
		}
		if len(sink.records) != n || res2.Lines != 0 {
			t.Fatalf("re-reading the log from the cursor yielded %q again", sink.bodies()[n:])
		}
	})
}
