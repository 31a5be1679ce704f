package ratelimit

import (
	"encoding/json"
	"fmt"
	"time"
)

// MaxRefill bounds Burst × Period / Rate, the time an empty bucket takes to
// fill up. Longer limits are rejected with ErrInvalidLimit: their state
// would outlive any sensible key lease.
const MaxRefill = 10 * 365 * 24 * time.Hour

// Limit is a rate of Rate events per Period with bursts of up to Burst
// events. Burst is also the bucket size: an idle key allows Burst events at
// once, then one event every Period/Rate.
//
// A Limit needs Rate >= 1, Period > 0 and Burst >= 1; Burst has no default
// in a literal, so use PerSecond, PerMinute or PerHour for the common
// Burst = Rate.
type Limit struct {
	// Rate is the number of events allowed per Period, typically 10 to
	// 10,000.
	Rate int
	// Period is the interval Rate counts over, typically time.Second.
	Period time.Duration
	// Burst is the most events allowed at once, typically equal to Rate.
	Burst int
}

// PerSecond is shorthand for Limit{Rate: n, Period: time.Second, Burst: n}:
// n events per second with a burst of n.
func PerSecond(n int) Limit { return Limit{Rate: n, Period: time.Second, Burst: n} }

// PerMinute is shorthand for Limit{Rate: n, Period: time.Minute, Burst: n}:
// n events per minute with a burst of n.
func PerMinute(n int) Limit { return Limit{Rate: n, Period: time.Minute, Burst: n} }

// PerHour is shorthand for Limit{Rate: n, Period: time.Hour, Burst: n}: n
// events per hour with a burst of n.
func PerHour(n int) Limit { return Limit{Rate: n, Period: time.Hour, Burst: n} }

// String returns the limit as "100/1s burst 100".
func (l Limit) String() string {
	return fmt.Sprintf("%d/%v burst %d", l.Rate, l.Period, l.Burst)
}

// Interval returns the time between two events at the full rate,
// Period/Rate rounded up to the nanosecond. The rounding makes the limit
// enforced at most a nanosecond per event stricter, never looser.
func (l Limit) Interval() time.Duration {
	if l.Rate < 1 || l.Period <= 0 {
		return 0
	}
	return (l.Period + time.Duration(l.Rate) - 1) / time.Duration(l.Rate)
}

// Validate reports, wrapping ErrInvalidLimit, why l cannot be enforced, or
// nil.
func (l Limit) Validate() error {
	switch {
	case l.Rate < 1:
		return fmt.Errorf("%w: rate %d; want >= 1", ErrInvalidLimit, l.Rate)
	case l.Period <= 0:
		return fmt.Errorf("%w: period %v; want > 0", ErrInvalidLimit, l.Period)
	case l.Burst < 1:
		return fmt.Errorf("%w: burst %d; want >= 1", ErrInvalidLimit, l.Burst)
	case time.Duration(l.Rate) > l.Period:
		return fmt.Errorf("%w: %d per %v is more than one event per nanosecond", ErrInvalidLimit, l.Rate, l.Period)
	case int64(l.Burst) > int64(MaxRefill/l.Interval()):
		return fmt.Errorf("%w: %v takes longer than %v to refill", ErrInvalidLimit, l, MaxRefill)
	}
	return nil
}

// params is a validated Limit with its derived figures in nanoseconds.
type params struct {
	limit    Limit
	interval int64 // ns between events: the emission interval
	tol      int64 // ns of credit a full bucket holds: Burst × interval
}

func newParams(l Limit) (*params, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	iv := int64(l.Interval())
	return &params{limit: l, interval: iv, tol: int64(l.Burst) * iv}, nil
}

// available returns the tokens a bucket with theoretical arrival time tat
// holds at now. It is negative when a smaller Burst came into force while
// the bucket was in debt.
func (p *params) available(tat, now int64) int64 {
	base := max(tat, now)
	return floorDiv(now+p.tol-base, p.interval)
}

// take is GCRA: it takes want tokens from a bucket with theoretical arrival
// time tat at now if at least want are there. It returns the new arrival
// time, or, when it takes nothing, how long until want tokens are there
// (always > 0).
func (p *params) take(tat, now int64, want int) (ok bool, newTat, wait int64) {
	base := max(tat, now)
	need := base + int64(want)*p.interval - p.tol // earliest time want fit
	if now < need {
		return false, 0, need - now
	}
	return true, base + int64(want)*p.interval, 0
}

// batchCap is the most tokens one instance takes in a batch: what the full
// rate produces in one batch window, and never more than Burst.
func (p *params) batchCap(window time.Duration) int {
	c := int64(window) / p.interval
	return int(min(c, int64(p.limit.Burst)))
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// storedLimit is the JSON form of a Limit in etcd, so that operators can
// set it with etcdctl: {"rate":100,"period":"1s","burst":100}.
type storedLimit struct {
	Rate   int    `json:"rate"`
	Period string `json:"period"`
	Burst  int    `json:"burst"`
}

func marshalLimit(l Limit) string {
	b, _ := json.Marshal(storedLimit{Rate: l.Rate, Period: l.Period.String(), Burst: l.Burst})
	return string(b)
}

func unmarshalLimit(b []byte) (Limit, error) {
	var s storedLimit
	if err := json.Unmarshal(b, &s); err != nil {
		return Limit{}, fmt.Errorf("%w: %v", ErrInvalidLimit, err)
	}
	d, err := time.ParseDuration(s.Period)
	if err != nil {
		return Limit{}, fmt.Errorf("%w: period: %v", ErrInvalidLimit, err)
	}
	l := Limit{Rate: s.Rate, Period: d, Burst: s.Burst}
	return l, l.Validate()
}
