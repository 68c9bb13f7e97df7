package soakfig

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

var rules = Rules{BaselineFor: 60, SlopeOver: 240, FinalFor: 60, RefLoad: 50}

// samples makes 5 s samples over 0..dur seconds, with the load and the value
// of each instant given by functions of the time in seconds.
func samples(dur float64, load, val func(t float64) float64) []Sample {
	var out []Sample
	for t := 0.0; t <= dur+eps; t += 5 {
		out = append(out, Sample{TimeS: t, GorStatus: val(t), Running: load(t), Phase: "steady"})
	}
	return out
}

// wobble is a load that moves between 45 and 50 with no trend in time.
func wobble(t float64) float64 {
	return []float64{50, 48, 45, 49, 50, 47, 46, 50, 49, 48, 50, 45}[int(t/5)%12]
}

func TestCompute(t *testing.T) {
	const tol = 1e-9
	tests := []struct {
		name                           string
		load, val                      func(t float64) float64
		slope, perLoad, raw, base, fin float64
		fitEnd                         float64 // the fit at the reference load at t=300 s
		rawSlopeNonZero                bool
	}{
		{
			name:  "flat at a constant load",
			load:  func(float64) float64 { return 50 },
			val:   func(float64) float64 { return 165 },
			slope: 0, perLoad: 0, raw: 0, base: 165, fin: 165, fitEnd: 165,
		},
		{
			name:  "leak at a constant load: 30 a minute",
			load:  func(float64) float64 { return 50 },
			val:   func(t float64) float64 { return 165 + 30*t/60 },
			slope: 30, perLoad: 0, raw: 30, base: 165 + 30*27.5/60, fin: 165 + 30*(300-27.5)/60, fitEnd: 165 + 150,
		},
		{
			name:  "flat, three goroutines per container running",
			load:  wobble,
			val:   func(t float64) float64 { return 15 + 3*wobble(t) },
			slope: 0, perLoad: 3, base: 165, fin: 165, fitEnd: 165, rawSlopeNonZero: true,
		},
		{
			name:  "leak of 2 a minute under a moving load",
			load:  wobble,
			val:   func(t float64) float64 { return 15 + 3*wobble(t) + 2*t/60 },
			slope: 2, perLoad: 3, base: 165 + 2*27.5/60, fin: 165 + 2*(300-27.5)/60, fitEnd: 175, rawSlopeNonZero: true,
		},
		{
			name: "load in step with time: the load term is dropped",
			load: func(t float64) float64 { return 40 + t/30 },
			val:  func(t float64) float64 { return 15 + 3*(40+t/30) },
			// 3 per container, one container every 30 s: 6 a minute, not
			// explained away by the load
			slope: 6, perLoad: 0, raw: 6, base: 15 + 3*(40+27.5/30), fin: 15 + 3*(40+(300-27.5)/30), fitEnd: 165,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := samples(300, tc.load, tc.val)
			f := Compute(s, func(s Sample) float64 { return s.GorStatus }, rules)
			if math.Abs(f.Slope-tc.slope) > tol {
				t.Errorf("slope %v, want %v", f.Slope, tc.slope)
			}
			if math.Abs(f.PerLoad-tc.perLoad) > tol {
				t.Errorf("per load %v, want %v", f.PerLoad, tc.perLoad)
			}
			if !tc.rawSlopeNonZero && math.Abs(f.RawSlope-tc.raw) > tol {
				t.Errorf("raw slope %v, want %v", f.RawSlope, tc.raw)
			}
			if tc.rawSlopeNonZero && math.Abs(f.RawSlope-f.Slope) < 0.01 {
				t.Errorf("raw slope %v equals the slope at constant load: the test's load does not move the raw slope", f.RawSlope)
			}
			if math.Abs(f.Baseline-tc.base) > tol || math.Abs(f.Final-tc.fin) > tol {
				t.Errorf("baseline %v final %v, want %v %v", f.Baseline, f.Final, tc.base, tc.fin)
			}
			if f.N != 49 { // 60..300 s every 5 s
				t.Errorf("%d samples in the slope window, want 49", f.N)
			}
			if f.From != 60 || f.To != 300 || f.BaseTo != 55 || f.FinFrom != 245 {
				t.Errorf("windows: slope %v..%v, baseline ..%v, final %v.., want 60..300, ..55, 245..", f.From, f.To, f.BaseTo, f.FinFrom)
			}
			if got := f.FitAt(300); math.Abs(got-tc.fitEnd) > 1e-6 {
				t.Errorf("the fit at the reference load reads %v at t=300 s, want %v", got, tc.fitEnd)
			}
		})
	}
}

