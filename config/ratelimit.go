package config

import (
	"math"
	"time"
)

// RateLimit bounds how fast each container's records are read: a token
// bucket per container and dimension (lines, bytes), refilled at the rate
// and holding Burst's worth of it. A container's berth.rate_limit label sets
// its lines per second. Zero rates: no limit (the default).
type RateLimit struct {
	// LinesPerSecond is each container's rate in records (a line, or a
	// joined multiline record) per second; 0: no limit.
	LinesPerSecond float64 `koanf:"lines_per_second"`
	// BytesPerSecond is each container's rate in bytes of record bodies
	// per second; 0: no limit.
	BytesPerSecond int64 `koanf:"bytes_per_second"`
	// Burst is how much a bucket holds, as a time at the rate: a container
	// quiet for that long may then write that much at once.
	Burst time.Duration `koanf:"burst"`
	// Mode is what happens beyond the rate: RateModeThrottle or
	// RateModeDrop.
	Mode string `koanf:"mode"`
}

// The values of rate_limit.mode.
const (
	// RateModeThrottle reads a container more slowly: nothing is lost, its
	// lines wait in Docker's log (berth.lag shows it).
	RateModeThrottle = "throttle"
	// RateModeDrop drops the records beyond the rate, counts them, and
	// moves the container's checkpoint past them.
	RateModeDrop = "drop"
)

// MaxLinesPerSecond bounds rate_limit.lines_per_second and the
// berth.rate_limit label.
const MaxLinesPerSecond = 1e9

// validateRateLimit reports the rate_limit keys berth cannot use.
func validateRateLimit(r RateLimit, bad, badDefault func(key, format string, args ...any)) {
	if l := r.LinesPerSecond; math.IsNaN(l) || l < 0 || l > MaxLinesPerSecond {
		badDefault("rate_limit.lines_per_second", "%v is out of range; use 0 (no limit) to 1e9", l)
	}
	if r.BytesPerSecond < 0 {
		badDefault("rate_limit.bytes_per_second", "%d must not be negative; use 0 for no limit", r.BytesPerSecond)
	}
	if r.Burst < 10*time.Millisecond || r.Burst > time.Hour {
		badDefault("rate_limit.burst", "%v is out of range; use 10ms to 1h", r.Burst)
	}
	switch r.Mode {
	case RateModeThrottle, RateModeDrop:
	default:
		bad("rate_limit.mode", "%q is not allowed; use throttle or drop", r.Mode)
	}
}
