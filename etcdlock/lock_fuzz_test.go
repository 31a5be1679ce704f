package etcdlock_test

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/etcdlock"
	"github.com/leasekit/leasekit/internal/testkit"
)

// fuzzNames are the seed corpus of the name fuzzers.
var fuzzNames = []string{
	"a", "a/", "/a", "a/b", "/", "%", "%2F", "a%2Fb", "a\x00b", "\x00", " ", "ü", "😀", "..", "a/../a",
	"", "\xff", strings.Repeat("k", etcdlock.MaxNameLen), strings.Repeat("/", etcdlock.MaxNameLen),
	strings.Repeat("k", etcdlock.MaxNameLen+1),
}

func validName(name string) bool {
	return name != "" && len(name) <= etcdlock.MaxNameLen && utf8.ValidString(name)
}

// FuzzLockName takes and releases a lock of any name: an invalid name is
// refused with ErrInvalidKey and writes nothing; a valid one gets one key,
// inside the Locker's prefix and in a range of its own, that Inspect
// reports and Release removes.
func FuzzLockName(f *testing.F) {
	for _, n := range fuzzNames {
		f.Add(n)
	}
	c := embedtest.New(f)
	l, err := etcdlock.New(c.Client())
	require.NoError(f, err)
	f.Cleanup(func() { l.Close() })
	f.Fuzz(func(t *testing.T, name string) {
		ctx := testkit.Context(t)
		lk, ok, err := l.TryLock(ctx, name, 5*time.Second)
		if !validName(name) {
			require.ErrorIs(t, err, etcdlock.ErrInvalidKey, "TryLock(%q)", name)
			require.False(t, ok, "TryLock(%q)", name)
			require.Nil(t, lk, "TryLock(%q)", name)
			_, err := l.Inspect(ctx, name)
			require.ErrorIs(t, err, etcdlock.ErrInvalidKey, "Inspect(%q)", name)
			return
		}
		require.NoError(t, err, "TryLock(%q)", name)
		require.True(t, ok, "TryLock(%q)", name)
		info, err := l.Inspect(ctx, name)
		require.NoError(t, err, "Inspect(%q)", name)
		require.NotNil(t, info.Holder, "Inspect(%q)", name)
		require.Equal(t, lk.Token(), info.Holder.Token, "Inspect(%q)", name)
		require.Empty(t, info.Waiters, "Inspect(%q)", name)
		rest, ok := strings.CutPrefix(info.Holder.EtcdKey, etcdlock.DefaultPrefix)
		require.True(t, ok && strings.Count(rest, "/") == 1 && !strings.HasPrefix(rest, "/"),
			"the key of %q is %q: not one segment and one member under the prefix", name, info.Holder.EtcdKey)
		require.NoError(t, lk.Release(ctx), "Release(%q)", name)
		require.Zero(t, testkit.CountKeys(t, c.Client(), etcdlock.DefaultPrefix), "keys left after Release(%q)", name)
	})
}

// FuzzNamesDisjoint holds lock a and tries lock b: b is free exactly when
// the names differ.
func FuzzNamesDisjoint(f *testing.F) {
	for i, n := range fuzzNames {
		f.Add(n, fuzzNames[(i+1)%len(fuzzNames)])
		f.Add(n, n+"/")
		f.Add(n+"/", n)
	}
	c := embedtest.New(f)
	l, err := etcdlock.New(c.Client())
	require.NoError(f, err)
	f.Cleanup(func() { l.Close() })
	f.Fuzz(func(t *testing.T, a, b string) {
		if !validName(a) || !validName(b) {
			return
		}
		ctx := testkit.Context(t)
		la, ok, err := l.TryLock(ctx, a, 5*time.Second)
		require.NoError(t, err, "TryLock(%q)", a)
		require.True(t, ok, "TryLock(%q)", a)
		defer la.Release(ctx)
		lb, ok, err := l.TryLock(ctx, b, 5*time.Second)
		require.NoError(t, err, "TryLock(%q)", b)
		require.Equal(t, a != b, ok, "with %q held, TryLock(%q)", a, b)
		if lb != nil {
			lb.Release(ctx)
		}
	})
}

// FuzzForeignQueueValue puts a key that leasekit did not write, with any
// value, at the head of a lock's queue, as a foreign writer or a
// corrupted store could: Inspect reports it as the holder without
// panicking, and TryLock finds the lock taken.
func FuzzForeignQueueValue(f *testing.F) {
	for _, v := range []string{"", "{}", `{"host":"h","pid":"1"}`, `{"a":1}`, "null", "[]", "\xff\xfe", `{"a":"\xff"}`,
		strings.Repeat("{", 10000), `{"a":{"b":"c"}}`} {
		f.Add([]byte(v))
	}
	c := embedtest.New(f)
	l, err := etcdlock.New(c.Client())
	require.NoError(f, err)
	f.Cleanup(func() { l.Close() })
	const name = "foreign"
	key := etcdlock.DefaultPrefix + name + "/stranger"
	f.Fuzz(func(t *testing.T, v []byte) {
		ctx := testkit.Context(t)
		_, err := c.Client().Put(ctx, key, string(v))
		require.NoError(t, err)
		defer c.Client().Delete(ctx, key)
		info, err := l.Inspect(ctx, name)
		require.NoError(t, err, "Inspect with a foreign holder")
		require.NotNil(t, info.Holder, "Inspect with a foreign holder")
		require.Equal(t, key, info.Holder.EtcdKey, "Inspect with a foreign holder")
		require.Zero(t, info.Holder.LeaseID, "Inspect with a foreign holder")
		lk, ok, err := l.TryLock(ctx, name, 5*time.Second)
		if lk != nil {
			lk.Release(ctx)
		}
		require.NoError(t, err, "TryLock with a foreign holder")
		require.False(t, ok, "TryLock with a foreign holder")
	})
}
