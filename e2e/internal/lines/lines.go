// Package lines defines the log lines that e2e/loggen writes and that the e2e
// tests parse and rebuild. Both sides use this one package, so a test can
// rebuild the exact bytes a generator wrote from the run id and sequence
// number it reads back.
//
// Every line that carries a sequence number starts with
//
//	run=<run id> stream=<out|err> seq=<%06d>
//
// followed by optional padding.
package lines

import (
	"fmt"
	"strconv"
	"strings"
)

// Docker's log copier cuts lines longer than SplitSize into chunks of
// SplitSize bytes (daemon/logger/copier.go, defaultBufSize).
const SplitSize = 16 * 1024

// MaxStraddles bounds how many SplitSize boundaries of a Big line carry a
// multi-byte UTF-8 character cut in two by the split. Boundaries beyond it
// carry ASCII, so that a truncation at max_line_bytes (a multiple of SplitSize
// with the default 1 MiB) falls between ASCII bytes.
const MaxStraddles = 12

// Stream labels written in the lines.
const (
	Out = "out"
	Err = "err"
)

const filler = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

// Prefix returns the parseable head of a line.
func Prefix(run, stream string, seq int) string {
	return fmt.Sprintf("run=%s stream=%s seq=%06d", run, stream, seq)
}

// Format returns a normal line. With size > len(prefix)+1 the line is padded
// with " " and ASCII filler to exactly size bytes.
func Format(run, stream string, seq, size int) string {
	p := Prefix(run, stream, seq)
	if size <= len(p)+1 {
		return p
	}
	var b strings.Builder
	b.Grow(size)
	b.WriteString(p)
	b.WriteByte(' ')
	for i := b.Len(); i < size; i++ {
		b.WriteByte(filler[i%len(filler)])
	}
	return b.String()
}

// straddlers are placed so that Docker's split falls inside them: "€" (3
// bytes) starts one byte before a boundary, "😀" (4 bytes) two bytes before.
var straddlers = []struct {
	s      string
	before int
}{{"€", 1}, {"😀", 2}}

// Big returns a line of exactly size bytes. At the first MaxStraddles
// multiples of SplitSize that fit, a multi-byte UTF-8 character straddles the
// boundary, so Docker's split falls inside it. The result is valid UTF-8.
func Big(run, stream string, seq, size int) string {
	p := fmt.Sprintf("%s big=%d ", Prefix(run, stream, seq), size)
	b := make([]byte, 0, size)
	b = append(b, p...)
	k := 1
	for len(b) < size {
		if k <= MaxStraddles {
			st := straddlers[(k-1)%len(straddlers)]
			start := k*SplitSize - st.before
			if len(b) == start && start+len(st.s) <= size {
				b = append(b, st.s...)
				k++
				continue
			}
			if len(b) > start { // boundary inside the prefix: skip it
				k++
				continue
			}
		}
		b = append(b, filler[len(b)%len(filler)])
	}
	return string(b)
}

// StraddleOffsets returns the byte offsets of the straddling characters that
// Big places in a line of the given size (for tests of the generator).
func StraddleOffsets(size int) []int {
	var out []int
	for k := 1; k <= MaxStraddles; k++ {
		st := straddlers[(k-1)%len(straddlers)]
		start := k*SplitSize - st.before
		if start+len(st.s) <= size {
			out = append(out, start)
		}
	}
	return out
}

// InvalidUTF8 returns a line whose tail is not valid UTF-8.
func InvalidUTF8(run, stream string, seq int) string {
	return Prefix(run, stream, seq) + " invalid=\xff\xfe\xfd-\xc3\x28-\xe2\x82-\xf0\x9f\x98 end"
}

// Parsed is what Parse reads from a line's head.
type Parsed struct {
	Run    string
	Stream string
	Seq    int
}

