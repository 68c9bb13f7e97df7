package parse

import (
	"testing"

	"github.com/berthlog/berth/logs"
)

// benchmarkLine parses a typical structured line of about 150 bytes (six
// fields, one escaped string) into reused memory, and structures it.
func benchmarkLine(b *testing.B, f Format, line string) {
	l := []byte(line)
	buf := make([]byte, 0, 1024)
	fields := make([]logs.Attr, 0, 16)
	b.SetBytes(int64(len(l)))
	b.ReportAllocs()
	for range b.N {
		_, fs, ok := Fields(f, l, buf[:0], fields[:0])
		if !ok {
			b.Fatal("did not parse")
		}
		r := logs.Record{Body: l}
		Structure(&r, fs, BodyMessage)
	}
}

func BenchmarkJSON(b *testing.B) {
	benchmarkLine(b, JSON, `{"time":"2026-11-30T01:02:03.456Z","level":"info","msg":"request \"GET /api\" done","status":200,"duration_ms":12.5,"user":"alice"}`)
}

func BenchmarkLogfmt(b *testing.B) {
	benchmarkLine(b, Logfmt, `time=2026-11-30T01:02:03.456Z level=info msg="request \"GET /api\" done" status=200 duration_ms=12.5 user=alice`)
}
