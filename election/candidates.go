package election

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Candidate is one key in an election's line, as Candidates reports it.
type Candidate struct {
	// EtcdKey is the candidate's key in etcd.
	EtcdKey string
	// Value is what the candidate campaigned or last proclaimed with.
	Value string
	// Rev is the key's create revision: the term, if the candidate leads.
	Rev int64
	// LeaseID is the etcd lease the key is attached to.
	LeaseID int64
}

// Candidates returns the election's candidates in the order they will
// lead, with one linearizable read: the first one leads. It returns an
// empty slice when nobody campaigns. Like Leader, it works from any
// Election of the name, candidate or not.
func (e *Election) Candidates(ctx context.Context) ([]Candidate, error) {
	resp, err := e.cli.Get(ctx, e.queue, clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("election: candidates of %q: %w", e.name, err)
	}
	line := make([]Candidate, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		line = append(line, Candidate{EtcdKey: string(kv.Key), Value: string(kv.Value), Rev: kv.CreateRevision, LeaseID: kv.Lease})
	}
	return line, nil
}

// KeyPrefix returns the etcd key prefix under which the election's
// candidates line up, ending in '/': the prefix (WithPrefix) and the
// name, with '%', '/' and bytes that are not printable ASCII
// percent-encoded. Watch it with etcdctl to follow the election.
func (e *Election) KeyPrefix() string { return e.queue }
