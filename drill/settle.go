package drill

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

// maxApplyLag is how far behind the leader a settled follower may be:
// entries committed while the region was being asked.
const maxApplyLag = 32

// regionView is the region as the drill found it settled.
type regionView struct {
	region string
	leader string
	holder string
	token  uint64
	voters []api.Node // sorted by id, each with its API URL
}

func (v regionView) url(id string) string {
	for _, n := range v.voters {
		if n.ID == id {
			return n.APIURL
		}
	}
	return ""
}

// others are the voters but id.
func (v regionView) others(id string) []api.Node {
	var out []api.Node
	for _, n := range v.voters {
		if n.ID != id {
			out = append(out, n)
		}
	}
	return out
}

// settle waits, up to settleTimeout, until the region is settled: a
// leader holds the lease with time left, every voter answers and agrees
// on the leader, and the drill streams every voter's events.
func (d *drill) settle(ctx context.Context, label string) (regionView, error) {
	start := time.Now()
	said := start
	for {
		v, why, err := d.settled(ctx)
		if err != nil {
			return v, err
		}
		if why == "" {
			if time.Since(start) > time.Second {
				d.say("%s: region settled after %.1fs: %s leads and holds lease token %d", label, time.Since(start).Seconds(), v.holder, v.token)
			}
			return v, nil
		}
		if time.Since(start) > settleTimeout {
			return v, fmt.Errorf("the region did not settle within %v: %s", settleTimeout, why)
		}
		if time.Since(said) >= 5*time.Second {
			d.say("%s: waiting for the region to settle (%.0fs): %s", label, time.Since(start).Seconds(), why)
			said = time.Now()
		}
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// settled looks once. why says what is not settled yet; err is a reason
// to give up at once (no access).
func (d *drill) settled(ctx context.Context) (v regionView, why string, err error) {
	r, err := d.region(ctx)
	if err != nil {
		if s := statusOf(err); s == http.StatusUnauthorized || s == http.StatusForbidden {
			return v, "", fmt.Errorf("the drill needs a region-admin token: %w", err)
		}
		return v, err.Error(), nil
	}
	v.region, v.leader = r.Region, r.Leader
	for _, n := range r.Nodes {
		if n.Suffrage == "voter" {
			v.voters = append(v.voters, n)
		}
	}
	slices.SortFunc(v.voters, func(a, b api.Node) int { return strings.Compare(a.ID, b.ID) })
	d.mu.Lock()
	for _, n := range r.Nodes {
		if n.APIURL != "" {
			d.urls[n.ID] = n.APIURL
		}
	}
	d.mu.Unlock()
	for _, n := range v.voters {
		if n.APIURL != "" {
			d.streams.ensure(n.ID, n.APIURL)
		}
	}
	if r.Lease != nil {
		v.holder, v.token = r.Lease.Holder, r.Lease.Token
	}
	switch {
	case r.Leader == "":
		return v, "no Raft leader (election under way?)", nil
	case r.Lease == nil || r.Lease.Holder == "":
		return v, fmt.Sprintf("%s leads but nobody holds the dispatch lease yet", r.Leader), nil
	case r.Lease.Holder != r.Leader:
		return v, fmt.Sprintf("the lease holder %s is not the leader %s yet", r.Lease.Holder, r.Leader), nil
	case r.Lease.ExpiresInMs <= 0:
		return v, fmt.Sprintf("the lease of %s has run out (token %d)", r.Lease.Holder, r.Lease.Token), nil
	}
	// The region's commit index is the leader's (older nodes report only
	// what they applied).
	var leaderApplied uint64
	for _, n := range v.voters {
		if n.ID == r.Leader {
			leaderApplied = max(n.CommitIndex, n.AppliedIndex)
		}
	}
	for _, n := range v.voters {
		if n.APIURL == "" {
			return v, fmt.Sprintf("node %s advertises no API URL", n.ID), nil
		}
		if n.RaftState != "leader" && n.RaftState != "follower" {
			return v, fmt.Sprintf("node %s is %s %s", n.ID, n.RaftState, n.Error), nil
		}
		if n.AppliedIndex+maxApplyLag < leaderApplied {
			// A follower that gets heartbeats but no entries looks
			// healthy otherwise; a drill must not call that settled.
			return v, fmt.Sprintf("node %s has applied index %d, %d behind the leader %s's commit index (is replication to it stuck?)",
				n.ID, n.AppliedIndex, leaderApplied-n.AppliedIndex, r.Leader), nil
		}
		var h api.Health
		if err := d.api.call(ctx, 2*time.Second, "GET", n.APIURL, "/api/v1/health", nil, &h); err != nil {
			return v, fmt.Sprintf("node %s does not answer: %v", n.ID, err), nil
		}
		if h.Leader != r.Leader {
			return v, fmt.Sprintf("node %s follows %q, %s follows %s", n.ID, h.Leader, r.Node, r.Leader), nil
		}
		if ok, why := d.streams.live(n.ID); !ok {
			return v, fmt.Sprintf("the event stream of %s is not open: %s", n.ID, why), nil
		}
	}
	return v, "", nil
}

// region asks Addr for the region, then the other nodes it knows (Addr
// may be the node a stop drill took down).
func (d *drill) region(ctx context.Context) (api.Region, error) {
	urls := []string{d.cfg.Addr}
	d.mu.Lock()
	ids := make([]string, 0, len(d.urls))
	for id := range d.urls {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if u := d.urls[id]; u != d.cfg.Addr {
			urls = append(urls, u)
		}
	}
	d.mu.Unlock()
	var first error
	for _, u := range urls {
		var r api.Region
		err := d.api.call(ctx, 5*time.Second, "GET", u, "/api/v1/region", nil, &r)
		if err == nil {
			return r, nil
		}
		if s := statusOf(err); s == http.StatusUnauthorized || s == http.StatusForbidden {
			return r, err
		}
		if first == nil {
			first = err
		}
	}
	return api.Region{}, fmt.Errorf("no node answers GET /api/v1/region: %w", first)
}
