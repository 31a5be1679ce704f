package election_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/embedtest"
)

// FuzzElectionNameValue campaigns in an election of any name with any
// value: an invalid name is refused by New with ErrInvalidName; otherwise
// the candidate leads, Leader reports its value byte for byte and its
// term, its key is in a range of its own under the prefix, and Resign
// leaves no leader.
func FuzzElectionNameValue(f *testing.F) {
	for _, s := range [][2]string{
		{"a", "v"}, {"a/b", ""}, {"/", "\x00"}, {"%2F", "\xff\xfe"}, {"ü", "日本"}, {"", "v"}, {"\xff", "v"},
		{strings.Repeat("/", election.MaxNameLen), strings.Repeat("v", 4096)}, {strings.Repeat("n", election.MaxNameLen+1), "v"},
	} {
		f.Add(s[0], s[1])
	}
	c := embedtest.New(f)
	f.Fuzz(func(t *testing.T, name, value string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		e, err := election.New(c.Client(), name, election.WithTTL(5*time.Second))
		if name == "" || len(name) > election.MaxNameLen || !utf8.ValidString(name) {
			if !errors.Is(err, election.ErrInvalidName) {
				t.Fatalf("New(%q): want ErrInvalidName, got %v", name, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("New(%q): %v", name, err)
		}
		if err := e.Campaign(ctx, value); err != nil {
			t.Fatalf("Campaign(%q, %q): %v", name, value, err)
		}
		l, err := e.Leader(ctx)
		if err != nil || l.Value != value || l.Rev != e.Rev() {
			t.Fatalf("Leader of %q = %+v, %v; want value %q, term %d", name, l, err, value, e.Rev())
		}
		rest, ok := strings.CutPrefix(e.EtcdKey(), election.DefaultPrefix)
		if !ok || strings.Count(rest, "/") != 1 || strings.HasPrefix(rest, "/") {
			t.Fatalf("the key of %q is %q: not one segment and one member under the prefix", name, e.EtcdKey())
		}
		if err := e.Resign(ctx); err != nil {
			t.Fatalf("Resign: %v", err)
		}
		if _, err := e.Leader(ctx); !errors.Is(err, election.ErrNoLeader) {
			t.Fatalf("Leader after Resign: %v", err)
		}
	})
}
