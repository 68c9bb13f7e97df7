package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// statusCommand prints a running berth's /status as tables an operator reads
// at a glance.
func statusCommand(args, environ []string, stdout, stderr io.Writer) int {
	f := newFlags(stderr)
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	cfg, err := loadConfig(f, environ)
	if err != nil {
		fmt.Fprintf(stderr, "berth: bad configuration: %v\n", err)
		return exitUsage
	}
	if cfg.HTTPAddr == "" {
		fmt.Fprintln(stderr, "berth status: http_addr is empty, so berth serves no status; set http_addr (or --http-addr)")
		return exitUsage
	}
	doc, err := fetchStatus(cfg.HTTPAddr)
	if err != nil {
		fmt.Fprintf(stderr, "berth status: %v\n", err)
		return exitFailure
	}
	printStatus(stdout, doc)
	return exitOK
}

func fetchStatus(addr string) (statusDoc, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return statusDoc{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return statusDoc{}, fmt.Errorf("no berth answers on %s (is it running, with this http_addr?): %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return statusDoc{}, fmt.Errorf("%s/status: %s: %s", addr, resp.Status, strings.TrimSpace(string(b)))
	}
	var doc statusDoc
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return statusDoc{}, fmt.Errorf("%s/status: %w", addr, err)
	}
	return doc, nil
}

func printStatus(w io.Writer, d statusDoc) {
	events := "connected"
	if !d.EventsConnected {
		events = "NOT CONNECTED"
	}
	health := "healthy"
	if !d.Exporter.Healthy {
		health = "FAILING"
	}
	fmt.Fprintf(w, "berth %s, up %s; docker events %s; exporter %s %s\n",
		d.Version, (time.Duration(d.UptimeSeconds) * time.Second).String(), events, d.Exporter.Kind, health)
	if d.Exporter.LastError != "" {
		fmt.Fprintf(w, "last export error: %s\n", d.Exporter.LastError)
	}
	byState := map[string]int{}
	for _, c := range d.Containers {
		byState[string(c.State)]++
	}
	var states []string
	for s, n := range byState {
		states = append(states, fmt.Sprintf("%s %d", s, n))
	}
	sort.Strings(states)
	fmt.Fprintf(w, "containers %d (%s); streams open %d\n", len(d.Containers), strings.Join(states, ", "), d.StreamsOpen)
	fmt.Fprintf(w, "goroutines %d; open fds %d; rss %s\n", d.Goroutines, d.OpenFDs, bytesText(d.RSSBytes))
	if d.Exporter.Kind == "otlp" {
		fmt.Fprintf(w, "exported %d; rejected %d; export failures %d; in flight %s; lag %s\n",
			d.Exporter.Exported, d.Exporter.Rejected, d.Exporter.Failures, bytesText(d.Exporter.InFlightBytes), lagText(d.Exporter.LagSeconds))
	}
	if len(d.Containers) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tSTATE\tLINES\tLAG\tLAST END\tLAST ERROR")
	for _, c := range d.Containers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", c.Name, c.ID, c.State, c.Lines, lagText(c.LagSeconds), dash(c.LastEnd), dash(truncate(c.LastError, 60)))
	}
	_ = tw.Flush()
	for _, c := range d.Containers {
		if g := c.LastGap; g != nil {
			fmt.Fprintf(w, "log gap: %s %s lines from %s to %s (%s) rotated away before berth read them; %d gap(s) so far\n",
				c.Name, g.Stream, g.From.Format(time.RFC3339Nano), g.To.Format(time.RFC3339Nano),
				(time.Duration(g.Seconds * float64(time.Second))).Round(time.Millisecond), g.Count)
		}
	}
}

func lagText(s *float64) string {
	if s == nil {
		return "-"
	}
	return (time.Duration(*s * float64(time.Second))).Round(100 * time.Millisecond).String()
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
