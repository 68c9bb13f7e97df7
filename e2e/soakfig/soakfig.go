// Package soakfig holds the figures of berth's soak test (e2e/soak_test.go):
// the CSV its samples are written to, and the rules that turn a series of
// samples into the warm baseline, the slope and the final figure that the
// test judges and tools/soakplot draws. One package, so that the test and
// the plot cannot disagree.
//
// The load moves the figures: each container running costs berth about
// three goroutines (the burst, and the HTTP connection's read and write
// loops) and one file descriptor, and the soak's running count moves
// between about 45 and 50 as containers exit and the next ones start. A
// plain least-squares slope of goroutines over 4 minutes of 5 s samples
// then has a standard error of about 0.5 per minute, so a flat berth would
// fail the "< 1 per minute" check in a few runs in a hundred. The slope
// judged is therefore the slope at constant load: the time coefficient of
// a least-squares fit of the series to time and to the number of
// containers running (counted by the test, not by berth, so that a leak in
// berth cannot hide in the load term). The baseline and final figures are
// taken at the reference load likewise. The plain slope is reported too.
//
// It imports only the standard library: tools/soakplot, a module of its
// own, imports it.
package soakfig

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Sample is one row of the soak's CSV: berth's figures and the load at one
// instant.
type Sample struct {
	TimeS      float64 // seconds since the load started (one decimal)
	GorMetrics float64 // go_goroutine_count on /metrics
	GorStatus  float64 // "goroutines" of /status
	FDMetrics  float64 // process_unix_file_descriptor_count on /metrics
	FDProc     float64 // entries of /proc/<pid>/fd
	Running    float64 // containers of the soak running (the test's count)
	Streams    float64 // berth_streams_open
	Phase      string  // warmup, steady, drain, idle
}

// Columns are the CSV's header, in order.
var Columns = []string{"time_s", "goroutines_metrics", "goroutines_status", "fds_metrics", "fds_proc", "containers_running", "streams_open", "phase"}

// Series names a column of the samples that the soak judges.
type Series struct {
	Name string
	Get  func(Sample) float64
}

// AllSeries are the four series the soak judges: goroutines and file
// descriptors, each as berth reports them and as the test counts them.
var AllSeries = []Series{
	{"goroutines_metrics", func(s Sample) float64 { return s.GorMetrics }},
	{"goroutines_status", func(s Sample) float64 { return s.GorStatus }},
	{"fds_metrics", func(s Sample) float64 { return s.FDMetrics }},
	{"fds_proc", func(s Sample) float64 { return s.FDProc }},
}

// RoundTime rounds seconds to the CSV's precision, so that figures
// computed from live samples and from the CSV agree.
func RoundTime(sec float64) float64 { return math.Round(sec*10) / 10 }

// WriteCSV writes the samples with the Columns header.
func WriteCSV(w io.Writer, samples []Sample) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(Columns); err != nil {
		return err
	}
	num := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	for _, s := range samples {
		rec := []string{strconv.FormatFloat(RoundTime(s.TimeS), 'f', 1, 64), num(s.GorMetrics), num(s.GorStatus),
			num(s.FDMetrics), num(s.FDProc), num(s.Running), num(s.Streams), s.Phase}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// ReadCSV reads samples written by WriteCSV; columns are found by their
// header names. time_s and the four judged series are required; a CSV
// without containers_running gives a load of 0 (the fit then has no load
// term), one without phase gives every sample the phase "steady".
func ReadCSV(r io.Reader) ([]Sample, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.TrimSpace(h)] = i
	}
	var missing []string
	for _, need := range Columns[:5] {
		if _, ok := col[need]; !ok {
			missing = append(missing, need)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("no column %s in the header %q", strings.Join(missing, ", "), header)
	}
	var out []Sample
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var errs []error
		num := func(name string) float64 {
			i, ok := col[name]
			if !ok {
				return 0
			}
			if i >= len(rec) {
				errs = append(errs, fmt.Errorf("line %d: no %s", line, name))
				return 0
			}
			v, err := strconv.ParseFloat(strings.TrimSpace(rec[i]), 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("line %d: %s: %w", line, name, err))
			}
			return v
		}
		s := Sample{TimeS: num("time_s"), GorMetrics: num("goroutines_metrics"), GorStatus: num("goroutines_status"),
			FDMetrics: num("fds_metrics"), FDProc: num("fds_proc"), Running: num("containers_running"),
			Streams: num("streams_open"), Phase: "steady"}
		if i, ok := col["phase"]; ok && i < len(rec) {
			s.Phase = rec[i]
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
}

