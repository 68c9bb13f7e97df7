// Command soakplot draws the samples of berth's soak test (e2e/soak_test.go)
// to a PNG: goroutines and open file descriptors over time, one panel each,
// with the warm baseline, the fitted slope and the phases marked.
//
//	go run . -in ../../docs/soak.csv -out ../../docs/soak.png
//
// The CSV has a header row; the columns read are time_s,
// goroutines_metrics, goroutines_status, fds_metrics, fds_proc and, if
// present, phase (warmup, steady, drain, idle). The
// figures in the titles follow the soak test's rules, over the steady
// samples (all samples when there is no phase column): warm baseline =
// median of the first minute, slope = least squares over the last 4 minutes,
// final = median of the last minute.
//
// It is its own module, so that berth's main module does not depend on
// gonum.org/v1/plot.
package main

import (
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"sort"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

const (
	baselineFor = 60.0  // s
	slopeOver   = 240.0 // s
	finalFor    = 60.0  // s
)

func main() {
	in := flag.String("in", "docs/soak.csv", "the soak's samples (CSV)")
	out := flag.String("out", "docs/soak.png", "the PNG to write")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "soakplot:", err)
		os.Exit(1)
	}
}

// sample is one row of the CSV.
type sample struct {
	t                   float64 // s since the load started
	gorMetrics, gorStat float64
	fdMetrics, fdProc   float64
	phase               string // "steady" when absent
}

// figures of one series over the steady samples.
type figures struct {
	baseline, slope, final float64 // slope per minute
	intercept              float64 // of the fitted line, at t (s) = 0, in minutes: y = intercept + slope*t/60
	from, to               float64 // the slope window (s)
	baseFrom, baseTo       float64 // the baseline window (s)
	finFrom                float64 // the final window (s), up to to
}

func run(in, out string) error {
	samples, err := readCSV(in)
	if err != nil {
		return err
	}
	if len(samples) < 2 {
		return fmt.Errorf("%s: %d samples, need at least 2", in, len(samples))
	}
	steady := phase(samples, "steady")
	if len(steady) < 2 {
		return fmt.Errorf("%s: %d steady samples, need at least 2", in, len(steady))
	}
	gm := compute(steady, func(s sample) float64 { return s.gorMetrics })
	fp := compute(steady, func(s sample) float64 { return s.fdProc })

	top, err := panel(samples, fmt.Sprintf("goroutines: slope %+.2f/min over the last 4 min, warm baseline %.0f, final %.0f", gm.slope, gm.baseline, gm.final),
		"goroutines", gm,
		series{"go_goroutine_count (/metrics; counted during the scrape)", func(s sample) float64 { return s.gorMetrics }, color.RGBA{R: 31, G: 119, B: 180, A: 255}, false},
		series{"goroutines (/status)", func(s sample) float64 { return s.gorStat }, color.RGBA{R: 255, G: 127, B: 14, A: 255}, true})
	if err != nil {
		return err
	}
	bottom, err := panel(samples, fmt.Sprintf("open file descriptors: slope %+.2f/min over the last 4 min, warm baseline %.0f, final %.0f", fp.slope, fp.baseline, fp.final),
		"file descriptors", fp,
		series{"/proc/<pid>/fd", func(s sample) float64 { return s.fdProc }, color.RGBA{R: 44, G: 160, B: 44, A: 255}, false},
		series{"process_unix_file_descriptor_count (/metrics)", func(s sample) float64 { return s.fdMetrics }, color.RGBA{R: 214, G: 39, B: 40, A: 255}, true})
	if err != nil {
		return err
	}
	bottom.X.Label.Text = "time since the load started (s)"

	const w, h = 12 * vg.Inch, 9 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	// a heading above the two panels
	head := dc
	head.Min.Y = dc.Max.Y - 0.45*vg.Inch
	style := draw.TextStyle{Color: color.Black, Font: plot.DefaultFont, Handler: plot.DefaultTextHandler,
		XAlign: draw.XCenter, YAlign: draw.YCenter}
	style.Font.Size = vg.Points(14)
	head.FillText(style, vg.Point{X: (dc.Min.X + dc.Max.X) / 2, Y: (head.Min.Y + head.Max.Y) / 2},
		fmt.Sprintf("berth soak: %d samples every 5 s, %.1f min; shaded: the steady phase (50 containers)", len(samples), (samples[len(samples)-1].t-samples[0].t)/60))
	body := dc
	body.Max.Y = head.Min.Y
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(4), PadBottom: vg.Points(4), PadLeft: vg.Points(4), PadRight: vg.Points(8), PadY: vg.Points(14)}
	canvases := plot.Align([][]*plot.Plot{{top}, {bottom}}, tiles, body)
	top.Draw(canvases[0][0])
	bottom.Draw(canvases[1][0])

	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Printf("%s: goroutines (/metrics) slope %+.2f/min, baseline %.1f, final %.1f; FDs (/proc) slope %+.2f/min, baseline %.1f, final %.1f\n",
		out, gm.slope, gm.baseline, gm.final, fp.slope, fp.baseline, fp.final)
	return nil
}

