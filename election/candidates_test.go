package election_test

import (
	"testing"

	"github.com/leasekit/leasekit/election"
	"github.com/leasekit/leasekit/embedtest"
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
		line[0].Rev != first.Rev() || line[0].Key != first.Key() || line[0].LeaseID == 0 || line[1].Rev <= line[0].Rev {
		t.Fatalf("Candidates = %+v; first leads with term %d", line, first.Rev())
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
