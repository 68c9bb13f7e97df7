// Command soakplot draws the samples of berth's soak test (e2e/soak_test.go)
// to a PNG: goroutines and open file descriptors over time, one panel each,
// with the warm baseline, the fitted slope and the phases marked.
//
//	go run . -in ../../docs/soak.csv -out ../../docs/soak.png
//
// The CSV is the one the soak writes (package soakfig reads it). The
// figures in the titles are the soak test's, computed by the same code
// (soakfig.Compute) over the steady samples (all samples when there is no
// phase column): slope = least squares over the last 4 minutes at constant
// load, warm baseline and final = medians of the first and last minute at
// 50 containers running.
//
// It is its own module, so that berth's main module does not depend on
// gonum.org/v1/plot.
package main

import (
	"flag"
	"fmt"
	"image/color"
	"math"
	"os"
	"strconv"

	"github.com/berthlog/berth/e2e/soakfig"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// rules are the soak test's (e2e/soak_test.go).
var rules = soakfig.Rules{BaselineFor: 60, SlopeOver: 240, FinalFor: 60, RefLoad: 50}

func main() {
	in := flag.String("in", "docs/soak.csv", "the soak's samples (CSV)")
	out := flag.String("out", "docs/soak.png", "the PNG to write")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "soakplot:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	samples, err := soakfig.ReadCSV(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	if len(samples) < 2 {
		return fmt.Errorf("%s: %d samples, need at least 2", in, len(samples))
	}
	steady := soakfig.Phase(samples, "steady")
	if len(steady) < 2 {
		return fmt.Errorf("%s: %d steady samples, need at least 2", in, len(steady))
	}
	gm := soakfig.Compute(steady, gorMetrics, rules)
	fp := soakfig.Compute(steady, fdProc, rules)

	top, err := panel(samples, fmt.Sprintf("goroutines: slope %+.2f/min at constant load over the last 4 min (plain %+.2f/min), warm baseline %.0f, final %.0f at 50 running", gm.Slope, gm.RawSlope, gm.Baseline, gm.Final),
		"goroutines", gm,
		series{"go_goroutine_count (/metrics; counted during the scrape)", gorMetrics, color.RGBA{R: 31, G: 119, B: 180, A: 255}, false},
		series{"goroutines (/status)", func(s soakfig.Sample) float64 { return s.GorStatus }, color.RGBA{R: 255, G: 127, B: 14, A: 255}, true})
	if err != nil {
		return err
	}
	bottom, err := panel(samples, fmt.Sprintf("open file descriptors: slope %+.2f/min at constant load over the last 4 min (plain %+.2f/min), warm baseline %.0f, final %.0f at 50 running", fp.Slope, fp.RawSlope, fp.Baseline, fp.Final),
		"file descriptors", fp,
		series{"/proc/<pid>/fd", fdProc, color.RGBA{R: 44, G: 160, B: 44, A: 255}, false},
		series{"process_unix_file_descriptor_count (/metrics)", func(s soakfig.Sample) float64 { return s.FDMetrics }, color.RGBA{R: 214, G: 39, B: 40, A: 255}, true})
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
		fmt.Sprintf("berth soak: %d samples every 5 s, %.1f min; shaded: the steady phase (50 containers)", len(samples), (samples[len(samples)-1].TimeS-samples[0].TimeS)/60))
	body := dc
	body.Max.Y = head.Min.Y
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(4), PadBottom: vg.Points(4), PadLeft: vg.Points(4), PadRight: vg.Points(8), PadY: vg.Points(14)}
	canvases := plot.Align([][]*plot.Plot{{top}, {bottom}}, tiles, body)
	top.Draw(canvases[0][0])
	bottom.Draw(canvases[1][0])

	png, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(png); err != nil {
		png.Close()
		return err
	}
	if err := png.Close(); err != nil {
		return err
	}
	fmt.Printf("%s: goroutines (/metrics) slope %+.2f/min, baseline %.1f, final %.1f; FDs (/proc) slope %+.2f/min, baseline %.1f, final %.1f\n",
		out, gm.Slope, gm.Baseline, gm.Final, fp.Slope, fp.Baseline, fp.Final)
	return nil
}

func gorMetrics(s soakfig.Sample) float64 { return s.GorMetrics }
func fdProc(s soakfig.Sample) float64     { return s.FDProc }

type series struct {
	name   string
	get    func(soakfig.Sample) float64
	color  color.Color
	dashed bool
}

// panel draws series over time, the steady phase shaded, the warm baseline
// and the fitted line over their windows.
func panel(samples []soakfig.Sample, title, ylabel string, fig soakfig.Figures, ss ...series) (*plot.Plot, error) {
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
	p.X.Min, p.X.Max = samples[0].TimeS, samples[len(samples)-1].TimeS

	// the steady phase, shaded
	if st := soakfig.Phase(samples, "steady"); len(st) > 0 {
		shade, err := plotter.NewPolygon(plotter.XYs{
			{X: st[0].TimeS, Y: p.Y.Min}, {X: st[len(st)-1].TimeS, Y: p.Y.Min},
			{X: st[len(st)-1].TimeS, Y: p.Y.Max}, {X: st[0].TimeS, Y: p.Y.Max}})
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
			xys[i] = plotter.XY{X: s.TimeS, Y: se.get(s)}
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

	base, err := plotter.NewLine(plotter.XYs{{X: fig.BaseFrom, Y: fig.Baseline}, {X: fig.BaseTo, Y: fig.Baseline}})
	if err != nil {
		return nil, err
	}
	base.Color = color.Black
	base.Width = vg.Points(3)
	p.Add(base)
	p.Legend.Add(fmt.Sprintf("warm baseline (median of the first minute, at 50 running) %.0f", fig.Baseline), base)

	fin, err := plotter.NewLine(plotter.XYs{{X: fig.FinFrom, Y: fig.Final}, {X: fig.To, Y: fig.Final}})
	if err != nil {
		return nil, err
	}
	fin.Color = color.RGBA{R: 140, G: 86, B: 75, A: 255}
	fin.Width = vg.Points(3)
	p.Add(fin)
	p.Legend.Add(fmt.Sprintf("final (median of the last minute, at 50 running) %.0f", fig.Final), fin)

	fit, err := plotter.NewLine(plotter.XYs{
		{X: fig.From, Y: fig.FitAt(fig.From)},
		{X: fig.To, Y: fig.FitAt(fig.To)}})
	if err != nil {
		return nil, err
	}
	fit.Color = color.RGBA{R: 148, G: 103, B: 189, A: 255}
	fit.Width = vg.Points(2)
	fit.Dashes = []vg.Length{vg.Points(8), vg.Points(4)}
	p.Add(fit)
	p.Legend.Add(fmt.Sprintf("least-squares fit at 50 running, last 4 min: %+.2f/min", fig.Slope), fit)
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
