package bench

import (
	"encoding/json"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// report is one run of the harness.
type report struct {
	profile profile
	started time.Time
	rows    []row
	extra   []string
	skipped []string
}

func fmtRate(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 1:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

func (r *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "stepgate benchmark (%s profile), %s\n\n", r.profile.name, r.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Machine: %s. Load generator on the same machine, loopback. Medians of %d interleaved runs of %s each.\n\n",
		machine(), r.profile.reps, r.profile.duration)
	b.WriteString("| measurement | conns | stepgate | reference | ratio | target | stepgate p50 / p99 | reference p50 / p99 |\n")
	b.WriteString("|---|---:|---:|---:|---:|---|---:|---:|\n")
	for _, x := range r.rows {
		target := ""
		if x.Target > 0 {
			target = fmt.Sprintf(">= %.1fx: %s", x.Target, met(x.Ratio >= x.Target))
		}
		ref := fmtRate(x.Reference.Rate) + " " + x.Unit + " (" + x.RefName + ")"
		if x.showSuccess {
			ref += fmt.Sprintf(", %.2f%% succeeded", 100*x.Reference.Success)
		}
		if x.Reference.Error != "" {
			ref += ", error: " + x.Reference.Error
		}
		sg := fmtRate(x.Stepgate.Rate) + " " + x.Unit
		if x.Stepgate.Error != "" {
			sg += ", error: " + x.Stepgate.Error
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %.2f | %s | %.0f / %.0f µs | %.0f / %.0f µs |\n",
			x.Measurement, x.Conns, sg, ref, x.Ratio, target, x.Stepgate.P50us, x.Stepgate.P99us, x.Reference.P50us, x.Reference.P99us)
	}
	notes := map[string]bool{}
	for _, x := range r.rows {
		if x.Note != "" && !notes[x.Note] {
			notes[x.Note] = true
			fmt.Fprintf(&b, "\n- %s: %s", x.Measurement, x.Note)
		}
	}
	b.WriteString("\n\n")
	for _, e := range r.extra {
		fmt.Fprintf(&b, "- %s\n", e)
	}
	for _, s := range r.skipped {
		fmt.Fprintf(&b, "- Not measured: %s\n", s)
	}
	return b.String()
}

func (r *report) write(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(r.markdown()), 0o644); err != nil {
		return err
	}
	js, _ := json.MarshalIndent(struct {
		Profile string   `json:"profile"`
		Started string   `json:"started"`
		Machine string   `json:"machine"`
		Rows    []row    `json:"rows"`
		Extra   []string `json:"extra"`
		Skipped []string `json:"skipped"`
	}{r.profile.name, r.started.UTC().Format(time.RFC3339), machine(), r.rows, r.extra, r.skipped}, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "results.json"), js, 0o644); err != nil {
		return err
	}
	if err := r.throughputPlot(filepath.Join(dir, "throughput.png")); err != nil {
		return err
	}
	return r.latencyPlot(filepath.Join(dir, "latency.png"))
}

// groups are the measurements in the order they ran.
func (r *report) groups() []string {
	var out []string
	seen := map[string]bool{}
	for _, x := range r.rows {
		if !seen[x.Measurement] {
			seen[x.Measurement] = true
			out = append(out, x.Measurement)
		}
	}
	return out
}

// throughputPlot draws, per measurement, stepgate/reference throughput
// against connections (log scale).
func (r *report) throughputPlot(path string) error {
	groups := r.groups()
	if len(groups) == 0 {
		return nil // a run of -bench-only rows without a table
	}
	rowsN := (len(groups) + 1) / 2
	plots := make([][]*plot.Plot, rowsN)
	for i := range plots {
		plots[i] = make([]*plot.Plot, 2)
	}
	for gi, g := range groups {
		p := plot.New()
		p.Title.Text = shorten(g)
		p.X.Label.Text = "connections"
		p.Y.Label.Text = ""
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		// stepgate once per connection count; one line per reference
		// (a measurement may compare with two).
		var sg plotter.XYs
		refs := map[string]plotter.XYs{}
		var refNames []string
		seen := map[int]bool{}
		unit := ""
		for _, x := range r.rows {
			if x.Measurement != g {
				continue
			}
			if !seen[x.Conns] {
				seen[x.Conns] = true
				sg = append(sg, plotter.XY{X: float64(x.Conns), Y: x.Stepgate.Rate})
			}
			if _, ok := refs[x.RefName]; !ok {
				refNames = append(refNames, x.RefName)
			}
			refs[x.RefName] = append(refs[x.RefName], plotter.XY{X: float64(x.Conns), Y: x.Reference.Rate})
			unit = x.Unit
		}
		p.Y.Label.Text = unit
		lines := []any{"stepgate", sg}
		for _, n := range refNames {
			lines = append(lines, n, refs[n])
		}
		if err := plotutil.AddLinePoints(p, lines...); err != nil {
			return err
		}
		p.Legend.Top = true
		plots[gi/2][gi%2] = p
	}
	for i := range plots {
		for j := range plots[i] {
			if plots[i][j] == nil {
				plots[i][j] = plot.New()
			}
		}
	}
	img := vgimgCanvas(vg.Length(2)*6*vg.Inch, vg.Length(rowsN)*3.2*vg.Inch)
	return drawGrid(img, plots, path)
}

// latencyPlot draws p50 and p99 of every row at the middle connection
// count.
func (r *report) latencyPlot(path string) error {
	mid := r.profile.conns[len(r.profile.conns)/2]
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Latency at %d connections", mid)
	p.Y.Label.Text = "µs"
	var names []string
	var s50, s99, r50, r99 plotter.Values
	for _, x := range r.rows {
		if x.Conns != mid {
			continue
		}
		names = append(names, shorten(x.Measurement))
		s50 = append(s50, max(1, x.Stepgate.P50us))
		s99 = append(s99, max(1, x.Stepgate.P99us))
		r50 = append(r50, max(1, x.Reference.P50us))
		r99 = append(r99, max(1, x.Reference.P99us))
	}
	if len(names) == 0 {
		return nil
	}
	w := vg.Points(7)
	for i, v := range []struct {
		vals  plotter.Values
		label string
		c     color.Color
	}{
		{s50, "stepgate p50", plotutil.Color(0)}, {s99, "stepgate p99", plotutil.DarkColors[0]},
		{r50, "reference p50", plotutil.Color(1)}, {r99, "reference p99", plotutil.DarkColors[1]},
	} {
		bars, err := plotter.NewBarChart(v.vals, w)
		if err != nil {
			return err
		}
		bars.Color = v.c
		bars.LineStyle.Width = 0
		bars.Offset = w * vg.Length(i-2)
		p.Add(bars)
		p.Legend.Add(v.label, bars)
	}
	p.Legend.Top = true
	p.NominalX(names...)
	p.X.Tick.Label.Rotation = 0.5
	p.X.Tick.Label.XAlign = -1.0
	return p.Save(vg.Length(len(names))*1.6*vg.Inch+2*vg.Inch, 6*vg.Inch, path)
}

func shorten(s string) string {
	if len(s) > 48 {
		return s[:45] + "..."
	}
	return s
}
