package election

import "errors"

// Errors returned by election. Check them with errors.Is: most are wrapped
// with detail.
var (
	// ErrNoLeader is returned by Leader when no candidate leads.
	ErrNoLeader = errors.New("election: no leader")
	// ErrNotLeader is returned by Proclaim and Txn when this candidate does
	// not lead: it never won, resigned, or lost its term.
	ErrNotLeader = errors.New("election: not the leader")
	// ErrLost is returned when a campaign, or a term, ends because the
	// candidate's key or lease is gone: the lease expired or was revoked,
	// or someone deleted the key.
	ErrLost = errors.New("election: candidacy lost")
	// ErrBusy is returned by Campaign and Run while another Campaign or Run
	// of the same Election is in progress. Use one Election per candidate.
	ErrBusy = errors.New("election: campaign already in progress")
	// ErrInvalidName is returned by New for an election name that is
	// empty, too long or not valid UTF-8.
	ErrInvalidName = errors.New("election: invalid name")
	// ErrInvalidTTL is returned by New for a TTL that is zero, negative or
	// above etcd's maximum.
	ErrInvalidTTL = errors.New("election: invalid TTL")
	// ErrInvalidValue is returned for a value longer than MaxValueLen.
	ErrInvalidValue = errors.New("election: invalid value")
	// ErrInvalidOption is returned by New for an option that cannot work,
	// such as a nil client, and by Run for missing or conflicting
	// callbacks.
	ErrInvalidOption = errors.New("election: invalid option")
	// ErrResigned is why a term Run led ended when Resign ended it: the
	// cause of the duties' context and what OnStoppedLeadingCause gets.
	ErrResigned = errors.New("election: resigned")
	// ErrStopped is why a term Run led ended when Run's context ended. The
	// cause wraps the cause of Run's context too (context.Canceled,
	// context.DeadlineExceeded or one given to context.WithCancelCause).
	ErrStopped = errors.New("election: Run's context ended")
	// ErrDutiesReturned is why a term Run led ended when OnStartedLeading
	// returned by itself; Run then hands over and campaigns again.
	ErrDutiesReturned = errors.New("election: duties returned")
	// ErrRenewalOverdue is returned by Healthy when this candidate leads
	// but its lease has not been renewed for longer than it should take.
	ErrRenewalOverdue = errors.New("election: lease renewal overdue")
)
