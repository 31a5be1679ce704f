package etcdlock

import (
	"go.uber.org/zap"
)

// DefaultPrefix is where a Locker keeps its keys unless WithPrefix says
// otherwise. The queue of the lock named N lives under
// DefaultPrefix + escape(N) + "/".
const DefaultPrefix = "/leasekit/lock/"

// An Option configures a Locker.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	prefix  string
	logger  *zap.Logger
	metrics Metrics
	meta    map[string]string
}

// WithPrefix sets the etcd key prefix under which the Locker keeps its
// queues (default DefaultPrefix). Lockers that should exclude each other
// must use the same prefix. A missing trailing '/' is added.
func WithPrefix(p string) Option {
	return optionFunc(func(o *options) { o.prefix = p })
}

// WithLogger sets the logger. The default discards everything. The Locker
// logs at warn level when etcd raises a TTL or a lock is lost.
func WithLogger(lg *zap.Logger) Option {
	return optionFunc(func(o *options) { o.logger = lg })
}

// WithMetrics sets where the Locker reports acquisitions, waits, holds,
// failures and losses. The default reports nowhere. For Prometheus, pass
// the *lockprom.Metrics that lockprom.New returns
// (github.com/leasekit/leasekit/etcdlock/lockprom).
func WithMetrics(m Metrics) Option {
	return optionFunc(func(o *options) { o.metrics = m })
}

// WithMetadata adds fields stored with every hold this Locker takes, next
// to the holder's hostname and process ID, for Inspect and etcdctl. Fields
// given in LockOptions.Metadata win over these.
func WithMetadata(m map[string]string) Option {
	return optionFunc(func(o *options) {
		if o.meta == nil {
			o.meta = map[string]string{}
		}
		for k, v := range m {
			o.meta[k] = v
		}
	})
}