// Phase returns the samples of one phase, in order.
func Phase(samples []Sample, phase string) []Sample {
	var out []Sample
	for _, s := range samples {
		if s.Phase == phase {
			out = append(out, s)
		}
	}
	return out
}

// Rules are the windows of the figures, in seconds, over the steady
// samples, and the load the baseline and final figures are taken at.
type Rules struct {
	BaselineFor float64 // the warm baseline: the first BaselineFor seconds
	SlopeOver   float64 // the slope: the last SlopeOver seconds
	FinalFor    float64 // the final figure: the last FinalFor seconds
	RefLoad     float64 // containers running
}

// Figures are what the soak reports of one series.
type Figures struct {
	// Slope is the least-squares slope per minute at constant load over
	// the slope window: the time coefficient of the fit
	// v = a + Slope*minutes + PerLoad*running. SlopeSE is its standard
	// error.
	Slope, SlopeSE float64
	// PerLoad is the fit's figure per container running (0 when the load
	// did not vary in the window, or when the fit cannot tell it from time).
	PerLoad float64
	// RawSlope is the plain least-squares slope per minute of the series
	// over the same window, load ignored.
	RawSlope float64
	// Baseline and Final are the medians of the series, at the reference
	// load (each sample moved by PerLoad*(RefLoad-running)), over the first
	// and last windows. RawBaseline and RawFinal are the plain medians.
	Baseline, Final       float64
	RawBaseline, RawFinal float64
	// N is the number of samples in the slope window.
	N int
	// The windows, in seconds since the load started (From..To: the slope;
	// BaseFrom..BaseTo: the baseline; FinFrom..To: the final figure).
	From, To, BaseFrom, BaseTo, FinFrom float64
	// FitAt is the fitted line at the reference load, in seconds: it
	// returns the value the fit gives at t seconds.
	FitAt func(t float64) float64
}

// eps compares times of one decimal as equal when they print equal.
const eps = 1e-6

// maxLoadTimeR2 is how much of the load's variance time may explain (r²)
// for the fit to keep the load term. In the soak's runs r² was below 0.1.
const maxLoadTimeR2 = 0.75

// MaxSlopeSE is the standard error of the slope above which a soak cannot
// judge its series: a flat series and a leak of 2 a minute would then be
// hard to tell apart. The soak's runs had 0.06 to 0.32 per minute. The
// error assumes independent residuals; samples 5 s apart are not quite, so
// it is a floor, not an exact figure.
const MaxSlopeSE = 0.5

