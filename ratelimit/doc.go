// Package ratelimit provides rate limits shared by every instance of a
// service through etcd, such as "each API key gets 100 requests a minute,
// whichever replica serves them" or "at most 50 calls/s to this partner
// API, per account, across all replicas".
//
// A Limiter enforces one Limit on many keys (an API key, an account, a
// client IP), each with its own bucket. Its API follows
// golang.org/x/time/rate and go-redis/redis_rate: Allow answers at once
// with a Result, Wait blocks until the event may happen, Reserve schedules
// it. Middleware puts a Limiter in front of net/http handlers, the most
// common use:
//
//	lim, err := ratelimit.New(cli, "public-api", ratelimit.PerMinute(100))
//	if err != nil {
//		return err
//	}
//	defer lim.Close()
//
//	limited := ratelimit.Middleware(lim, func(r *http.Request) string {
//		return r.Header.Get("X-API-Key")
//	})
//	http.Handle("/api/", limited(api))
//
// or, to decide yourself:
//
//	r, err := lim.Allow(ctx, accountID)
//	if err != nil {
//		return err // ErrUnavailable: etcd unreachable, see OutagePolicy
//	}
//	if r.Allowed == 0 {
//		return fmt.Errorf("over the limit; retry in %v", r.RetryAfter)
//	}
//
// # HTTP
//
// Middleware answers a request over the limit with 429 Too Many Requests
// and Retry-After in whole seconds, rounded up. Every limited response,
// allowed or not, carries the RateLimit-Policy and RateLimit header fields
// of draft-ietf-httpapi-ratelimit-headers-11 (May 2026):
//
//	RateLimit-Policy: "public-api";q=100;w=60
//	RateLimit: "public-api";r=42;t=1
//
// r is the quota left and t the seconds until the bucket gains its next
// token; Middleware's documentation gives the exact meaning of each.
// Options pick a Limiter per route or per class of key (SelectLimiter),
// the cost of a request (Cost), the requests that are exempt (Exempt) and
// the responses to a denial or an error (OnDenied, OnError).
//
// # Reservations
//
// ReserveN takes tokens now, going into debt if need be, and says how long
// to wait before acting, as x/time/rate's ReserveN does; other instances
// see the debt. Cancel before the time to act gives the tokens back to the
// shared bucket by moving its arrival time back, which keeps the bound
// below even with reservations made after the cancelled one; after that
// time it gives nothing back. Reservation.Cancel documents every case.
//
// # When etcd is unreachable
//
// Every etcd call made for a caller is bounded by the caller's ctx and by
// a call timeout (WithCallTimeout, 1s by default). A call that fails or
// times out while the caller's ctx is alive starts an outage: from then on
// calls that need etcd are decided at once by the outage policy
// (WithOutagePolicy), until a background probe reaches etcd again:
//
//   - FailClosed, the default: refuse with ErrUnavailable (Middleware
//     answers 503). The limit holds; the service does not.
//   - FailOpen: allow. The service stays up; the limit is off.
//   - FailLocal: allow each instance Rate/N and Burst/N from a bucket in
//     memory per key, where N is the number of live instances, which each
//     instance counts from keys the others keep on leases of their own.
//     What it allowed is charged to the shared bucket when etcd is back.
//
// Denials answered from the cached bucket state and calls served from
// tokens held in a batch need no etcd and go on as usual. Result.Degraded
// marks decisions made by the policy, and a Metrics that implements
// OutageMetrics (ratelimitprom does) counts them. OutagePolicy has the
// details and the bound each policy keeps.
//
// # Algorithm and cost
//
// Each bucket is GCRA state, a theoretical arrival time (TAT), in one etcd
// key that instances change only with a compare-and-swap transaction on its
// ModRevision. An allowed call costs one etcd write; after a lost race, or
// on an instance's first use of a key, one more round trip that reads the
// fresh state. A denial writes nothing and is normally answered without
// contacting etcd at all: every writer only moves a TAT forward, so a
// bucket that an instance last saw short of tokens is still short. (The
// exceptions, Reservation.Cancel and a bucket reset by hand, give tokens
// back; an instance that has not seen them yet denies from its older
// state, which is strict, never loose.) An instance talks to etcd about
// one key one call at a time, since etcd serialises the writes to a key
// anyway.
//
// # Guarantees
//
// Exact mode (WithBatchWindow(0); limits whose full rate yields fewer than
// two tokens per batch window, under 80/s at the default 25ms; and keys
// that no instance asks more than one token per window of, 40/s at the
// default): in any interval of length t, the events allowed for one key
// across all instances number at most
//
//	Burst + Rate × (t + S) / Period
//
// where S is how far the fastest instance's clock runs ahead of the
// slowest's. There is no clock in etcd to share, so each instance uses its
// own, but bounded by the buckets: each bucket records the time of its last
// write, and an instance never uses a time earlier than one it has read.
// So limiter time never moves backwards, an instance whose clock runs
// behind is pulled up to the others instead of being starved, and a clock
// running ahead adds at most Rate × S / Period events once, never a higher
// rate. The local clock is the wall clock read once in New plus the
// monotonic clock since, so later steps of the wall clock change nothing.
//
// Batched mode (the default, for busy keys): an instance whose demand for
// a key reaches two or more tokens per batch window takes a batch of
// tokens with one compare-and-swap, sized to what its callers asked for
// in recent windows, at most what the full rate yields in one window and
// at most Burst, and serves the batch from memory. A batch is taken whole
// or not at all, and tokens left unused when the window ends expire; they
// are not given back. Every batch is a grant under the exact bound above
// and is used within one window W, so in any interval t at most
//
//	Burst + Rate × (t + S + W) / Period
//
// events are allowed: 125 more than exact mode for 5,000/s at the default
// 25ms. Batching cuts etcd writes to about one per batch: four instances
// sharing 5,000/s use over 95% of it with about 0.025 writes per permit
// (docs/benchmarks.md). In batched mode Result.Remaining is an estimate,
// and a call may be denied while the shared bucket holds fewer tokens than
// this instance's batch.
//
// Reservations count at the moment they were made for: the bounds hold
// for events done when Reservation.Delay said, not for events done later.
// While etcd is unreachable, the bounds hold under FailClosed; FailLocal
// keeps them, with N counted right, up to one extra Burst at the start of
// the outage, plus the share of any instance cut off alone; FailOpen
// drops them (see OutagePolicy).
//
// A limit can be changed while instances run (SetLimit, below). The TAT
// carries over, so time owed under the old limit is still owed.
//
// # Keys in etcd and their lifetime
//
// For prefix P (DefaultPrefix unless WithPrefix) and name N:
//
//	P N /limit     the limit set with SetLimit, JSON: {"rate":100,"period":"1s","burst":100}
//	P N /b/ KEY    the bucket of KEY: "tat=<unix ns> now=<unix ns>"
//	P N /i/ ID     a live instance under FailLocal, on its own 5s lease; ID is the lease in hex
//
// N and KEY are percent-encoded ('%', '/', and bytes outside printable
// ASCII), so no name or key is a prefix of another's key range; both must
// be valid UTF-8.
//
// Deleting a bucket key resets the bucket, but an instance that last saw
// it empty keeps denying from its cached state until its own reckoning
// refills it or until its next write finds the change.
//
// Buckets belong to no instance: a crashed or closed instance does not
// refill them. Each write attaches the bucket to a lease, never kept
// alive, that etcd expires no earlier than one second after the bucket
// would be full again. An idle bucket therefore vanishes on its own, and a
// missing bucket is exactly a full one. Each instance grants such a lease
// about once per refill time (Burst × Period / Rate) plus a second, and
// shares it among all the keys it writes.
//
// # Changing the limit at run time
//
// The limit given to New is a default. SetLimit, or an operator with
//
//	etcdctl put /leasekit/ratelimit/partner-api/limit '{"rate":100,"period":"1s","burst":100}'
//
// stores a limit that overrides it in every instance, which all watch the
// key; deleting the key restores each instance's own default. A new
// instance reads the stored limit before it answers its first call.
// Invalid stored limits are logged and ignored.
//
// # Logging
//
// A Limiter logs through WithLogger's *zap.Logger, a no-op by default;
// failures also reach the caller as errors. At error level: an invalid
// stored limit was ignored, Middleware cannot limit a request (it answers
// 500). At warn level: etcd is unreachable and the outage policy decides,
// a malformed bucket was ignored, an instance registration or the limit's
// watch failed and is retried. At info level: etcd is reachable again,
// the limit changed. At debug level: the count of live instances.
package ratelimit
