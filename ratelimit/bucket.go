package ratelimit

import (
	"errors"
	"strconv"
	"strings"
)

// bucket is the state of one key as stored in etcd: GCRA needs only the
// theoretical arrival time. The bucket holds Burst tokens when tat <= now
// and none when tat >= now + Burst × interval.
//
// The value reads "tat=<ns> now=<ns>" in Unix nanoseconds of limiter time,
// so that etcdctl shows something a person can check.
type bucket struct {
	tat int64 // theoretical arrival time of the next event
	now int64 // limiter time of the writer when it wrote
}

// maxStoredTime bounds stored times so that sums of times and durations
// cannot overflow: it is far beyond any real clock.
const maxStoredTime = 1 << 62

var errBadBucket = errors.New("malformed bucket value")

func (b bucket) encode() string {
	return "tat=" + strconv.FormatInt(b.tat, 10) + " now=" + strconv.FormatInt(b.now, 10)
}

func decodeBucket(v []byte) (bucket, error) {
	t, n, ok := strings.Cut(string(v), " ")
	if !ok {
		return bucket{}, errBadBucket
	}
	tat, err1 := parseField(t, "tat=")
	now, err2 := parseField(n, "now=")
	if err1 != nil || err2 != nil {
		return bucket{}, errBadBucket
	}
	return bucket{tat: tat, now: now}, nil
}

func parseField(s, name string) (int64, error) {
	v, ok := strings.CutPrefix(s, name)
	if !ok {
		return 0, errBadBucket
	}
	x, err := strconv.ParseInt(v, 10, 64)
	if err != nil || x < 0 || x > maxStoredTime {
		return 0, errBadBucket
	}
	return x, nil
}