// Compute applies the rules to the steady samples of one series. It
// needs at least three samples in the slope window; with fewer, the slopes
// are NaN.
func Compute(steady []Sample, get func(Sample) float64, r Rules) Figures {
	f := Figures{Slope: math.NaN(), SlopeSE: math.NaN(), RawSlope: math.NaN(),
		Baseline: math.NaN(), Final: math.NaN(), RawBaseline: math.NaN(), RawFinal: math.NaN(),
		FitAt: func(float64) float64 { return math.NaN() }}
	if len(steady) == 0 {
		return f
	}
	first, last := steady[0].TimeS, steady[len(steady)-1].TimeS
	f.From, f.To, f.BaseFrom, f.BaseTo, f.FinFrom = first, last, first, first, last
	var win []Sample
	for _, s := range steady {
		if s.TimeS >= last-r.SlopeOver-eps {
			if len(win) == 0 {
				f.From = s.TimeS
			}
			win = append(win, s)
		}
	}
	f.N = len(win)
	fit := fitTimeLoad(win, get)
	if fit.ok {
		f.Slope, f.SlopeSE, f.PerLoad, f.RawSlope = fit.slope, fit.se, fit.perLoad, fit.rawSlope
		f.FitAt = func(t float64) float64 { return fit.at(t/60, r.RefLoad) }
	}
	perLoad := f.PerLoad
	var base, rawBase, fin, rawFin []float64
	for _, s := range steady {
		v := get(s)
		adj := v + perLoad*(r.RefLoad-s.Running)
		if s.TimeS < first+r.BaselineFor-eps {
			base, rawBase = append(base, adj), append(rawBase, v)
			f.BaseTo = s.TimeS
		}
		if s.TimeS > last-r.FinalFor+eps {
			if len(fin) == 0 {
				f.FinFrom = s.TimeS
			}
			fin, rawFin = append(fin, adj), append(rawFin, v)
		}
	}
	f.Baseline, f.RawBaseline = Median(base), Median(rawBase)
	f.Final, f.RawFinal = Median(fin), Median(rawFin)
	return f
}

// fit is a least-squares fit v = my + slope*(m-mm) + perLoad*(l-ml), m in
// minutes, l the containers running.
type fit struct {
	ok                 bool
	slope, se, perLoad float64
	rawSlope           float64
	mm, ml, my         float64
}

func (f fit) at(m, l float64) float64 { return f.my + f.slope*(m-f.mm) + f.perLoad*(l-f.ml) }

// fitTimeLoad fits the series to time and load. When the load does not
// vary, or varies in step with time so that the two cannot be told apart,
// the load term is dropped and the fit is the plain one.
func fitTimeLoad(win []Sample, get func(Sample) float64) fit {
	n := float64(len(win))
	if len(win) < 3 {
		return fit{}
	}
	var f fit
	for _, s := range win {
		f.mm += s.TimeS / 60
		f.ml += s.Running
		f.my += get(s)
	}
	f.mm, f.ml, f.my = f.mm/n, f.ml/n, f.my/n
	var stt, stl, sll, sty, sly float64
	for _, s := range win {
		dt, dl, dy := s.TimeS/60-f.mm, s.Running-f.ml, get(s)-f.my
		stt += dt * dt
		stl += dt * dl
		sll += dl * dl
		sty += dt * dy
		sly += dl * dy
	}
	if stt == 0 {
		return fit{}
	}
	f.rawSlope = sty / stt
	det := stt*sll - stl*stl
	dof := n - 3
	// The load term is kept when it varies and does not move mostly in step
	// with time: det/(stt*sll) is 1 - r² of load against time, and below
	// maxLoadTimeR2 the fit could not tell a leak from a trend in the load.
	// Without it the slope is the plain one, which counts a load trend as
	// a leak: a false alarm rather than a missed leak.
	withLoad := sll > 0 && det > (1-maxLoadTimeR2)*stt*sll && dof > 0
	if withLoad {
		f.slope = (sll*sty - stl*sly) / det
		f.perLoad = (stt*sly - stl*sty) / det
	} else {
		f.slope, f.perLoad, dof = f.rawSlope, 0, n-2
	}
	var rss float64
	for _, s := range win {
		r := get(s) - f.at(s.TimeS/60, s.Running)
		rss += r * r
	}
	// The variance of the time coefficient: s² times the (time, time)
	// entry of the inverse of the centred normal matrix.
	if withLoad {
		f.se = math.Sqrt(rss / dof * sll / det)
	} else {
		f.se = math.Sqrt(rss / dof / stt)
	}
	f.ok = true
	return f
}

// Median is the median of xs (NaN for none).
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
