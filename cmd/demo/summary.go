package main

import (
	"fmt"
	"io"
	"sync"

	"github.com/leasekit/leasekit/internal/benchkit"
)

// summary collects the figures each scenario measured, for the table the
// tour ends with.
type summary struct {
	mu   sync.Mutex
	rows [][]string
}

// add records one measured figure under the scenario that measured it.
func (s *summary) add(scenario, what, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows = append(s.rows, []string{scenario, what, value})
}

func (s *summary) print(w io.Writer, setup string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	head := "== Summary "
	fmt.Fprintf(w, "\n%s%s\n", head, "=============================================================")
	fmt.Fprintf(w, "   Measured in this run on %s.\n", setup)
	fmt.Fprintf(w, "   Timings on a shared machine are noisy: compare figures measured in\n")
	fmt.Fprintf(w, "   the same run (docs/benchmarks.md has the benchmark figures).\n\n")
	writeTable(w, "   ", []string{"part", "figure", "measured"}, s.rows)
}

// percentile returns the p-th percentile (0 < p <= 100) of ds by the
// nearest-rank method, or 0 for no samples.
var percentile = benchkit.Percentile
