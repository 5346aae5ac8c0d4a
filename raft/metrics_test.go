package raft_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-mesh/outpost/internal/testcluster"
)

// gauge is a series' value in reg and whether reg exports it at all.
func gauge(t *testing.T, reg prometheus.Gatherer, name string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// TestAutopilotHealthOnTheLeaderOnly: autopilot runs on the leader, so
// only the leader exports its verdict; a follower, a former leader
// included, exports nothing rather than a stale value or a 0 that an
// alert would fire on in a healthy region.
func TestAutopilotHealthOnTheLeaderOnly(t *testing.T) {
	tr := newRegion(t, 3)
	leader := tr.Leader(10 * time.Second)
	testcluster.WaitFor(t, 30*time.Second, "autopilot's verdict on the leader", func() bool {
		v, ok := gauge(t, leader.Registry, "outpost_autopilot_healthy")
		return ok && v == 1
	})
	if v, ok := gauge(t, leader.Registry, "outpost_autopilot_failure_tolerance"); !ok || v != 1 {
		t.Errorf("failure tolerance %v (exported %v), want 1 for three voters", v, ok)
	}
	for _, n := range tr.Live() {
		if n == leader || n.Raft.IsLeader() {
			continue
		}
		if _, ok := gauge(t, n.Registry, "outpost_autopilot_healthy"); ok {
			t.Errorf("follower %s exports outpost_autopilot_healthy", n.ID)
		}
	}
	if err := leader.Raft.TransferLeadership(); err != nil {
		t.Fatal(err)
	}
	var next *testcluster.Node
	testcluster.WaitFor(t, 30*time.Second, "a new leader's autopilot verdict", func() bool {
		for _, n := range tr.Live() {
			if n != leader && n.Raft.IsLeader() {
				v, ok := gauge(t, n.Registry, "outpost_autopilot_healthy")
				next = n
				return ok && v == 1
			}
		}
		return false
	})
	if leader.Raft.IsLeader() {
		t.Fatal("the old leader leads again")
	}
	if _, ok := gauge(t, leader.Registry, "outpost_autopilot_healthy"); ok {
		t.Errorf("former leader %s still exports outpost_autopilot_healthy (new leader %s)", leader.ID, next.ID)
	}
}
