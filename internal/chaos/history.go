package chaos

import (
	"math"
	"sort"
	"sync"
	"time"
)

// Never is an upper bound that is not known: the time of an end that may
// not have happened yet.
const Never = int64(math.MaxInt64)

// Clock measures times of a run in nanoseconds since its start, on the
// monotonic clock, so that histories are comparable across goroutines.
type Clock struct{ start time.Time }

// NewClock returns a clock that starts now.
func NewClock() *Clock { return &Clock{start: time.Now()} }

// Now returns the time since the clock started.
func (c *Clock) Now() int64 { return int64(time.Since(c.start)) }

// At converts t to the clock's time.
func (c *Clock) At(t time.Time) int64 { return int64(t.Sub(c.start)) }

// Hold is one acquisition that was returned to its caller (a Lock that
// returned a lock, a Campaign that won), and what its holder learned about
// when it ended. Times are Clock times.
type Hold struct {
	Client int   // the worker or candidate that held it
	Token  int64 // the fencing token (lock) or term (election)

	// The hold began at some point within [AcqCall, AcqRet]: when the
	// acquiring call was made and when it returned.
	AcqCall, AcqRet int64

	// Alive is the latest time the hold is known to have existed in etcd:
	// the call time of the last guarded write that committed under it.
	Alive int64
	// LeaseFloor is the earliest time the hold's lease can have ended
	// unless someone else revoked it: the lease's client-side deadline,
	// at which the library itself revokes a lease it could not keep
	// alive. Use AcqCall when it is not known.
	LeaseFloor int64
	// ReleaseCall is when Release (or Resign) was called, Never if not.
	ReleaseCall int64
	// ReleaseRet is when it returned.
	ReleaseRet int64
	// Released reports that Release returned nil, which means the hold's
	// key was gone by ReleaseRet.
	Released bool
}

// Duty is one term's duties under election.Run, as the leader ran them:
// from the call of OnStartedLeading to its return. Times are Clock times.
type Duty struct {
	Client     int
	Token      int64 // the term
	Start, End int64
}

// Revoke is a revocation, from outside, of a lease of a client: a fault
// the nemesis injects. It can end a hold of that client at any time in
// [Call, Ret].
type Revoke struct {
	Client    int
	Lease     int64
	Call, Ret int64
}

// End returns the interval in which h ended: from the earliest time any
// of its possible causes (its Release, its lease, an outside revoke of its
// client's lease) can have ended it, but not before it is known to have
// existed, to ReleaseRet for a successful Release and Never otherwise.
func (h Hold) End(revokes []Revoke) (from, by int64) {
	floor := min(h.ReleaseCall, h.LeaseFloor)
	for _, r := range revokes {
		if r.Client == h.Client && r.Ret >= h.AcqCall {
			floor = min(floor, max(r.Call, h.AcqCall))
		}
	}
	from = max(h.Alive, h.AcqCall, floor)
	by = Never
	if h.Released {
		by = h.ReleaseRet
	}
	return from, by
}

// Outcome is what a client learned of a guarded write.
type Outcome int

// Outcomes of a guarded write.
const (
	// Committed: etcd applied it.
	Committed Outcome = iota
	// Rejected: the lock guard failed; the holder had lost its lock.
	Rejected
	// Unknown: the call failed, so it may or may not have been applied.
	Unknown
	// Conflict: the guard held but the counter had moved since the
	// holder read it: another holder wrote in between.
	Conflict
)

func (o Outcome) String() string {
	switch o {
	case Committed:
		return "committed"
	case Rejected:
		return "rejected"
	case Unknown:
		return "unknown"
	case Conflict:
		return "conflict"
	}
	return "?"
}

// Attempt is a guarded write as its client saw it.
type Attempt struct {
	Key     string // the key of its record, unique per attempt
	Client  int
	Token   int64
	Value   int64 // the counter value it writes
	Outcome Outcome
	Rev     int64 // the commit revision, for Committed
	// ReadRev is the counter's ModRevision the holder read and compared
	// against; with Conflict, ActualRev is what etcd had instead.
	ReadRev, ActualRev int64
}

// Write is a guarded write's record as stored in etcd.
type Write struct {
	Key    string
	Client int
	Token  int64
	Value  int64
	Rev    int64 // create revision of the record: the write's commit revision
}

// Fault is one fault the nemesis injected.
type Fault struct {
	Round    int
	Kind     Kind
	Target   string // what it hit, such as "m1" or "client 2"
	At, Heal int64  // Clock times of injection and healing
}

// Recorder collects a run's history. It is safe for concurrent use.
type Recorder struct {
	mu       sync.Mutex
	holds    []Hold
	attempts map[string]Attempt
	revokes  []Revoke
	faults   []Fault
	duties   []Duty
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{attempts: map[string]Attempt{}} }

// Hold records a hold once it ended or was given up.
func (r *Recorder) Hold(h Hold) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.holds = append(r.holds, h)
}

// Attempt records a guarded write.
func (r *Recorder) Attempt(a Attempt) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts[a.Key] = a
}

// Revoke records an outside lease revocation.
func (r *Recorder) Revoke(v Revoke) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revokes = append(r.revokes, v)
}

// Duty records a term's duties once they returned.
func (r *Recorder) Duty(d Duty) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.duties = append(r.duties, d)
}

// Duties returns the duties recorded so far.
func (r *Recorder) Duties() []Duty {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Duty(nil), r.duties...)
}

// Fault records an injected fault.
func (r *Recorder) Fault(f Fault) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults = append(r.faults, f)
}

// Holds returns the holds recorded so far, by token.
func (r *Recorder) Holds() []Hold {
	r.mu.Lock()
	defer r.mu.Unlock()
	hs := append([]Hold(nil), r.holds...)
	sort.Slice(hs, func(i, j int) bool { return hs[i].Token < hs[j].Token })
	return hs
}

// Attempts returns the guarded writes recorded so far, by record key.
func (r *Recorder) Attempts() map[string]Attempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[string]Attempt, len(r.attempts))
	for k, v := range r.attempts {
		m[k] = v
	}
	return m
}

// Revokes returns the recorded revocations.
func (r *Recorder) Revokes() []Revoke {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Revoke(nil), r.revokes...)
}

// Faults returns the recorded faults.
func (r *Recorder) Faults() []Fault {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Fault(nil), r.faults...)
}

// Count returns how many attempts had each outcome.
func Count(attempts map[string]Attempt) map[Outcome]int {
	n := map[Outcome]int{}
	for _, a := range attempts {
		n[a.Outcome]++
	}
	return n
}
