package chaos

import (
	"context"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

func TestCheckWrites(t *testing.T) {
	committed := func(key string, client int, token, value, rev int64) Attempt {
		return Attempt{Key: key, Client: client, Token: token, Value: value, Outcome: Committed, Rev: rev}
	}
	write := func(key string, client int, token, value, rev int64) Write {
		return Write{Key: key, Client: client, Token: token, Value: value, Rev: rev}
	}
	attempts := func(as ...Attempt) map[string]Attempt {
		m := map[string]Attempt{}
		for _, a := range as {
			m[a.Key] = a
		}
		return m
	}
	for _, tc := range []struct {
		name     string
		stored   []Write
		attempts map[string]Attempt
		final    int64
		want     string // "" for no violation
	}{
		{
			name:     "good",
			stored:   []Write{write("b", 1, 20, 2, 21), write("a", 0, 10, 1, 11)},
			attempts: attempts(committed("a", 0, 10, 1, 11), committed("b", 1, 20, 2, 21)),
			final:    2,
		},
		{
			name:     "unknown outcome, applied",
			stored:   []Write{write("a", 0, 10, 1, 11)},
			attempts: attempts(Attempt{Key: "a", Token: 10, Value: 1, Outcome: Unknown}),
			final:    1,
		},
		{
			name:     "unknown outcome, not applied; rejected",
			stored:   nil,
			attempts: attempts(Attempt{Key: "a", Token: 10, Value: 1, Outcome: Unknown}, Attempt{Key: "b", Outcome: Rejected}),
			final:    0,
		},
		{
			name:     "lost update",
			stored:   []Write{write("a", 0, 10, 1, 11), write("b", 1, 20, 1, 21)},
			attempts: attempts(committed("a", 0, 10, 1, 11), committed("b", 1, 20, 1, 21)),
			final:    1,
			want:     "lost or doubled update",
		},
		{
			name:     "token goes back",
			stored:   []Write{write("a", 0, 20, 1, 11), write("b", 1, 10, 2, 21)},
			attempts: attempts(committed("a", 0, 20, 1, 11), committed("b", 1, 10, 2, 21)),
			final:    2,
			want:     "token went back",
		},
		{
			name:     "acknowledged write missing",
			stored:   []Write{write("a", 0, 10, 1, 11)},
			attempts: attempts(committed("a", 0, 10, 1, 11), committed("b", 1, 20, 2, 21)),
			final:    1,
			want:     "not stored",
		},
		{
			name:     "phantom write",
			stored:   []Write{write("a", 0, 10, 1, 11)},
			attempts: attempts(),
			final:    1,
			want:     "never attempted",
		},
		{
			name:     "rejected write stored",
			stored:   []Write{write("a", 0, 10, 1, 11)},
			attempts: attempts(Attempt{Key: "a", Token: 10, Value: 1, Outcome: Rejected}),
			final:    1,
			want:     "seen rejected but is stored",
		},
		{
			name:     "counter disagrees",
			stored:   []Write{write("a", 0, 10, 1, 11)},
			attempts: attempts(committed("a", 0, 10, 1, 11)),
			final:    2,
			want:     "counter is 2",
		},
		{
			name:     "conflict",
			stored:   nil,
			attempts: attempts(Attempt{Key: "a", Token: 10, Outcome: Conflict, ReadRev: 5, ActualRev: 7}),
			want:     "two holders overlapped",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckWrites(tc.stored, tc.attempts, tc.final)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("want no violation, got %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("want a violation saying %q, got %v", tc.want, err)
			}
		})
	}
}

// released is a hold that a successful Release ended within [rc, rr].
func released(client int, token, ac, ar, rc, rr int64) Hold {
	return Hold{Client: client, Token: token, AcqCall: ac, AcqRet: ar, Alive: ac, LeaseFloor: Never,
		ReleaseCall: rc, ReleaseRet: rr, Released: true}
}

