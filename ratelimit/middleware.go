package ratelimit

import (
	"errors"
	"fmt"
	"log"
	"math/bits"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// The response header fields Middleware sets.
const (
	// HeaderPolicy is the quota policy of draft-ietf-httpapi-ratelimit-headers-11
	// (May 2026): "name";q=Rate;w=Period in seconds.
	HeaderPolicy = "RateLimit-Policy"
	// HeaderRateLimit is the service limit of the same draft:
	// "name";r=remaining;t=seconds.
	HeaderRateLimit = "RateLimit"
	// HeaderRetryAfter is RFC 9110's Retry-After, in whole seconds, set on
	// a denial (429) and under FailClosed during an outage (503).
	HeaderRetryAfter = "Retry-After"
)

// A MiddlewareOption configures Middleware.
type MiddlewareOption interface{ applyMiddleware(*mwConfig) }

type mwOptionFunc func(*mwConfig)

func (f mwOptionFunc) applyMiddleware(c *mwConfig) { f(c) }

type mwConfig struct {
	pick   func(*http.Request) *Limiter
	cost   func(*http.Request) int
	exempt func(*http.Request) bool
	denied func(http.ResponseWriter, *http.Request, Result)
	failed func(http.ResponseWriter, *http.Request, error)
	lg     *zap.Logger
	lgSet  bool // MiddlewareLogger was given, so a nil lg is an error
}

// SelectLimiter picks the Limiter for each request, for a limit per route
// or per class of key (free and paid API keys, say): each Limiter has its
// own name and limit. A nil result means the Limiter given to Middleware.
// The policy name in the headers is the chosen Limiter's name.
func SelectLimiter(f func(*http.Request) *Limiter) MiddlewareOption {
	return mwOptionFunc(func(c *mwConfig) { c.pick = f })
}

// Cost sets how many events each request counts for (default 1), such as
// the number of items in a batch call. A cost of 0 lets the request
// through uncounted; a negative cost or one above Burst answers 500 and
// logs why.
func Cost(f func(*http.Request) int) MiddlewareOption {
	return mwOptionFunc(func(c *mwConfig) { c.cost = f })
}

// Exempt lets the requests for which f returns true through, uncounted and
// without RateLimit headers: health checks, say, or internal callers.
func Exempt(f func(*http.Request) bool) MiddlewareOption {
	return mwOptionFunc(func(c *mwConfig) { c.exempt = f })
}

// OnDenied writes the response to a request over the limit, in place of
// the default 429 with a short text body. The RateLimit-Policy, RateLimit
// and Retry-After header fields are already set when f runs; f writes the
// status and body.
func OnDenied(f func(w http.ResponseWriter, r *http.Request, res Result)) MiddlewareOption {
	return mwOptionFunc(func(c *mwConfig) { c.denied = f })
}

// OnError writes the response when the limiter returns an error, in place
// of the default: 503 with "Retry-After: 1" for ErrUnavailable (the
// FailClosed outage policy) and for a request whose ctx ended, and 500 for
// anything else, such as an invalid key or cost. Errors of the last kind
// are logged before f runs either way.
func OnError(f func(w http.ResponseWriter, r *http.Request, err error)) MiddlewareOption {
	return mwOptionFunc(func(c *mwConfig) { c.failed = f })
}

// MiddlewareLogger sends the middleware's logs to lg. The default is the
// Limiter's logger (WithLogger); if that discards errors, as the default
// no-op logger does, errors go to the standard library's log package, so
// that a 500 always says why somewhere.
func MiddlewareLogger(lg *zap.Logger) MiddlewareOption {
	return mwOptionFunc(func(c *mwConfig) { c.lg, c.lgSet = lg, true })
}

// Middleware returns net/http middleware that limits requests with lim,
// one bucket per key(r): an API key, a client address, a tenant. It
// composes with http.ServeMux, chi and gorilla/mux, which all take
// func(http.Handler) http.Handler:
//
//	limited := ratelimit.Middleware(lim, func(r *http.Request) string {
//		return r.Header.Get("X-API-Key")
//	})
//	http.Handle("/api/", limited(api))
//
// An allowed request reaches the next handler with two response header
// fields set, from draft-ietf-httpapi-ratelimit-headers-11:
//
//	RateLimit-Policy: "partner-api";q=100;w=60
//	RateLimit: "partner-api";r=42;t=1
//
// The policy is named after the Limiter. q and w are Rate and Period, with
// a Period that is not whole seconds scaled to the next whole second (q
// rounded down); the burst shows as r of a full bucket. r is
// Result.Remaining, and t is the time until the bucket gains its next
// token, rounded up to whole seconds: spending no more than r within t
// seconds is never refused for lack of tokens, though other callers of
// the same key may take them first. No partition key (pk) is sent, since
// keys are often secrets.
//
// A request over the limit gets 429 Too Many Requests (see OnDenied) with
// the same fields, r=0 and t equal to Retry-After, which is
// Result.RetryAfter rounded up to whole seconds and at least 1. A client
// that waits that long and retries is allowed unless other callers of its
// key took the tokens first.
//
// When etcd is unreachable, the Limiter's outage policy decides: FailOpen
// and FailLocal answer as above, and FailClosed answers 503 Service
// Unavailable with "Retry-After: 1" (see OnError).
//
// key must return a valid key (non-empty UTF-8 of at most MaxNameLen bytes):
// check keys that clients send, or map them to such. A request whose key
// is invalid gets 500 and the reason is logged. So does every request if
// lim or key is nil; NewMiddleware reports that as an error instead.
func Middleware(lim *Limiter, key func(*http.Request) string, opts ...MiddlewareOption) func(http.Handler) http.Handler {
	mw, err := NewMiddleware(lim, key, opts...)
	if err == nil {
		return mw
	}
	var cfg mwConfig
	for _, o := range opts {
		if o != nil {
			o.applyMiddleware(&cfg)
		}
	}
	lg := errorLogger(cfg.lg, lim)
	lg.Error("ratelimit: middleware not usable; every request gets 500", zap.Error(err))
	return func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			lg.Error("ratelimit: middleware not usable", zap.Error(err))
			http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		})
	}
}