type series struct {
	name   string
	get    func(sample) float64
	color  color.Color
	dashed bool
}

// panel draws series over time, the steady phase shaded, the warm baseline
// and the fitted line over their windows.
func panel(samples []sample, title, ylabel string, fig figures, ss ...series) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(12)
	p.Y.Label.Text = ylabel
	p.Y.Tick.Marker = intTicks{}
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.Legend.Left = false

	hi := math.Inf(-1)
	for _, s := range samples {
		for _, se := range ss {
			hi = math.Max(hi, se.get(s))
		}
	}
	// from 0, with the top ~40% left for the legend
	p.Y.Min = 0
	p.Y.Max = math.Max(hi, 1) * 1.65
	p.X.Min, p.X.Max = samples[0].t, samples[len(samples)-1].t

	// the steady phase, shaded
	if st := phase(samples, "steady"); len(st) > 0 {
		shade, err := plotter.NewPolygon(plotter.XYs{
			{X: st[0].t, Y: p.Y.Min}, {X: st[len(st)-1].t, Y: p.Y.Min},
			{X: st[len(st)-1].t, Y: p.Y.Max}, {X: st[0].t, Y: p.Y.Max}})
		if err != nil {
			return nil, err
		}
		shade.Color = color.RGBA{R: 235, G: 235, B: 235, A: 255}
		shade.LineStyle.Width = 0
		p.Add(shade)
	}

	for _, se := range ss {
		xys := make(plotter.XYs, len(samples))
		for i, s := range samples {
			xys[i] = plotter.XY{X: s.t, Y: se.get(s)}
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, err
		}
		l.Color = se.color
		l.Width = vg.Points(1.5)
		if se.dashed {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			l.Width = vg.Points(1)
		}
		p.Add(l)
		p.Legend.Add(se.name, l)
	}

	base, err := plotter.NewLine(plotter.XYs{{X: fig.baseFrom, Y: fig.baseline}, {X: fig.baseTo, Y: fig.baseline}})
	if err != nil {
		return nil, err
	}
	base.Color = color.Black
	base.Width = vg.Points(3)
	p.Add(base)
	p.Legend.Add(fmt.Sprintf("warm baseline (median of the first minute) %.0f", fig.baseline), base)

	fin, err := plotter.NewLine(plotter.XYs{{X: fig.finFrom, Y: fig.final}, {X: fig.to, Y: fig.final}})
	if err != nil {
		return nil, err
	}
	fin.Color = color.RGBA{R: 140, G: 86, B: 75, A: 255}
	fin.Width = vg.Points(3)
	p.Add(fin)
	p.Legend.Add(fmt.Sprintf("final (median of the last minute) %.0f", fig.final), fin)

	fit, err := plotter.NewLine(plotter.XYs{
		{X: fig.from, Y: fig.intercept + fig.slope*fig.from/60},
		{X: fig.to, Y: fig.intercept + fig.slope*fig.to/60}})
	if err != nil {
		return nil, err
	}
	fit.Color = color.RGBA{R: 148, G: 103, B: 189, A: 255}
	fit.Width = vg.Points(2)
	fit.Dashes = []vg.Length{vg.Points(8), vg.Points(4)}
	p.Add(fit)
	p.Legend.Add(fmt.Sprintf("least-squares fit, last 4 min: %+.2f/min", fig.slope), fit)
	return p, nil
}

