package benchkit

import (
	"context"
	"testing"
)

// Bench runs the paired comparison of wl between a and ref as one
// sub-benchmark per target (o.Targets, or else Targets()), with b.N pairs, and records each.
func Bench(b *testing.B, title string, a, ref Impl, wl Workload, o Options) {
	b.Helper()
	each(b, o.Targets, func(b *testing.B, srv *Server) (*Comparison, error) {
		o.Pairs = b.N
		return Compare(context.Background(), srv, title, a, ref, wl, o)
	})
}

// BenchHandovers is Bench for elections: Resign -> the next leader.
func BenchHandovers(b *testing.B, title string, a, ref Elector, o Options) {
	b.Helper()
	each(b, o.Targets, func(b *testing.B, srv *Server) (*Comparison, error) {
		o.Pairs = b.N
		return CompareHandovers(context.Background(), srv, title, a, ref, o)
	})
}

func each(b *testing.B, targets []Target, run func(*testing.B, *Server) (*Comparison, error)) {
	if targets == nil {
		targets = Targets()
	}
	for _, t := range targets {
		b.Run(t.Name, func(b *testing.B) {
			srv := t.StartTB(b)
			c, err := run(b, srv)
			if err != nil {
				b.Fatal(err)
			}
			Record(b, srv, c)
		})
	}
}
