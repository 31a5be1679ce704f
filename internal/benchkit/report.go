package benchkit

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// The table of a test binary's comparisons: Record adds to it, Main prints
// it when the benchmarks are done.
var table struct {
	mu    sync.Mutex
	order []string
	rows  map[string]*Comparison
	about map[string]string // server name -> what it is
}

// Record reports c's figures as b's metrics and keeps c for the table
// that Main prints. A later run of the same benchmark (Go runs each
// benchmark once with b.N = 1 before the measured run) replaces it.
func Record(b *testing.B, srv *Server, c *Comparison) {
	b.Helper()
	b.ReportMetric(0, "ns/op") // a pair of rounds: meaningless
	r := c.Ratio()
	b.ReportMetric(r.Median, "ratio")
	b.ReportMetric(r.Min, "ratio-min")
	b.ReportMetric(r.Max, "ratio-max")
	a, bb := Sum(c.RoundsA), Sum(c.RoundsB)
	if c.election() {
		b.ReportMetric(Ms(a.Handoff50), "a-p50-ms")
		b.ReportMetric(Ms(a.Handoff99), "a-p99-ms")
		b.ReportMetric(Ms(bb.Handoff50), "b-p50-ms")
		b.ReportMetric(Ms(a.Resign50), "a-resign-p50-ms")
		b.ReportMetric(Ms(bb.Resign50), "b-resign-p50-ms")
		b.ReportMetric(c.OfCeiling().Median, "a-of-ceiling")
	} else {
		b.ReportMetric(a.Rate.Median, "a-per-s")
		b.ReportMetric(bb.Rate.Median, "b-per-s")
		if c.Workload.Exclusive && c.Workload.Workers > 1 {
			b.ReportMetric(Ms(a.Handoff50), "a-handoff-p50-ms")
			b.ReportMetric(Ms(a.Handoff99), "a-handoff-p99-ms")
			b.ReportMetric(a.Jain, "a-jain")
			b.ReportMetric(c.OfCeiling().Median, "a-of-ceiling")
		}
		if a.FsyncsPerTake >= 0 {
			b.ReportMetric(a.FsyncsPerTake, "a-fsyncs/take")
		}
	}
	b.ReportMetric(Ms(Percentile(c.Ceiling.Event, 50)), "event-p50-ms")
	table.mu.Lock()
	defer table.mu.Unlock()
	if table.rows == nil {
		table.rows, table.about = map[string]*Comparison{}, map[string]string{}
	}
	if _, ok := table.rows[b.Name()]; !ok {
		table.order = append(table.order, b.Name())
	}
	table.rows[b.Name()] = c
	table.about[srv.Name] = srv.About
}

// election reports whether c compared elections rather than a workload.
func (c *Comparison) election() bool { return c.Workload.Workers == 0 }

// M is what Main needs of a *testing.M.
type M interface{ Run() int }

// Main wraps a package's *testing.M, for goleak.VerifyTestMain say: it runs
// the tests and benchmarks, then prints the table of what Record kept.
func Main(m M) M { return mainM{m} }

type mainM struct{ m M }

func (m mainM) Run() int {
	code := m.m.Run()
	table.mu.Lock()
	defer table.mu.Unlock()
	var cs []*Comparison
	for _, name := range table.order {
		cs = append(cs, table.rows[name])
	}
	if len(cs) > 0 {
		PrintTable(os.Stdout, table.about, cs)
	}
	return code
}