// Parse reads the head of a line. ok is false for a line without one (the
// empty line, or anything not written by loggen).
func Parse(line string) (p Parsed, ok bool) {
	f := strings.SplitN(line, " ", 4)
	if len(f) < 3 {
		return p, false
	}
	run, ok1 := strings.CutPrefix(f[0], "run=")
	st, ok2 := strings.CutPrefix(f[1], "stream=")
	sq, ok3 := strings.CutPrefix(f[2], "seq=")
	if !ok1 || !ok2 || !ok3 || run == "" {
		return p, false
	}
	n, err := strconv.Atoi(sq)
	if err != nil || n < 0 {
		return p, false
	}
	return Parsed{Run: run, Stream: st, Seq: n}, true
}

// The stack traces loggen -trace writes (without their final newline), by
// the name of the berth.multiline.preset that joins them.
var Traces = map[string]string{
	"java": "Exception in thread \"main\" java.lang.IllegalStateException: order 42 failed\n" +
		"\tat com.example.shop.OrderService.place(OrderService.java:87)\n" +
		"\tat com.example.shop.OrderController.post(OrderController.java:41)\n" +
		"\tat java.base/java.lang.Thread.run(Thread.java:1583)\n" +
		"Caused by: java.sql.SQLTransientConnectionException: pool exhausted\n" +
		"\tat com.zaxxer.hikari.pool.HikariPool.getConnection(HikariPool.java:181)\n" +
		"\tat com.example.shop.OrderRepository.save(OrderRepository.java:23)\n" +
		"\t... 3 more",
	"python": "Traceback (most recent call last):\n" +
		"  File \"/app/worker.py\", line 31, in <module>\n" +
		"    main()\n" +
		"  File \"/app/worker.py\", line 27, in main\n" +
		"    handle(job)\n" +
		"  File \"/app/worker.py\", line 12, in handle\n" +
		"    raise ValueError(f\"bad job {job!r}\")\n" +
		"ValueError: bad job 'x'",
	"go": "panic: runtime error: index out of range [5] with length 3\n" +
		"\n" +
		"goroutine 1 [running]:\n" +
		"main.(*Server).handle(0xc000012345, {0x4b5b18, 0x3})\n" +
		"\t/app/server.go:42 +0x1d\n" +
		"main.main()\n" +
		"\t/app/main.go:12 +0x25\n" +
		"\n" +
		"goroutine 18 [chan receive]:\n" +
		"main.worker(0xc00001c0c0)\n" +
		"\t/app/worker.go:8 +0x3c\n" +
		"created by main.main in goroutine 1\n" +
		"\t/app/main.go:10 +0x1a",
}

// JavaHalf is the number of lines of a trace written before loggen
// -trace-pause pauses.
const JavaHalf = 4

// TracePlain is the number of numbered plain lines loggen -trace writes
// before the trace, and again after it.
const TracePlain = 10

// Progress is what loggen -progress writes, with no newline: a progress bar
// of "progress NNN%\r" updates (14 bytes each) up to at least size bytes,
// then "progress done" (no carriage return, so that no record of it ends
// with one).
func Progress(size int) string {
	var b strings.Builder
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "progress %3d%%\r", i%1000)
	}
	b.WriteString("progress done")
	return b.String()
}

// Structured are the lines loggen -structured NAME writes on stdout, in
// order: structured lines of the format (json or logfmt), one that is not
// in it (kept as it is), and more after it.
var Structured = map[string][]string{
	"json": {
		`{"time":"2026-11-30T01:02:03Z","level":"info","msg":"user logged in","user":"alice","attempt":1}`,
		`{"severity":"WARNING","message":"disk \"low\"\u00e9","free_mb":12.5,"ok":false}`,
		`{"level":50,"msg":"boom","err":{"code":7,"tags":["a","b"]}}`,
		`not JSON {at all`,
		`{"lvl":"debug","msg":"last","n":3}`,
	},
	"logfmt": {
		`level=info msg="user logged in" user=alice`,
		`lvl=error msg=boom code=7`,
		`plain text, not logfmt`,
		`log.level=warn msg="a \"quoted\" word" empty=`,
	},
}
