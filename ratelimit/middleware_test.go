package ratelimit_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/ratelimit"
)

// ok is the handler behind the middleware in these tests.
var ok = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })

// byAPIKey is the key function of these tests.
func byAPIKey(r *http.Request) string { return r.Header.Get("X-API-Key") }

// sfItem is one parsed structured-field Item with Integer parameters, as
// RateLimit-Policy and RateLimit carry them: "name";a=1;b=2.
type sfItem struct {
	name   string
	params map[string]int64
}

// parseItem parses a header value holding one such Item, strictly.
func parseItem(v string) (sfItem, error) {
	if len(v) < 2 || v[0] != '"' {
		return sfItem{}, fmt.Errorf("%q: not a String", v)
	}
	var name strings.Builder
	i := 1
	for ; i < len(v) && v[i] != '"'; i++ {
		c := v[i]
		if c == '\\' {
			i++
			if i == len(v) || (v[i] != '"' && v[i] != '\\') {
				return sfItem{}, fmt.Errorf("%q: bad escape", v)
			}
			c = v[i]
		} else if c < 0x20 || c > 0x7e {
			return sfItem{}, fmt.Errorf("%q: byte %#x in a String", v, c)
		}
		name.WriteByte(c)
	}
	if i == len(v) {
		return sfItem{}, fmt.Errorf("%q: unterminated String", v)
	}
	it := sfItem{name: name.String(), params: map[string]int64{}}
	rest := v[i+1:]
	for rest != "" {
		if rest[0] != ';' {
			return sfItem{}, fmt.Errorf("%q: want ';' at %q", v, rest)
		}
		p, next, _ := strings.Cut(rest[1:], ";")
		if next != "" || strings.HasSuffix(rest[1:], ";") {
			next = ";" + next
		}
		k, val, found := strings.Cut(p, "=")
		n, err := strconv.ParseInt(val, 10, 64)
		if !found || k == "" || err != nil || n < 0 || n > 999_999_999_999_999 {
			return sfItem{}, fmt.Errorf("%q: bad parameter %q", v, p)
		}
		it.params[k] = n
		rest = next
	}
	return it, nil
}

// checkHeaders parses the rate-limit fields of a response and checks that
// they agree with its status; it returns the RateLimit item.
func checkHeaders(t testing.TB, h http.Header, status int, policy string, lim ratelimit.Limit) sfItem {
	t.Helper()
	pol, err := parseItem(h.Get(ratelimit.HeaderPolicy))
	require.NoError(t, err)
	require.Equal(t, policy, pol.name)
	require.Equal(t, map[string]int64{"q": int64(lim.Rate), "w": int64(lim.Period / time.Second)}, pol.params)
	rl, err := parseItem(h.Get(ratelimit.HeaderRateLimit))
	require.NoError(t, err)
	require.Equal(t, policy, rl.name)
	require.Len(t, rl.params, 2)
	require.Contains(t, rl.params, "t")
	r := rl.params["r"]
	switch status {
	case http.StatusOK:
		require.Empty(t, h.Values(ratelimit.HeaderRetryAfter))
		require.LessOrEqual(t, r, int64(lim.Burst))
		require.GreaterOrEqual(t, rl.params["t"], int64(1), "a bucket gains its next token in more than 0s")
	case http.StatusTooManyRequests:
		ra, err := strconv.ParseInt(h.Get(ratelimit.HeaderRetryAfter), 10, 64)
		require.NoError(t, err, "Retry-After in whole seconds")
		require.GreaterOrEqual(t, ra, int64(1))
		require.Zero(t, r)
		require.Equal(t, ra, rl.params["t"], "the effective window ends with Retry-After")
	default:
		require.FailNowf(t, "unexpected status", "status %d", status)
	}
	return rl
}

