package raft_test

import (
	"context"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/internal/leakcheck"

	"github.com/outpost-mesh/outpost/internal/testcluster"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m)
}

const region = "test-region"

// newRegion starts n nodes of the shared test cluster (real TLS, bbolt,
// raft-wal, memberlist on loopback) and waits for a leader.
func newRegion(t *testing.T, n int) *testcluster.Cluster {
	t.Helper()
	return testcluster.New(t, testcluster.Config{Nodes: n, Region: region})
}

func put(t *testing.T, r *raft.Region, key, val string) raft.Result {
	t.Helper()
	b, err := raft.KVCommand{Op: raft.KVPut, Bucket: storage.BucketKV, Key: []byte(key), Value: []byte(val)}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := r.Apply(ctx, b)
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	if res.Err != nil {
		t.Fatalf("put %s: entry error %v", key, res.Err)
	}
	return res
}

func dumpKV(t *testing.T, s *storage.Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	if err := s.View(func(tx *storage.Tx) error {
		tx.ForEach(storage.BucketKV, nil, func(k, v []byte) bool { out[string(k)] = string(v); return true })
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}
