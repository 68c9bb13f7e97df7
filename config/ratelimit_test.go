package config

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestValidateRateLimit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(r *RateLimit)
		key    string // "": accepted
	}{
		{"default", func(*RateLimit) {}, ""},
		{"lines and bytes, drop", func(r *RateLimit) { r.LinesPerSecond, r.BytesPerSecond, r.Mode = 100, 1<<20, RateModeDrop }, ""},
		{"half a line per second", func(r *RateLimit) { r.LinesPerSecond = 0.5 }, ""},
		{"most lines", func(r *RateLimit) { r.LinesPerSecond = MaxLinesPerSecond }, ""},
		{"shortest burst", func(r *RateLimit) { r.Burst = 10 * time.Millisecond }, ""},
		{"longest burst", func(r *RateLimit) { r.Burst = time.Hour }, ""},
		{"negative lines", func(r *RateLimit) { r.LinesPerSecond = -1 }, "rate_limit.lines_per_second"},
		{"NaN lines", func(r *RateLimit) { r.LinesPerSecond = math.NaN() }, "rate_limit.lines_per_second"},
		{"infinite lines", func(r *RateLimit) { r.LinesPerSecond = math.Inf(1) }, "rate_limit.lines_per_second"},
		{"negative bytes", func(r *RateLimit) { r.BytesPerSecond = -1 }, "rate_limit.bytes_per_second"},
		{"no burst", func(r *RateLimit) { r.Burst = 0 }, "rate_limit.burst"},
		{"burst too long", func(r *RateLimit) { r.Burst = 2 * time.Hour }, "rate_limit.burst"},
		{"unknown mode", func(r *RateLimit) { r.Mode = "slow" }, "rate_limit.mode"},
		{"no mode", func(r *RateLimit) { r.Mode = "" }, "rate_limit.mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.modify(&c.RateLimit)
			err := c.Validate()
			switch {
			case tc.key == "" && err != nil:
				t.Fatalf("Validate() = %v", err)
			case tc.key == "":
			case err == nil:
				t.Fatalf("Validate() accepted %+v", c.RateLimit)
			case !strings.HasPrefix(err.Error(), tc.key+": ") || strings.Contains(err.Error(), "\n"):
				t.Errorf("Validate() = %q, want one problem naming %s", err, tc.key)
			}
		})
	}
}

func TestLoadRateLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "berth.yaml")
	yml := "rate_limit:\n  lines_per_second: 100\n  bytes_per_second: 1048576\n  burst: 5s\n  mode: drop\n"
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, []string{"BERTH_RATE_LIMIT__LINES_PER_SECOND=250.5"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := RateLimit{LinesPerSecond: 250.5, BytesPerSecond: 1 << 20, Burst: 5 * time.Second, Mode: RateModeDrop}
	if c.RateLimit != want {
		t.Errorf("rate_limit = %+v, want %+v (the environment over the file)", c.RateLimit, want)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}