// get sends a GET for key to url and returns the response, body read.
func get(t testing.TB, client *http.Client, url, key string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	req.Header.Set("X-API-Key", key)
	resp, err := client.Do(req)
	require.NoError(t, err)
	_, err = io.Copy(io.Discard, resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return resp
}

// replicas starts n HTTP servers, each with its own etcd client and
// Limiter of one name, as n replicas of a service would be.
func replicas(t testing.TB, c *embedtest.Cluster, n int, name string, lim ratelimit.Limit, opts ...ratelimit.Option) []*httptest.Server {
	t.Helper()
	srvs := make([]*httptest.Server, n)
	for i, l := range instances(t, c, n, name, lim, opts...) {
		mw, err := ratelimit.NewMiddleware(l, byAPIKey)
		require.NoError(t, err)
		srvs[i] = httptest.NewServer(mw(ok))
		t.Cleanup(srvs[i].Close)
	}
	return srvs
}

// TestMiddlewareReplicas runs three replicas, each its own HTTP server,
// etcd client and Limiter, serving one API key on a shared clock that
// moves in steps of 5ms. In every step each replica's client sends
// requests until it is refused. The requests allowed stay within Burst +
// Rate × t over every window from 1ms to the whole run, reach that bound
// exactly at the end of every step, and every response's headers parse
// and agree with its status.
func TestMiddlewareReplicas(t *testing.T) {
	c := embedtest.New(t)
	clk := newFakeClock()
	lim := ratelimit.Limit{Rate: 100, Period: time.Second, Burst: 10}
	srvs := replicas(t, c, 3, "edge", lim, ratelimit.WithClock(clk.Now), ratelimit.WithBatchWindow(0))

	const step, steps = 5 * time.Millisecond, 120
	var times []time.Duration
	for s := range steps {
		now := time.Duration(s) * step
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, srv := range srvs {
			wg.Go(func() {
				for {
					resp := get(t, srv.Client(), srv.URL, "alice")
					checkHeaders(t, resp.Header, resp.StatusCode, "edge", lim)
					if resp.StatusCode != http.StatusOK {
						return
					}
					mu.Lock()
					times = append(times, now)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		require.Equal(t, lim.Burst+int(now/lim.Interval()), len(times), "after %v", now)
		clk.Advance(step)
	}
	st := measure(times, lim, steps*step, 0)
	t.Logf("%s", st)
	require.Zero(t, st.maxExcess, "over Burst + Rate × t in some window")
}

// TestMiddlewareRetryAfter: a client that waits the Retry-After it was
// given, and retries on another replica, is allowed; a second earlier it
// would not have been, so Retry-After is rounded up by less than a second.
func TestMiddlewareRetryAfter(t *testing.T) {
	c := embedtest.New(t)
	clk := newFakeClock()
	for i, tc := range []struct {
		lim  ratelimit.Limit
		want int64
	}{
		{ratelimit.PerMinute(3), 20},
		{ratelimit.Limit{Rate: 1, Period: 1500 * time.Millisecond, Burst: 1}, 2},
		{ratelimit.PerSecond(5), 1},
		{ratelimit.PerHour(2), 1800},
	} {
		t.Run(tc.lim.String(), func(t *testing.T) {
			srvs := replicas(t, c, 2, fmt.Sprint("retry-", i), tc.lim, ratelimit.WithClock(clk.Now))
			for range tc.lim.Burst {
				resp := get(t, srvs[0].Client(), srvs[0].URL, "bob")
				require.Equal(t, http.StatusOK, resp.StatusCode)
			}
			resp := get(t, srvs[0].Client(), srvs[0].URL, "bob")
			require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
			ra, err := strconv.ParseInt(resp.Header.Get(ratelimit.HeaderRetryAfter), 10, 64)
			require.NoError(t, err)
			require.Equal(t, tc.want, ra)

			clk.Advance(time.Duration(ra-1) * time.Second)
			resp = get(t, srvs[1].Client(), srvs[1].URL, "bob")
			require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "a second before Retry-After")
			clk.Advance(time.Second)
			resp = get(t, srvs[1].Client(), srvs[1].URL, "bob")
			require.Equal(t, http.StatusOK, resp.StatusCode, "after Retry-After")
		})
	}
}

// serve runs one request with key through h and returns the response.
func serve(h http.Handler, path, key string, header ...string) *http.Response {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func TestMiddlewareOptions(t *testing.T) {
	c := embedtest.New(t)
	clk := newFakeClock()
	opts := []ratelimit.Option{ratelimit.WithClock(clk.Now)}
	def := newLimiter(t, c.Client(), "api", ratelimit.PerMinute(5), opts...)
	search := newLimiter(t, c.Client(), "search", ratelimit.PerMinute(1), opts...)
	mw, err := ratelimit.NewMiddleware(def, byAPIKey,
		ratelimit.Exempt(func(r *http.Request) bool { return r.URL.Path == "/healthz" }),
		ratelimit.SelectLimiter(func(r *http.Request) *ratelimit.Limiter {
			if strings.HasPrefix(r.URL.Path, "/search") {
				return search
			}
			return nil
		}),
		ratelimit.Cost(func(r *http.Request) int {
			n, err := strconv.Atoi(r.Header.Get("X-Cost"))
			if err != nil {
				return 1
			}
			return n
		}),
		ratelimit.OnDenied(func(w http.ResponseWriter, r *http.Request, res ratelimit.Result) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprintf(w, `{"retry_after_ms":%d}`, res.RetryAfter.Milliseconds())
		}),
	)
	require.NoError(t, err)
	h := mw(ok)
	rl := func(resp *http.Response) string { return resp.Header.Get(ratelimit.HeaderRateLimit) }

	resp := serve(h, "/healthz", "carol")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Empty(t, resp.Header.Get(ratelimit.HeaderPolicy), "exempt: no headers")

	resp = serve(h, "/items", "carol", "X-Cost", "3")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, `"api";q=5;w=60`, resp.Header.Get(ratelimit.HeaderPolicy))
	require.Equal(t, `"api";r=2;t=12`, rl(resp), "3 of 5 taken; the next token in 12s")
	resp = serve(h, "/items", "carol", "X-Cost", "0")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Empty(t, rl(resp), "cost 0: uncounted")

	resp = serve(h, "/search", "carol")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, `"search";q=1;w=60`, resp.Header.Get(ratelimit.HeaderPolicy))
	require.Equal(t, `"search";r=0;t=60`, rl(resp))
	resp = serve(h, "/search", "carol")
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	require.Equal(t, "60", resp.Header.Get(ratelimit.HeaderRetryAfter))
	require.Equal(t, `"search";r=0;t=60`, rl(resp))
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.JSONEq(t, `{"retry_after_ms":60000}`, string(body))

	resp = serve(h, "/items", "carol", "X-Cost", "2")
	require.Equal(t, http.StatusOK, resp.StatusCode, "the search limit is apart")
	require.Equal(t, `"api";r=0;t=12`, rl(resp))
	resp = serve(h, "/items", "dave")
	require.Equal(t, `"api";r=4;t=12`, rl(resp), "each key its own bucket")
	clk.Advance(12 * time.Second)
	resp = serve(h, "/items", "carol")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, `"api";r=0;t=12`, rl(resp))
}

// TestMiddlewareBadInput: a nil Limiter, key function, option or handler,
// an invalid key and an invalid cost never panic. NewMiddleware returns an
// error; Middleware answers 500 and logs why.
func TestMiddlewareBadInput(t *testing.T) {
	c := embedtest.New(t)
	l := newLimiter(t, c.Client(), "bad-mw", ratelimit.PerSecond(10))
	for _, tc := range []struct {
		name string
		lim  *ratelimit.Limiter
		key  func(*http.Request) string
		opts []ratelimit.MiddlewareOption
		want string
	}{
		{"nil limiter", nil, byAPIKey, nil, "nil Limiter"},
		{"nil key function", l, nil, nil, "nil key function"},
		{"nil option", l, byAPIKey, []ratelimit.MiddlewareOption{nil}, "nil MiddlewareOption"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mw, err := ratelimit.NewMiddleware(tc.lim, tc.key, tc.opts...)
			require.ErrorIs(t, err, ratelimit.ErrInvalidOption)
			require.ErrorContains(t, err, tc.want)
			require.Nil(t, mw)

			core, logs := observer.New(zapcore.ErrorLevel)
			opts := append(tc.opts, ratelimit.MiddlewareLogger(zap.New(core)))
			resp := serve(ratelimit.Middleware(tc.lim, tc.key, opts...)(ok), "/", "k")
			require.Equal(t, http.StatusInternalServerError, resp.StatusCode)
			require.Equal(t, 2, logs.FilterFieldKey("error").Len(), "logged when made and when serving")
			require.Contains(t, logs.All()[1].ContextMap()["error"], tc.want)
		})
	}
	t.Run("nil logger", func(t *testing.T) {
		mw, err := ratelimit.NewMiddleware(l, byAPIKey, ratelimit.MiddlewareLogger(nil))
		require.ErrorIs(t, err, ratelimit.ErrInvalidOption)
		require.ErrorContains(t, err, "nil logger")
		require.Nil(t, mw)
		resp := serve(ratelimit.Middleware(l, byAPIKey, ratelimit.MiddlewareLogger(nil))(ok), "/", "k")
		require.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	})

	core, logs := observer.New(zapcore.ErrorLevel)
	lg := ratelimit.MiddlewareLogger(zap.New(core))
	t.Run("nil handler", func(t *testing.T) {
		resp := serve(ratelimit.Middleware(l, byAPIKey, lg)(nil), "/", "k")
		require.Equal(t, http.StatusInternalServerError, resp.StatusCode)
		require.Contains(t, logs.TakeAll()[1].ContextMap()["error"], "nil next handler")
	})

	cost := func(r *http.Request) int { n, _ := strconv.Atoi(r.Header.Get("X-Cost")); return n }
	h := ratelimit.Middleware(l, byAPIKey, lg, ratelimit.Cost(cost))(ok)
	for _, tc := range []struct {
		name, key, cost, want string
	}{
		{"empty key", "", "1", "invalid key"},
		{"key too long", strings.Repeat("k", ratelimit.MaxNameLen+1), "1", "invalid key"},
		{"key not UTF-8", "\xff", "1", "invalid key"},
		{"negative cost", "k", "-1", "invalid n"},
		{"cost over burst", "k", "11", "invalid n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := serve(h, "/", tc.key, "X-Cost", tc.cost)
			require.Equal(t, http.StatusInternalServerError, resp.StatusCode)
			require.Empty(t, resp.Header.Get(ratelimit.HeaderRateLimit))
			entries := logs.TakeAll()
			require.Len(t, entries, 1)
			require.Contains(t, entries[0].ContextMap()["error"], tc.want)
		})
	}
	resp := serve(h, "/", "k", "X-Cost", "10")
	require.Equal(t, http.StatusOK, resp.StatusCode, "bad requests took nothing")
}