// lost is a hold that ended no earlier than floor, at an unknown time.
func lost(client int, token, ac, ar, floor int64) Hold {
	return Hold{Client: client, Token: token, AcqCall: ac, AcqRet: ar, Alive: ac, LeaseFloor: floor,
		ReleaseCall: Never}
}

func TestCheckHolds(t *testing.T) {
	withAlive := func(h Hold, alive int64) Hold { h.Alive = alive; return h }
	failedRelease := lost(0, 1, 0, 10, 1000)
	failedRelease.ReleaseCall, failedRelease.ReleaseRet = 20, 22
	for _, tc := range []struct {
		name            string
		holds           []Hold
		revokes         []Revoke
		mutexOK, fifoOK bool
	}{
		{
			name:    "one after the other",
			holds:   []Hold{released(0, 1, 0, 10, 20, 30), released(1, 2, 25, 40, 50, 60)},
			mutexOK: true, fifoOK: true,
		},
		{
			name:  "overlap",
			holds: []Hold{released(0, 1, 0, 10, 50, 60), released(1, 2, 20, 30, 70, 80)},
		},
		{
			name:  "acquired before a lost lease could have expired",
			holds: []Hold{lost(0, 1, 0, 10, 100), released(1, 2, 20, 30, 40, 50)},
		},
		{
			name:    "acquired after a lost lease could have expired",
			holds:   []Hold{lost(0, 1, 0, 10, 25), released(1, 2, 20, 30, 40, 50)},
			mutexOK: true, fifoOK: true,
		},
		{
			name:    "an outside revoke explains the early end",
			holds:   []Hold{lost(0, 1, 0, 10, 100), released(1, 2, 20, 30, 40, 50)},
			revokes: []Revoke{{Client: 0, Call: 15, Ret: 18}},
			mutexOK: true, fifoOK: true,
		},
		{
			name:    "a revoke of another client explains nothing",
			holds:   []Hold{lost(0, 1, 0, 10, 100), released(1, 2, 20, 30, 40, 50)},
			revokes: []Revoke{{Client: 1, Call: 15, Ret: 18}},
		},
		{
			name:    "a revoke before the hold explains nothing",
			holds:   []Hold{lost(0, 1, 10, 12, 100), released(1, 2, 20, 30, 40, 50)},
			revokes: []Revoke{{Client: 0, Call: 1, Ret: 5}},
		},
		{
			name:    "a guarded write after the next acquired",
			holds:   []Hold{withAlive(lost(0, 1, 0, 10, 5), 40), released(1, 2, 20, 30, 50, 60)},
			revokes: []Revoke{{Client: 0, Call: 15, Ret: 18}},
		},
		{
			name:    "a failed release may have deleted the key",
			holds:   []Hold{failedRelease, released(1, 2, 25, 30, 40, 50)},
			mutexOK: true, fifoOK: true,
		},
		{
			name:    "not in token order",
			holds:   []Hold{released(0, 2, 0, 10, 20, 30), released(1, 1, 40, 50, 60, 70)},
			mutexOK: true,
		},
		{
			name:  "token handed out twice",
			holds: []Hold{released(0, 1, 0, 10, 20, 30), released(1, 1, 40, 50, 60, 70)},
			// The mutex model cannot tell the two apart; CheckTokenOrder can.
			mutexOK: true,
		},
		{
			name:    "concurrent calls may be ordered either way",
			holds:   []Hold{released(0, 1, 0, 30, 31, 40), released(1, 2, 0, 50, 45, 60)},
			mutexOK: true, fifoOK: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := CheckMutex(tc.holds, tc.revokes, 10*time.Second)
			if res == porcupine.Unknown {
				t.Fatal("porcupine timed out")
			}
			if (err == nil) != tc.mutexOK {
				t.Errorf("CheckMutex: want ok=%v, got %v", tc.mutexOK, err)
			}
			if err := CheckTokenOrder(tc.holds, tc.revokes); (err == nil) != tc.fifoOK {
				t.Errorf("CheckTokenOrder: want ok=%v, got %v", tc.fifoOK, err)
			}
		})
	}
}

