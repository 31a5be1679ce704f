package etcdlock_test

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	clientv3 "go.etcd.io/etcd/client/v3"

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
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { l.Close() })
	f.Fuzz(func(t *testing.T, name string) {
		ctx := testkit.Context(t)
		lk, ok, err := l.TryLock(ctx, name, 5*time.Second)
		if !validName(name) {
			if !errors.Is(err, etcdlock.ErrInvalidKey) || ok || lk != nil {
				t.Fatalf("TryLock(%q) = %v, %v; want ErrInvalidKey", name, ok, err)
			}
			if _, err := l.Inspect(ctx, name); !errors.Is(err, etcdlock.ErrInvalidKey) {
				t.Fatalf("Inspect(%q): %v", name, err)
			}
			return
		}
		if err != nil || !ok {
			t.Fatalf("TryLock(%q) = %v, %v", name, ok, err)
		}
		info, err := l.Inspect(ctx, name)
		if err != nil || info.Holder == nil || info.Holder.Token != lk.Token() || len(info.Waiters) != 0 {
			t.Fatalf("Inspect(%q) = %+v, %v", name, info, err)
		}
		rest, ok := strings.CutPrefix(info.Holder.EtcdKey, etcdlock.DefaultPrefix)
		if !ok || strings.Count(rest, "/") != 1 || strings.HasPrefix(rest, "/") {
			t.Fatalf("the key of %q is %q: not one segment and one member under the prefix", name, info.Holder.EtcdKey)
		}
		if err := lk.Release(ctx); err != nil {
			t.Fatalf("Release(%q): %v", name, err)
		}
		resp, err := c.Client().Get(ctx, etcdlock.DefaultPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil || resp.Count != 0 {
			t.Fatalf("keys left after Release(%q): %v %v", name, resp, err)
		}
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
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { l.Close() })
	f.Fuzz(func(t *testing.T, a, b string) {
		if !validName(a) || !validName(b) {
			return
		}
		ctx := testkit.Context(t)
		la, ok, err := l.TryLock(ctx, a, 5*time.Second)
		if err != nil || !ok {
			t.Fatalf("TryLock(%q) = %v, %v", a, ok, err)
		}
		defer la.Release(ctx)
		lb, ok, err := l.TryLock(ctx, b, 5*time.Second)
		if err != nil {
			t.Fatalf("TryLock(%q): %v", b, err)
		}
		if ok != (a != b) {
			t.Fatalf("with %q held, TryLock(%q) = %v", a, b, ok)
		}
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
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { l.Close() })
	const name = "foreign"
	key := etcdlock.DefaultPrefix + name + "/stranger"
	f.Fuzz(func(t *testing.T, v []byte) {
		ctx := testkit.Context(t)
		if _, err := c.Client().Put(ctx, key, string(v)); err != nil {
			t.Fatal(err)
		}
		defer c.Client().Delete(ctx, key)
		info, err := l.Inspect(ctx, name)
		if err != nil || info.Holder == nil || info.Holder.EtcdKey != key || info.Holder.LeaseID != 0 {
			t.Fatalf("Inspect with a foreign holder: %+v, %v", info, err)
		}
		if lk, ok, err := l.TryLock(ctx, name, 5*time.Second); ok || err != nil {
			if lk != nil {
				lk.Release(ctx)
			}
			t.Fatalf("TryLock with a foreign holder = %v, %v", ok, err)
		}
	})
}
