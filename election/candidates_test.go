package election_test

import (
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdlock"
)

func TestCandidatesInOrder(t *testing.T) {
	c := embedtest.New(t)
	ctx := testCtx(t)
	obs, err := election.New(c.Client(), "line/up")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := obs.KeyPrefix(), election.DefaultPrefix+"line%2Fup/"; got != want {
		t.Fatalf("KeyPrefix = %q, want %q", got, want)
	}
	line, err := obs.Candidates(ctx)
	if err != nil || len(line) != 0 {
		t.Fatalf("Candidates with nobody campaigning = %v, %v", line, err)
	}
	first := candidate(t, c, "line/up")
	if err := first.Campaign(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	second := candidate(t, c, "line/up")
	done := make(chan error, 1)
	go func() { done <- second.Campaign(ctx, "b") }()
	waitKeys(t, c.Client(), obs.KeyPrefix(), 2)

	line, err = obs.Candidates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(line) != 2 || line[0].Value != "a" || line[1].Value != "b" ||
		line[0].Rev != first.Rev() || line[0].EtcdKey != first.EtcdKey() || line[0].LeaseID == 0 || line[1].Rev <= line[0].Rev {
		t.Fatalf("Candidates = %+v; first leads with term %d", line, first.Rev())
	}
	// Key and Token mean what they mean on an etcdlock.Lock: the name and
	// the fencing token.
	if first.Key() != "line/up" || first.Token() != first.Rev() || line[0].Key != line[0].EtcdKey ||
		!strings.HasPrefix(first.EtcdKey(), obs.KeyPrefix()) {
		t.Fatalf("Key %q, Token %d, EtcdKey %q; Rev %d, Candidate %+v", first.Key(), first.Token(), first.EtcdKey(), first.Rev(), line[0])
	}
	if err := first.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	line, err = obs.Candidates(ctx)
	if err != nil || len(line) != 1 || line[0].Rev != second.Rev() {
		t.Fatalf("after the handover Candidates = %+v, %v", line, err)
	}
}

// fence is what a lock and an election share for fencing writes: a name,
// a token, a guard and the end of the hold.
type fence interface {
	Key() string
	Token() int64
	Guard() clientv3.Cmp
	Done() <-chan struct{}
	Err() error
}

var (
	_ fence = (*election.Election)(nil)
	_ fence = etcdlock.Lock(nil)
)