// randomHistory returns n holds that did follow each other in token order:
// each began and ended at a point inside the intervals recorded for it.
func randomHistory(rng *rand.Rand, n int) []Hold {
	var hs []Hold
	now := int64(0)
	for i := range n {
		jitter := func() int64 { return rng.Int63n(50) }
		a := now + 1 + jitter()
		h := Hold{Client: rng.Intn(4), Token: int64(10 * (i + 1)), AcqCall: a - jitter(), AcqRet: a + jitter()}
		// Release is called after Lock returns, so an end it causes is later.
		e := h.AcqRet + 1 + rng.Int63n(100)
		h.Alive = h.AcqCall
		if rng.Intn(3) == 0 {
			// Lost: its lease could not end before e; it ended at e.
			h.LeaseFloor, h.ReleaseCall = e-rng.Int63n(max(1, e-a)), Never
		} else {
			h.LeaseFloor, h.ReleaseCall, h.ReleaseRet, h.Released = Never, max(h.AcqRet, e-jitter()), e+jitter(), true
		}
		if rng.Intn(2) == 0 {
			h.Alive = max(h.AcqCall, e-rng.Int63n(max(1, e-a)))
		}
		hs = append(hs, h)
		now = e
	}
	rng.Shuffle(len(hs), func(i, j int) { hs[i], hs[j] = hs[j], hs[i] })
	return hs
}

// TestCheckersOnRandomHistories checks both checkers on histories that are
// correct by construction, and on the same histories with one hold made
// to outlive the next one's acquisition.
func TestCheckDuties(t *testing.T) {
	hold := func(client int, token, acqRet int64) Hold {
		return Hold{Client: client, Token: token, AcqCall: acqRet - 5, AcqRet: acqRet, Alive: acqRet - 5,
			LeaseFloor: acqRet - 5, ReleaseCall: Never}
	}
	holds := []Hold{hold(0, 10, 10), hold(1, 20, 50), hold(2, 30, 40)}
	for _, tc := range []struct {
		name    string
		duties  []Duty
		revokes []Revoke
		want    string // "" for no violation
	}{
		{name: "each ends before the next term", duties: []Duty{{Client: 0, Token: 10, Start: 10, End: 39}}},
		{name: "the last term has nothing after it", duties: []Duty{{Client: 2, Token: 30, Start: 40, End: 1000}}},
		{
			// Term 30 began by 40, before term 20 was known to (50).
			name:   "runs into a later term than the next",
			duties: []Duty{{Client: 0, Token: 10, Start: 10, End: 45}},
			want:   "client 0's duties of term 10 ran until 45ns, but term 30 (client 2) had begun by 40ns",
		},
		{
			name:    "an outside revoke explains it",
			duties:  []Duty{{Client: 0, Token: 10, Start: 10, End: 45}},
			revokes: []Revoke{{Client: 0, Call: 30, Ret: 31}},
		},
		{
			name:    "a revoke of another client explains nothing",
			duties:  []Duty{{Client: 0, Token: 10, Start: 10, End: 45}},
			revokes: []Revoke{{Client: 1, Call: 30, Ret: 31}},
			want:    "ran until",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckDuties(tc.duties, holds, tc.revokes)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected violation: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want a violation containing %q", err, tc.want)
			}
		})
	}
}

