package election_test

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
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
		ctx := testkit.Context(t)
		e, err := election.New(c.Client(), name, election.WithTTL(5*time.Second))
		if name == "" || len(name) > election.MaxNameLen || !utf8.ValidString(name) {
			require.ErrorIs(t, err, election.ErrInvalidName, "New(%q)", name)
			return
		}
		require.NoError(t, err, "New(%q)", name)
		require.NoError(t, e.Campaign(ctx, value), "Campaign(%q, %q)", name, value)
		l, err := e.Leader(ctx)
		require.NoError(t, err)
		require.Equal(t, election.Leader{Value: value, Rev: e.Rev()}, l, "Leader of %q", name)
		rest, ok := strings.CutPrefix(e.EtcdKey(), election.DefaultPrefix)
		require.True(t, ok && strings.Count(rest, "/") == 1 && !strings.HasPrefix(rest, "/"),
			"the key of %q is %q: not one segment and one member under the prefix", name, e.EtcdKey())
		require.NoError(t, e.Resign(ctx), "Resign")
		_, err = e.Leader(ctx)
		require.ErrorIs(t, err, election.ErrNoLeader, "Leader after Resign")
	})
}
