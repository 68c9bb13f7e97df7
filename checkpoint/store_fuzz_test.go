package checkpoint

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/berthlog/berth/logs"
)

// FuzzDecode checks the reader of checkpoints.json on any bytes: it never
// panics; what it accepts has version 1 and no empty container id; and it
// re-encodes (Save never fails on a loaded file) and decodes again to the same
// cursors; and re-encoding what it wrote gives the same bytes.
func FuzzDecode(f *testing.F) {
	sample, err := encode(map[string]logs.Cursor{
		"a": cursorAt(1, 7, 8),
		"b": {Streams: [2]logs.StreamCursor{{Time: time.Unix(200, 5).UTC()}, {Time: time.Unix(199, 0).UTC(), Hashes: []uint32{0, 1<<32 - 1}}}},
		"c": logs.EndCursor(time.Unix(300, 0).UTC()),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sample)
	for _, s := range []string{
		`{"version":1,"containers":{}}`,
		`{"version":1}`,
		`{"version":1,"containers":null}`,
		`{"version":2,"containers":{}}`,
		`{"version":1,"containers":{"":{}}}`,
		`{"version":1,"containers":{"x":{"stdout":{"time":"2024-05-01T12:20:30.123456789+02:00","hashes":[]}}}}`,
		`{"version":1,"containers":{"x":{"threshold":"0001-01-01T00:00:00Z","stderr":{"hashes":[4294967296]}}}}`,
		`{"version":1,"containers":{"x":{"threshold":"9999-12-31T23:59:59.999999999-23:59"}}}`,
		`{"version":1,"containers":{"x":{}},"containers":{"y":{}}}`,
		`{"version":1,"containers":{"\ud800\u00e9":{"stdout":{"time":"2024-05-01T10:20:30Z","hashes":[1,1,2]}}}}`,
		"", "null", "[]", `{"version":1,"containers":{"x":`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cursors, err := decode(data)
		if err != nil {
			return
		}
		for id := range cursors {
			if id == "" {
				t.Fatalf("accepted a checkpoint without a container id from %q", data)
			}
		}
		enc, err := encode(cursors)
		if err != nil {
			t.Fatalf("accepted %q but cannot encode it: %v", data, err)
		}
		again, err := decode(enc)
		if err != nil {
			t.Fatalf("cannot decode its own encoding %q of %q: %v", enc, data, err)
		}
		if len(again) != len(cursors) {
			t.Fatalf("%d checkpoints, %d after a round trip through %q", len(cursors), len(again), enc)
		}
		for id, c := range cursors {
			if g, ok := again[id]; !ok || !sameCursor(c, g) {
				t.Fatalf("checkpoint %q: %+v, after a round trip %+v (%v)", id, c, g, ok)
			}
		}
		// From its own output on, the encoding is a fixed point. (Not from
		// any input: an empty "hashes":[] is written as an empty stream
		// object once, then not at all.)
		enc2, err := encode(again)
		if err != nil {
			t.Fatal(err)
		}
		again2, err := decode(enc2)
		if err != nil {
			t.Fatal(err)
		}
		if enc3, err := encode(again2); err != nil || !bytes.Equal(enc2, enc3) {
			t.Fatalf("encoding is not stable: %q then %q (%v)", enc2, enc3, err)
		}
	})
}

// sameCursor compares what a checkpoint keeps: the instants (not their
// zones) and the hashes (an empty list is none).
func sameCursor(a, b logs.Cursor) bool {
	if !a.Threshold.Equal(b.Threshold) {
		return false
	}
	for i := range a.Streams {
		if !a.Streams[i].Time.Equal(b.Streams[i].Time) || !slices.Equal(a.Streams[i].Hashes, b.Streams[i].Hashes) {
			return false
		}
	}
	return true
}
