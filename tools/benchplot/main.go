// Command benchplot draws the figures of berth's benchmark (bench/, make
// bench) to a PNG: CPU-seconds per million lines by reader and mode (the
// reader's own and the Docker daemon's), and berth's RSS against the number
// of containers it follows.
//
//	go run . -rows ../../docs/bench.csv -scale ../../docs/bench-scale.csv -out ../../docs/bench.png
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
	"os"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

func main() {
	rows := flag.String("rows", "docs/bench.csv", "the benchmark's rows (CSV)")
	scale := flag.String("scale", "docs/bench-scale.csv", "the scale phase's samples (CSV)")
	out := flag.String("out", "docs/bench.png", "the PNG to write")
	flag.Parse()
	if err := run(*rows, *scale, *out); err != nil {
		fmt.Fprintln(os.Stderr, "benchplot:", err)
		os.Exit(1)
	}
}

// table reads a CSV with a header into maps by column name.
func table(path string) ([]map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(recs) < 2 {
		return nil, fmt.Errorf("%s: no data rows", path)
	}
	var out []map[string]string
	for _, r := range recs[1:] {
		m := map[string]string{}
		for i, k := range recs[0] {
			if i < len(r) {
				m[k] = r[i]
			}
		}
		out = append(out, m)
	}
	return out, nil
}

func num(m map[string]string, k string) (float64, error) {
	v, err := strconv.ParseFloat(m[k], 64)
	if err != nil {
		return 0, fmt.Errorf("column %s: %q is not a number", k, m[k])
	}
	return v, nil
}

func run(rowsPath, scalePath, out string) error {
	rows, err := table(rowsPath)
	if err != nil {
		return err
	}
	samples, err := table(scalePath)
	if err != nil {
		return err
	}
	cpu, err := cpuPanel(rows)
	if err != nil {
		return fmt.Errorf("%s: %w", rowsPath, err)
	}
	rss, err := rssPanel(samples)
	if err != nil {
		return fmt.Errorf("%s: %w", scalePath, err)
	}
	const w, h = 12 * vg.Inch, 10 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(10), PadY: vg.Points(18)}
	canvases := plot.Align([][]*plot.Plot{{cpu}, {rss}}, tiles, dc)
	cpu.Draw(canvases[0][0])
	rss.Draw(canvases[1][0])
	png, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(png); err != nil {
		png.Close()
		return err
	}
	return png.Close()
}

// cpuPanel: per row, two bars side by side: the reader's CPU-s per 1M lines
// and the daemon's.
func cpuPanel(rows []map[string]string) (*plot.Plot, error) {
	var reader, daemon plotter.Values
	var names []string
	for _, r := range rows {
		c, err1 := num(r, "cpu_s_per_1m")
		d, err2 := num(r, "dockerd_cpu_s_per_1m")
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		reader, daemon = append(reader, c), append(daemon, d)
		names = append(names, r["row"])
	}
	p := plot.New()
	p.Title.Text = "CPU-seconds per 1M lines (87-byte lines): the reader's (floor = the Docker Go client to io.Discard) and the Docker daemon's"
	p.Title.TextStyle.Font.Size = vg.Points(12)
	p.Y.Label.Text = "CPU-s per 1M lines"
	p.Add(plotter.NewGrid())
	wbar := vg.Points(14)
	rb, err := plotter.NewBarChart(reader, wbar)
	if err != nil {
		return nil, err
	}
	rb.Color = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	rb.Offset = -wbar / 2
	db, err := plotter.NewBarChart(daemon, wbar)
	if err != nil {
		return nil, err
	}
	db.Color = color.RGBA{R: 255, G: 127, B: 14, A: 255}
	db.Offset = wbar / 2
	p.Add(rb, db)
	hi := 1.0
	for i := range reader {
		hi = max(hi, reader[i], daemon[i])
	}
	p.Y.Min, p.Y.Max = 0, hi*1.25 // room for the legend
	p.Legend.Add("reader (floor or berth)", rb)
	p.Legend.Add("dockerd", db)
	p.Legend.Top = true
	p.NominalX(names...)
	p.X.Tick.Label.Rotation = 0.5
	p.X.Tick.Label.XAlign = draw.XRight
	p.X.Tick.Label.YAlign = draw.YCenter
	return p, nil
}

// rssPanel: berth's RSS (and goroutines / 10) against the containers it
// follows.
func rssPanel(samples []map[string]string) (*plot.Plot, error) {
	var rss, gor plotter.XYs
	for _, s := range samples {
		n, err1 := num(s, "containers")
		r, err2 := num(s, "rss_mib")
		g, err3 := num(s, "goroutines")
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, err
		}
		rss = append(rss, plotter.XY{X: n, Y: r})
		gor = append(gor, plotter.XY{X: n, Y: g / 10})
	}
	p := plot.New()
	p.Title.Text = "berth (OTLP gRPC) against the number of quiet containers it follows"
	p.Title.TextStyle.Font.Size = vg.Points(12)
	p.X.Label.Text = "containers followed"
	p.Y.Label.Text = "RSS (MiB); goroutines / 10"
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	l1, pts1, err := plotter.NewLinePoints(rss)
	if err != nil {
		return nil, err
	}
	l1.Color, pts1.Color = color.RGBA{R: 31, G: 119, B: 180, A: 255}, color.RGBA{R: 31, G: 119, B: 180, A: 255}
	l2, pts2, err := plotter.NewLinePoints(gor)
	if err != nil {
		return nil, err
	}
	l2.Color, pts2.Color = color.RGBA{R: 44, G: 160, B: 44, A: 255}, color.RGBA{R: 44, G: 160, B: 44, A: 255}
	l2.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(l1, pts1, l2, pts2)
	p.Legend.Add("RSS (MiB)", l1, pts1)
	p.Legend.Add("goroutines / 10 (/status)", l2, pts2)
	p.Legend.Top = true
	p.Legend.Left = true
	return p, nil
}