// PrintTable writes comparisons as two Markdown tables: the figures, one
// row per comparison, and the ceilings measured on each server. about
// says what each server is, by name.
func PrintTable(w io.Writer, about map[string]string, cs []*Comparison) {
	fmt.Fprintln(w, "\nPaired comparisons: A and B alternate in rounds on one server; A/B is taken per pair.")
	var servers []string
	seen := map[string]bool{}
	for _, c := range cs {
		if !seen[c.Server] {
			seen[c.Server] = true
			servers = append(servers, c.Server)
		}
	}
	for _, s := range servers {
		if about[s] != "" {
			fmt.Fprintf(w, "  %s: %s\n", s, about[s])
		}
	}
	header := []string{"workload", "server", "A", "B", "A/B median [min–max] (pairs)", "A: latency", "B: latency", "A: Jain", "A: of ceiling"}
	var rows [][]string
	for _, c := range cs {
		rows = append(rows, c.cells())
	}
	fmt.Fprintln(w)
	writeMarkdown(w, header, rows)

	fmt.Fprintln(w, "\nCeilings, measured between pairs on each server: a committed Put and Delete (call to response), and the Delete's event at a watcher opened from now (call to event).")
	fmt.Fprintln(w)
	rows = rows[:0]
	for _, c := range cs {
		if len(c.Ceiling.Event) == 0 {
			continue
		}
		a := Sum(c.RoundsA)
		fs := "–"
		if a.FsyncsPerTake >= 0 && !c.election() {
			fs = fmt.Sprintf("%.2f", a.FsyncsPerTake)
		}
		ceil := "–"
		switch {
		case c.election():
			ceil = "a handover ≥ the event p50"
		case c.Workload.Exclusive && c.Workload.Workers > 1:
			ceil = fmt.Sprintf("%.0f/s (hold %s); serial put+delete %.0f/s",
				c.Ceiling.Rate(a.Hold), msStr(a.Hold), c.Ceiling.Serial())
		}
		rows = append(rows, []string{c.Title, c.Server,
			pq(c.Ceiling.Put), pq(c.Ceiling.Delete), pq(c.Ceiling.Event), fs, ceil})
	}
	writeMarkdown(w, []string{"workload", "server", "put p50 / p99", "delete p50 / p99", "event p50 / p99", "A: WAL fsyncs per take", "ceiling rate"}, rows)
}

// cells is c's row of the figures table.
func (c *Comparison) cells() []string {
	a, b := Sum(c.RoundsA), Sum(c.RoundsB)
	r := c.Ratio()
	ratio := fmt.Sprintf("**%.2f×** [%.2f–%.2f] (%d)", r.Median, r.Min, r.Max, r.N)
	switch {
	case c.election():
		return []string{c.Title, c.Server,
			fmt.Sprintf("%s: p50 %s", c.A, msStr(a.Handoff50)),
			fmt.Sprintf("%s: p50 %s", c.B, msStr(b.Handoff50)),
			ratio + " (B p50 / A p50)",
			fmt.Sprintf("p99 %s; Resign returns p50 %s", msStr(a.Handoff99), msStr(a.Resign50)),
			fmt.Sprintf("p99 %s; Resign returns p50 %s", msStr(b.Handoff99), msStr(b.Resign50)),
			"–", ofCeiling(c)}
	case c.Workload.Workers == 1:
		return []string{c.Title, c.Server,
			fmt.Sprintf("%s: %.0f cycles/s", c.A, a.Rate.Median),
			fmt.Sprintf("%s: %.0f cycles/s", c.B, b.Rate.Median),
			ratio, "–", "–", "–", "–"}
	}
	lat := func(s Side) string {
		if c.Workload.Exclusive {
			return fmt.Sprintf("handoff %s / %s", msStr(s.Handoff50), msStr(s.Handoff99))
		}
		if c.Workload.WriteEvery > 0 {
			return fmt.Sprintf("wait %s / %s; writes %s / %s", msStr(s.Wait50), msStr(s.Wait99), msStr(s.WriteWait50), msStr(s.WriteWait99))
		}
		return fmt.Sprintf("wait %s / %s", msStr(s.Wait50), msStr(s.Wait99))
	}
	return []string{c.Title, c.Server,
		fmt.Sprintf("%s: %.0f/s", c.A, a.Rate.Median),
		fmt.Sprintf("%s: %.0f/s", c.B, b.Rate.Median),
		ratio, lat(a), lat(b), fmt.Sprintf("%.3f", a.Jain), ofCeiling(c)}
}

// ofCeiling is the "A: of ceiling" cell: median [min–max] in percent.
func ofCeiling(c *Comparison) string {
	f := c.OfCeiling()
	if f.N == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f%% [%.0f–%.0f]", 100*f.Median, 100*f.Min, 100*f.Max)
}

// pq is "p50 / p99 ms" of ds.
func pq(ds []time.Duration) string {
	return fmt.Sprintf("%s / %s", msStr(Percentile(ds, 50)), msStr(Percentile(ds, 99)))
}

// msStr formats d in milliseconds, with two significant decimals below 10.
func msStr(d time.Duration) string {
	m := Ms(d)
	if m < 10 {
		return fmt.Sprintf("%.2f ms", m)
	}
	return fmt.Sprintf("%.0f ms", m)
}

// writeMarkdown writes a Markdown table.
func writeMarkdown(w io.Writer, header []string, rows [][]string) {
	line := func(cells []string) { fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | ")) }
	line(header)
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = "---"
	}
	line(sep)
	for _, r := range rows {
		line(r)
	}
}
