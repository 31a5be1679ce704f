package ratelimit

import (
	"sync/atomic"
	"time"
)

// clock is the limiter's notion of now, in Unix nanoseconds.
//
// Every instance reads its own clock, so there is no single source of
// time; what keeps skew in check is that each bucket records the time of
// its last write, and an instance never uses a time earlier than one it has
// read from a bucket: its offset only grows. A slow clock is thus pulled
// up to the fastest writer's and is never starved by it, and limiter time
// never moves backwards. Without an injected clock, the local part runs on
// the monotonic clock, so steps of the wall clock do not move it either.
type clock struct {
	src    func() time.Time // nil: base plus monotonic time since base
	base   time.Time
	offset atomic.Int64 // ns added to the local clock; never decreases
}

func newClock(src func() time.Time) *clock {
	return &clock{src: src, base: time.Now()}
}

func (c *clock) local() int64 {
	if c.src != nil {
		return c.src().UnixNano()
	}
	return c.base.UnixNano() + int64(time.Since(c.base))
}

// now returns limiter time.
func (c *clock) now() int64 { return c.local() + c.offset.Load() }

// observe moves limiter time forward to at least t, a time some writer
// had reached.
func (c *clock) observe(t int64) {
	for {
		off := c.offset.Load()
		d := t - c.local()
		if d <= off || c.offset.CompareAndSwap(off, d) {
			return
		}
	}
}
