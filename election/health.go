package election

import (
	"fmt"
	"net/http"
	"time"

	"github.com/leasekit/leasekit/internal/lease"
)

// Healthy returns nil unless this candidate leads and its lease renewal
// is overdue: the last successful renewal was sent more than half a TTL
// ago, although one is due every third of a TTL. A leader in that state
// is probably cut off from etcd and will lose leadership soon; a
// liveness probe that restarts it hands leadership over before the TTL
// runs out. A candidate that does not lead is healthy. The error wraps
// ErrRenewalOverdue.
func (e *Election) Healthy() error { return e.healthyAt(time.Now()) }

func (e *Election) healthyAt(now time.Time) error {
	t := e.current()
	if t == nil || !t.alive() {
		return nil
	}
	ttl := t.lease.TTL()
	// The lease deadline is the send time of the last renewal plus the
	// TTL, less a margin.
	sent := t.lease.Deadline().Add(lease.Margin(ttl) - ttl)
	if since := now.Sub(sent); since > ttl/2 {
		return fmt.Errorf("%w: election %q: last renewal sent %v ago; TTL %v",
			ErrRenewalOverdue, e.name, since.Round(time.Millisecond), ttl)
	}
	return nil
}

// HealthHandler returns an http.Handler for liveness probes: it answers
// 200 "ok" while Healthy returns nil and 503 with the error otherwise.
func (e *Election) HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := e.Healthy(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
}