// intTicks are the default ticks, labelled as integers.
type intTicks struct{}

func (intTicks) Ticks(min, max float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(min, max)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = strconv.FormatFloat(ts[i].Value, 'f', 0, 64)
		}
	}
	return ts
}

func phase(samples []sample, name string) []sample {
	var out []sample
	for _, s := range samples {
		if s.phase == name {
			out = append(out, s)
		}
	}
	return out
}

// compute applies the soak test's rules to the steady samples.
func compute(steady []sample, get func(sample) float64) figures {
	first, last := steady[0].t, steady[len(steady)-1].t
	f := figures{baseFrom: first, baseTo: first, from: first, to: last}
	var base, fin, xs, ys []float64
	const eps = 1e-6 // the times are tenths of a second: compare them as the test does
	for _, s := range steady {
		v := get(s)
		if s.t < first+baselineFor-eps {
			base = append(base, v)
			f.baseTo = s.t
		}
		if s.t > last-finalFor+eps {
			if len(fin) == 0 {
				f.finFrom = s.t
			}
			fin = append(fin, v)
		}
		if s.t >= last-slopeOver-eps {
			if len(xs) == 0 {
				f.from = s.t
			}
			xs = append(xs, s.t/60)
			ys = append(ys, v)
		}
	}
	f.baseline, f.final = median(base), median(fin)
	f.slope, f.intercept = leastSquares(xs, ys)
	return f
}

func median(xs []float64) float64 {
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

// leastSquares returns the slope and intercept of the least-squares line
// through (xs, ys).
func leastSquares(xs, ys []float64) (slope, intercept float64) {
	n := float64(len(xs))
	if n < 2 {
		return math.NaN(), math.NaN()
	}
	var sx, sy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
	}
	mx, my := sx/n, sy/n
	var num, den float64
	for i := range xs {
		num += (xs[i] - mx) * (ys[i] - my)
		den += (xs[i] - mx) * (xs[i] - mx)
	}
	slope = num / den
	return slope, my - slope*mx
}

// readCSV reads the samples; columns are found by their header names.
func readCSV(path string) ([]sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: header: %w", path, err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[h] = i
	}
	for _, need := range []string{"time_s", "goroutines_metrics", "goroutines_status", "fds_metrics", "fds_proc"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("%s: no %q column (header %v)", path, need, header)
		}
	}
	var out []sample
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		num := func(name string) (float64, error) {
			i, ok := col[name]
			if !ok {
				return math.NaN(), nil
			}
			if i >= len(rec) {
				return 0, fmt.Errorf("%s:%d: no %s", path, line, name)
			}
			v, err := strconv.ParseFloat(rec[i], 64)
			if err != nil {
				return 0, fmt.Errorf("%s:%d: %s: %w", path, line, name, err)
			}
			return v, nil
		}
		var s sample
		var errs []error
		var e error
		s.t, e = num("time_s")
		errs = append(errs, e)
		s.gorMetrics, e = num("goroutines_metrics")
		errs = append(errs, e)
		s.gorStat, e = num("goroutines_status")
		errs = append(errs, e)
		s.fdMetrics, e = num("fds_metrics")
		errs = append(errs, e)
		s.fdProc, e = num("fds_proc")
		errs = append(errs, e)
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		s.phase = "steady"
		if i, ok := col["phase"]; ok && i < len(rec) {
			s.phase = rec[i]
		}
		out = append(out, s)
	}
	return out, nil
}
