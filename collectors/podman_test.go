package collectors

import (
	"testing"
	"time"
)

// TestWholeSecondTimestamps: Podman before 5.8 stamps each message with
// RFC 3339 whole seconds ("2026-11-29T23:30:54Z "), in UTC or with an offset.
// Both parse to the right instant; the UTC form without allocating, like
// Docker's fixed-width form (it is on the per-line path).
func TestWholeSecondTimestamps(t *testing.T) {
	want := time.Date(2026, 11, 29, 23, 30, 54, 0, time.UTC)
	for _, tc := range []struct{ msg, content string }{
		{"2026-11-29T23:30:54Z run=1 seq=000001\n", "run=1 seq=000001"},
		{"2026-11-30T00:30:54+01:00 with an offset\n", "with an offset"},
		{"2026-11-29T23:30:54Z \n", ""},
	} {
		var c tsCache
		ts, content, complete, err := c.parseMessage([]byte(tc.msg))
		if err != nil || !ts.Equal(want) || string(content) != tc.content || !complete {
			t.Errorf("parseMessage(%q) = %v, %q, %v, %v; want %v, %q, complete", tc.msg, ts, content, complete, err, want, tc.content)
		}
	}
	var c tsCache
	msg := []byte("2026-11-29T23:30:54Z a line of a Podman container\n")
	if n := testing.AllocsPerRun(100, func() { _, _, _, _ = c.parseMessage(msg) }); n != 0 {
		t.Errorf("parsing a whole-second UTC timestamp allocates %v times per message, want 0", n)
	}
	for _, bad := range []string{"2026-11-29T23:30:5xZ x\n", "2026-13-29T23:30:54Z x\n", "2026-11-29T23:30:54 x\n"} {
		if _, _, _, err := c.parseMessage([]byte(bad)); err == nil {
			t.Errorf("parseMessage(%q) accepted a malformed timestamp", bad)
		}
	}
}