// NewMiddleware is Middleware with its arguments checked: it returns an
// error wrapping ErrInvalidOption for a nil Limiter, key function, option
// or logger, where Middleware would answer every request with 500.
func NewMiddleware(lim *Limiter, key func(*http.Request) string, opts ...MiddlewareOption) (func(http.Handler) http.Handler, error) {
	switch {
	case lim == nil:
		return nil, fmt.Errorf("%w: nil Limiter", ErrInvalidOption)
	case key == nil:
		return nil, fmt.Errorf("%w: nil key function", ErrInvalidOption)
	}
	var cfg mwConfig
	for i, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil MiddlewareOption at %d", ErrInvalidOption, i)
		}
		o.applyMiddleware(&cfg)
	}
	if cfg.lgSet && cfg.lg == nil {
		return nil, fmt.Errorf("%w: nil logger", ErrInvalidOption)
	}
	cfg.lg = errorLogger(cfg.lg, lim)
	if cfg.denied == nil {
		cfg.denied = deny
	}
	return func(next http.Handler) http.Handler {
		if next == nil {
			err := fmt.Errorf("%w: nil next handler", ErrInvalidOption)
			cfg.lg.Error("ratelimit: middleware not usable; every request gets 500", zap.Error(err))
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				cfg.lg.Error("ratelimit: middleware not usable", zap.Error(err))
				http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
			})
		}
		return &middleware{lim: lim, key: key, cfg: cfg, next: next}
	}, nil
}

type middleware struct {
	lim  *Limiter
	key  func(*http.Request) string
	cfg  mwConfig
	next http.Handler
}

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if m.cfg.exempt != nil && m.cfg.exempt(r) {
		m.next.ServeHTTP(w, r)
		return
	}
	lim := m.lim
	if m.cfg.pick != nil {
		if l := m.cfg.pick(r); l != nil {
			lim = l
		}
	}
	n := 1
	if m.cfg.cost != nil {
		if n = m.cfg.cost(r); n == 0 {
			m.next.ServeHTTP(w, r)
			return
		}
	}
	res, err := lim.AllowN(r.Context(), m.key(r), n)
	if err != nil {
		m.fail(w, r, lim, err)
		return
	}
	h := w.Header()
	ph := lim.policyHeader()
	h.Set(HeaderPolicy, ph.policy)
	if res.Allowed == 0 {
		secs := strconv.FormatInt(retrySeconds(res.RetryAfter), 10)
		h.Set(HeaderRateLimit, ph.name+";r=0;t="+secs)
		h.Set(HeaderRetryAfter, secs)
		m.cfg.denied(w, r, res)
		return
	}
	t := nextToken(res.ResetAfter, ph.limit.Interval())
	h.Set(HeaderRateLimit, ph.name+";r="+strconv.Itoa(res.Remaining)+";t="+strconv.FormatInt(t, 10))
	m.next.ServeHTTP(w, r)
}

