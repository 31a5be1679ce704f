package chaos

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// maxReported bounds how many violations of one kind a check lists.
const maxReported = 10

// CheckWrites checks the guarded writes read back from etcd (stored, in any
// order) against what their clients saw (attempts) and the counter's final
// value:
//   - in commit order the records carry the values 1, 2, ..., n, so no
//     update was lost or applied twice, and final is n;
//   - fencing tokens never decrease in commit order;
//   - every write a client saw commit is stored, at the revision it was
//     told; every stored write was attempted, and seen to commit unless
//     its outcome was unknown;
//   - no attempt saw a conflict (guard true, counter moved).
func CheckWrites(stored []Write, attempts map[string]Attempt, final int64) error {
	var errs []error
	add := func(format string, args ...any) {
		if len(errs) < maxReported {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	ws := append([]Write(nil), stored...)
	sort.Slice(ws, func(i, j int) bool { return ws[i].Rev < ws[j].Rev })
	for i, w := range ws {
		if w.Value != int64(i+1) {
			add("write %d in commit order (%s, rev %d, token %d) set the counter to %d: a lost or doubled update",
				i+1, w.Key, w.Rev, w.Token, w.Value)
		}
		if i > 0 && w.Token < ws[i-1].Token {
			add("token went back in commit order: %s (rev %d) has token %d after %s (rev %d) with token %d",
				w.Key, w.Rev, w.Token, ws[i-1].Key, ws[i-1].Rev, ws[i-1].Token)
		}
		a, ok := attempts[w.Key]
		switch {
		case !ok:
			add("stored write %s (rev %d) was never attempted", w.Key, w.Rev)
		case a.Outcome == Committed && a.Rev != w.Rev:
			add("write %s was seen to commit at rev %d but is stored at rev %d", w.Key, a.Rev, w.Rev)
		case a.Outcome == Rejected || a.Outcome == Conflict:
			add("write %s was seen %v but is stored (rev %d)", w.Key, a.Outcome, w.Rev)
		case a.Token != w.Token || a.Value != w.Value:
			add("write %s stored as token %d value %d, attempted as token %d value %d",
				w.Key, w.Token, w.Value, a.Token, a.Value)
		}
	}
	if final != int64(len(ws)) {
		add("counter is %d but %d guarded writes are stored", final, len(ws))
	}
	have := make(map[string]bool, len(ws))
	for _, w := range ws {
		have[w.Key] = true
	}
	keys := make([]string, 0, len(attempts))
	for k := range attempts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		a := attempts[k]
		switch {
		case a.Outcome == Committed && !have[k]:
			add("write %s was seen to commit (rev %d) but is not stored", k, a.Rev)
		case a.Outcome == Conflict:
			add("write %s by client %d with token %d: its guard held but the counter moved from rev %d to %d: two holders overlapped",
				k, a.Client, a.Token, a.ReadRev, a.ActualRev)
		}
	}
	return errors.Join(errs...)
}

// CheckTokenOrder checks that the holds can have followed each other in
// token order, each ending before the next began, within the intervals
// recorded: the promise of a FIFO lock whose tokens are create revisions,
// and of an election whose terms are. It is exact for that order: it
// places each hold's start and end as early as its intervals allow.
func CheckTokenOrder(holds []Hold, revokes []Revoke) error {
	hs := append([]Hold(nil), holds...)
	sort.Slice(hs, func(i, j int) bool { return hs[i].Token < hs[j].Token })
	prevEnd := int64(-1 << 62)
	for i, h := range hs {
		if i > 0 && h.Token == hs[i-1].Token {
			return fmt.Errorf("token %d was handed out twice (clients %d and %d)", h.Token, hs[i-1].Client, h.Client)
		}
		start := max(h.AcqCall, prevEnd)
		if start > h.AcqRet {
			p := hs[i-1]
			pf, pb := p.End(revokes)
			return fmt.Errorf("client %d acquired token %d by %v, but the hold before it (client %d, token %d) "+
				"cannot have ended before %v (it ended in [%v, %v]): they overlapped",
				h.Client, h.Token, ns(h.AcqRet), p.Client, p.Token, ns(prevEnd), ns(pf), nsOrNever(pb))
		}
		from, by := h.End(revokes)
		end := max(from, start)
		if end > by {
			return fmt.Errorf("client %d's hold of token %d ended by %v but cannot have begun before %v",
				h.Client, h.Token, ns(by), ns(start))
		}
		prevEnd = end
	}
	return nil
}

// CheckDuties checks the promise of election.Run that a leader's duties
// end before any other term begins: each duty must have returned by the
// time every term after it is known to have begun (the AcqRet of its
// hold: when Campaign returned, or when Run started its duties). A duty
// whose client's lease was revoked from outside while it ran is exempt:
// etcd then deletes the key at once, and the leader learns of it from
// its watch, after the next term may have begun.
func CheckDuties(duties []Duty, holds []Hold, revokes []Revoke) error {
	hs := append([]Hold(nil), holds...)
	sort.Slice(hs, func(i, j int) bool { return hs[i].Token < hs[j].Token })
	// first[i] is the hold of hs[i:] known to have begun earliest.
	first := make([]int, len(hs))
	for i := len(hs) - 1; i >= 0; i-- {
		first[i] = i
		if i+1 < len(hs) && hs[first[i+1]].AcqRet < hs[i].AcqRet {
			first[i] = first[i+1]
		}
	}
	var errs []error
	for _, d := range duties {
		i := sort.Search(len(hs), func(i int) bool { return hs[i].Token > d.Token })
		if i == len(hs) {
			continue
		}
		next := hs[first[i]]
		if d.End <= next.AcqRet || revokedDuring(revokes, d.Client, d.Start, d.End) {
			continue
		}
		if len(errs) < maxReported {
			errs = append(errs, fmt.Errorf("client %d's duties of term %d ran until %v, but term %d (client %d) had begun by %v",
				d.Client, d.Token, ns(d.End), next.Token, next.Client, ns(next.AcqRet)))
		}
	}
	return errors.Join(errs...)
}

// revokedDuring reports whether a lease of client was revoked from
// outside at some time in [from, to].
func revokedDuring(revokes []Revoke, client int, from, to int64) bool {
	for _, r := range revokes {
		if r.Client == client && r.Call <= to && r.Ret >= from {
			return true
		}
	}
	return false
}

// mutexOp is an operation of the mutex model: acquire or release by the
// holder of token.
type mutexOp struct {
	acquire bool
	token   int64
}

// MutexModel is the sequential specification CheckMutex checks holds
// against: a mutex whose state is the token of its holder, 0 when free.
var MutexModel = porcupine.Model{
	Init: func() interface{} { return int64(0) },
	Step: func(state, input, _ interface{}) (bool, interface{}) {
		s, op := state.(int64), input.(mutexOp)
		switch {
		case op.acquire && s == 0:
			return true, op.token
		case !op.acquire && s == op.token:
			return true, int64(0)
		}
		return false, state
	},
	DescribeOperation: func(input, _ interface{}) string {
		op, ok := input.(mutexOp)
		if !ok {
			return ""
		}
		if op.acquire {
			return fmt.Sprintf("acquire %d", op.token)
		}
		return fmt.Sprintf("end %d", op.token)
	},
	DescribeState: func(state interface{}) string {
		if s, _ := state.(int64); s != 0 {
			return fmt.Sprintf("held by %d", s)
		}
		return "free"
	},
}

// CheckMutex checks with porcupine that the holds are linearizable as the
// acquisitions and ends of one mutex: that some order of them, each within
// its interval, never has two holders at once. Unlike CheckTokenOrder it
// assumes nothing about the order of holders. It returns an error for a
// violation, and porcupine.Unknown with a nil error if timeout passed
// first. On a violation, if $LEASEKIT_CHAOS_VIZ_DIR names a directory, it
// writes porcupine's visualization there and names the file in the error;
// otherwise it writes nothing (the checker's own tests make violations on
// purpose, and every run would leave a file behind).
func CheckMutex(holds []Hold, revokes []Revoke, timeout time.Duration) (porcupine.CheckResult, error) {
	ops := make([]porcupine.Operation, 0, 2*len(holds))
	for _, h := range holds {
		from, by := h.End(revokes)
		ops = append(ops,
			porcupine.Operation{ClientId: h.Client, Input: mutexOp{acquire: true, token: h.Token},
				Call: h.AcqCall, Return: h.AcqRet},
			porcupine.Operation{ClientId: h.Client, Input: mutexOp{token: h.Token},
				Call: from, Return: by})
	}
	res, info := porcupine.CheckOperationsVerbose(MutexModel, ops, timeout)
	if res != porcupine.Illegal {
		return res, nil
	}
	err := fmt.Errorf("the history of %d holds is not linearizable as a mutex", len(holds))
	dir := os.Getenv(VizDirEnv)
	if dir == "" {
		return res, fmt.Errorf("%w (set %s to keep porcupine's visualization)", err, VizDirEnv)
	}
	if f, ferr := os.CreateTemp(dir, "leasekit-chaos-*.html"); ferr == nil {
		if porcupine.Visualize(MutexModel, info, f) == nil {
			err = fmt.Errorf("%w; visualization: %s", err, f.Name())
		}
		f.Close()
	}
	return res, err
}

// VizDirEnv names the environment variable that tells CheckMutex where to
// write porcupine's visualization of a history that fails.
const VizDirEnv = "LEASEKIT_CHAOS_VIZ_DIR"

func ns(t int64) time.Duration { return time.Duration(t) }

func nsOrNever(t int64) string {
	if t == Never {
		return "never"
	}
	return time.Duration(t).String()
}