// TestComputeNoise: under a moving load with noise, the slope at constant
// load has a much smaller standard error than the plain one.
func TestComputeNoise(t *testing.T) {
	noise := []float64{0.5, -1, 0, 1, -0.5, 0, 1, -1, 0.5, 0, -0.5, 1, 0}
	val := func(t float64) float64 { return 15 + 3*wobble(t) + noise[int(t/5)%13] }
	f := Compute(samples(300, wobble, val), func(s Sample) float64 { return s.GorStatus }, rules)
	if math.Abs(f.Slope) > 0.5 {
		t.Errorf("slope %v, want about 0", f.Slope)
	}
	if f.SlopeSE <= 0 || f.SlopeSE > 0.3 {
		t.Errorf("slope standard error %v, want in (0, 0.3]", f.SlopeSE)
	}
	if math.Abs(f.PerLoad-3) > 0.2 {
		t.Errorf("per load %v, want about 3", f.PerLoad)
	}
}

func TestComputeTooFew(t *testing.T) {
	s := samples(10, func(float64) float64 { return 50 }, func(float64) float64 { return 1 })[:2]
	f := Compute(s, func(s Sample) float64 { return s.GorStatus }, rules)
	if !math.IsNaN(f.Slope) || f.N != 2 {
		t.Errorf("two samples: slope %v (want NaN), N %d", f.Slope, f.N)
	}
	if f := Compute(nil, func(s Sample) float64 { return s.GorStatus }, rules); !math.IsNaN(f.Slope) || !math.IsNaN(f.Baseline) {
		t.Errorf("no samples: %+v", f)
	}
}

func TestCSVRoundTrip(t *testing.T) {
	in := []Sample{
		{TimeS: 0, GorMetrics: 25, GorStatus: 13, FDMetrics: 13, FDProc: 12, Phase: "warmup"},
		{TimeS: 5.04, GorMetrics: 174, GorStatus: 162, FDMetrics: 63, FDProc: 62, Running: 49, Streams: 50, Phase: "steady"},
	}
	var buf bytes.Buffer
	if err := WriteCSV(&buf, in); err != nil {
		t.Fatal(err)
	}
	want := "time_s,goroutines_metrics,goroutines_status,fds_metrics,fds_proc,containers_running,streams_open,phase\n" +
		"0.0,25,13,13,12,0,0,warmup\n5.0,174,162,63,62,49,50,steady\n"
	if buf.String() != want {
		t.Fatalf("CSV:\n%s\nwant:\n%s", buf.String(), want)
	}
	out, err := ReadCSV(&buf)
	if err != nil {
		t.Fatal(err)
	}
	in[1].TimeS = 5
	if len(out) != 2 || out[0] != in[0] || out[1] != in[1] {
		t.Errorf("read back %+v, want %+v", out, in)
	}
}

func TestReadCSVErrors(t *testing.T) {
	tests := []struct{ name, csv, want string }{
		{"missing columns", "time_s,goroutines_metrics\n0,1\n", "no column goroutines_status, fds_metrics, fds_proc"},
		{"bad number", "time_s,goroutines_metrics,goroutines_status,fds_metrics,fds_proc\n0,1,2,3,4\n5,x,2,3,4\n", `line 3: goroutines_metrics: strconv.ParseFloat: parsing "x"`},
		{"short row", "time_s,goroutines_metrics,goroutines_status,fds_metrics,fds_proc\n0,1,2\n", "line 2: no fds_metrics"},
		{"empty", "", "header: EOF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadCSV(strings.NewReader(tc.csv))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	// Without the optional columns: load 0, phase steady.
	s, err := ReadCSV(strings.NewReader("time_s,goroutines_metrics,goroutines_status,fds_metrics,fds_proc\n0,1,2,3,4\n"))
	if err != nil || len(s) != 1 || s[0].Phase != "steady" || s[0].Running != 0 || s[0].FDProc != 4 {
		t.Errorf("optional columns absent: %+v, %v", s, err)
	}
}

// TestComputeLoadMostlyInStepWithTime: when time explains most of the
// load's moves, the fit cannot tell a leak from the load's trend, so it
// drops the load term: the slope is the plain one, and a leak of 2 a minute
// under a rising load reads as more, never as less.
func TestComputeLoadMostlyInStepWithTime(t *testing.T) {
	small := []float64{0.5, -0.5, 0, 0.5, 0, -0.5}
	load := func(t float64) float64 { return 40 + t/30 + small[int(t/5)%6] }
	val := func(t float64) float64 { return 15 + 3*load(t) + 2*t/60 }
	f := Compute(samples(300, load, val), func(s Sample) float64 { return s.GorStatus }, rules)
	if f.PerLoad != 0 || f.Slope != f.RawSlope {
		t.Errorf("per load %v, slope %v, plain slope %v: want the load term dropped", f.PerLoad, f.Slope, f.RawSlope)
	}
	if f.Slope < 2 {
		t.Errorf("slope %v: a leak of 2 a minute under a rising load must read as at least 2", f.Slope)
	}
}