func TestCheckersOnRandomHistories(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for range 300 {
		hs := randomHistory(rng, 2+rng.Intn(40))
		if _, err := CheckMutex(hs, nil, 10*time.Second); err != nil {
			t.Fatalf("CheckMutex rejects a correct history: %v", err)
		}
		if err := CheckTokenOrder(hs, nil); err != nil {
			t.Fatalf("CheckTokenOrder rejects a correct history: %v", err)
		}

		// Make one hold certainly alive after the next hold's Lock returned.
		byToken := append([]Hold(nil), hs...)
		sortHolds(byToken)
		i := rng.Intn(len(byToken) - 1)
		byToken[i].Alive = byToken[i+1].AcqRet + 1
		if byToken[i].Released {
			byToken[i].ReleaseRet = max(byToken[i].ReleaseRet, byToken[i].Alive)
		}
		if _, err := CheckMutex(byToken, nil, 10*time.Second); err == nil {
			t.Fatalf("CheckMutex accepts hold %d outliving the acquisition of the next", byToken[i].Token)
		}
		if err := CheckTokenOrder(byToken, nil); err == nil {
			t.Fatalf("CheckTokenOrder accepts hold %d outliving the acquisition of the next", byToken[i].Token)
		}
	}
}

// TestCheckMutexScales checks that porcupine decides a history as long as
// a long run's quickly.
func TestCheckMutexScales(t *testing.T) {
	hs := randomHistory(rand.New(rand.NewSource(2)), 5_000)
	start := time.Now()
	res, err := CheckMutex(hs, nil, time.Minute)
	if err != nil || res != porcupine.Ok {
		t.Fatalf("CheckMutex: %v %v", res, err)
	}
	t.Logf("5000 holds checked in %v", time.Since(start).Round(time.Millisecond))
}

func sortHolds(hs []Hold) {
	for i := 1; i < len(hs); i++ {
		for j := i; j > 0 && hs[j].Token < hs[j-1].Token; j-- {
			hs[j], hs[j-1] = hs[j-1], hs[j]
		}
	}
}

func TestWatchdog(t *testing.T) {
	stuck := make(chan string, 1)
	w := &Watchdog{Grace: 50 * time.Millisecond, Stuck: func(call, stacks string) { stuck <- call + "\n" + stacks }}

	// A call that returns when its context ends is late, not stuck.
	err := w.Do(context.Background(), "prompt", 10*time.Millisecond, func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	if err != context.DeadlineExceeded {
		t.Fatalf("prompt call: %v", err)
	}

	// A call that ignores its context is reported, with its stack.
	release := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Do(context.Background(), "ignores-ctx", 10*time.Millisecond, func(context.Context) error {
			blockedOn(release)
			return nil
		})
	}()
	select {
	case report := <-stuck:
		if !strings.HasPrefix(report, "ignores-ctx\n") || !strings.Contains(report, "chaos.blockedOn") {
			t.Errorf("the report names the call and shows its stack; got:\n%.2000s", report)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a call blocked past its context was not reported")
	}
	close(release)
	<-done

	st := w.Stats()
	// Whether a prompt return counts as late depends on which goroutine
	// runs first; either way it overran by little.
	if s := st["prompt"]; s.Calls != 1 || s.Stuck != 0 || s.MaxOverrun > time.Second {
		t.Errorf("prompt: %+v", s)
	}
	if s := st["ignores-ctx"]; s.Calls != 1 || s.Late != 1 || s.Stuck != 1 || s.MaxOverrun < 50*time.Millisecond {
		t.Errorf("ignores-ctx: %+v", s)
	}
	if !strings.Contains(w.Summary(), "ignores-ctx") {
		t.Errorf("summary: %s", w.Summary())
	}
}

//go:noinline
func blockedOn(ch chan struct{}) { <-ch }

func TestProgress(t *testing.T) {
	p := NewProgress(2)
	p.Record(0, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	behind, err := p.Wait(ctx, 5)
	if err == nil || len(behind) != 1 || behind[0] != 1 {
		t.Fatalf("want client 1 behind, got %v %v", behind, err)
	}
	go p.Record(1, 7)
	if behind, err := p.Wait(context.Background(), 5); err != nil {
		t.Fatalf("%v %v", behind, err)
	}
	p.Record(1, 3) // older: ignored
	if behind, _ := p.Wait(ctx, 6); len(behind) != 0 {
		t.Fatalf("%v", behind)
	}
}