// fail answers a request whose limiter call returned err.
func (m *middleware) fail(w http.ResponseWriter, r *http.Request, lim *Limiter, err error) {
	unavailable := errors.Is(err, ErrUnavailable) || r.Context().Err() != nil
	if !unavailable {
		m.cfg.lg.Error("ratelimit: cannot limit request; answering 500",
			zap.String("limiter", lim.Name()), zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
	}
	if m.cfg.failed != nil {
		m.cfg.failed(w, r, err)
		return
	}
	if unavailable {
		w.Header().Set(HeaderRetryAfter, "1")
		http.Error(w, "rate limiter unavailable", http.StatusServiceUnavailable)
		return
	}
	http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
}

// deny is the default answer to a request over the limit.
func deny(w http.ResponseWriter, _ *http.Request, _ Result) {
	http.Error(w, "rate limit exceeded", http.StatusTooManyRequests)
}

// errorLogger returns lg, else lim's logger, unless that discards errors:
// then a logger that writes errors through the standard library's log.
func errorLogger(lg *zap.Logger, lim *Limiter) *zap.Logger {
	if lg == nil && lim != nil {
		lg = lim.lg
	}
	if lg != nil && lg.Core().Enabled(zapcore.ErrorLevel) {
		return lg
	}
	enc := zapcore.NewConsoleEncoder(zapcore.EncoderConfig{MessageKey: "msg", ConsoleSeparator: " "})
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(log.Writer()), zapcore.ErrorLevel))
}

// retrySeconds is d rounded up to whole seconds, at least 1.
func retrySeconds(d time.Duration) int64 {
	return max(1, secondsCeil(d))
}

// nextToken returns the seconds, rounded up, until a bucket whose arrival
// time is resetAfter ahead of now gains its next token. A bucket gains one
// every interval, counted from its arrival time; a full one gains its next
// after the first it gives out.
func nextToken(resetAfter, interval time.Duration) int64 {
	if interval <= 0 {
		return 0
	}
	d := resetAfter % interval
	if d == 0 {
		d = interval
	}
	return secondsCeil(d)
}

// policyHeader is a Limiter's RateLimit-Policy field and quoted name, for
// the limit they were made from.
type policyHeader struct {
	limit  Limit
	name   string // the name as a structured-field String
	policy string // the RateLimit-Policy field value
}

// policyHeader returns the header values for the limit in force, making
// them again only when the limit changes.
func (l *Limiter) policyHeader() *policyHeader {
	lim := l.Limit()
	if ph := l.hdr.Load(); ph != nil && ph.limit == lim {
		return ph
	}
	name := sfString(l.name)
	q, w := quota(lim)
	ph := &policyHeader{
		limit:  lim,
		name:   name,
		policy: name + ";q=" + strconv.FormatInt(q, 10) + ";w=" + strconv.FormatInt(w, 10),
	}
	l.hdr.Store(ph)
	return ph
}

// sfMaxInteger is the largest Integer a structured field can carry
// (RFC 9651).
const sfMaxInteger = 999_999_999_999_999

// quota expresses lim as q events per w whole seconds: Rate per Period
// when Period is whole seconds, else scaled to the next whole second with
// q rounded down, so that the advertised rate is never above the limit.
func quota(lim Limit) (q, w int64) {
	w = max(1, secondsCeil(lim.Period))
	if lim.Period%time.Second == 0 {
		return min(int64(lim.Rate), sfMaxInteger), w
	}
	hi, lo := bits.Mul64(uint64(lim.Rate), uint64(w)*uint64(time.Second))
	if hi >= uint64(lim.Period) {
		return sfMaxInteger, w
	}
	qq, _ := bits.Div64(hi, lo, uint64(lim.Period))
	return int64(min(qq, sfMaxInteger)), w
}

// sfString quotes s as a structured-field String (RFC 9651), which allows
// printable ASCII only: '"' and '\' are escaped with '\', and '%' and the
// bytes of other characters are percent-encoded.
func sfString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '%' || c < 0x20 || c > 0x7e:
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
