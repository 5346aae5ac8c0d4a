package drill

import (
	"context"
	"fmt"
	"net/http"
	neturl "net/url"
	"slices"
	"sync"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

const (
	verifyWorkers = 8
	maxListed     = 10 // lost keys and ids listed in a round's report
)

// readBack checks, with linearizable reads on url, that everything the
// region acknowledged during the round is still there: every acked write
// with its value, and every probe dispatch that was answered as
// committed. It fills res's counts and lists; an error means something
// could not be read at all, so nothing could be concluded.
func (d *drill) readBack(ctx context.Context, url string, rs *roundState, res *api.DrillRound) error {
	rs.mu.Lock()
	acked, committed := slices.Clone(rs.acked), slices.Clone(rs.committed)
	rs.mu.Unlock()
	lost, err := d.verifyWrites(ctx, url, acked)
	if err != nil {
		return fmt.Errorf("reading back the acknowledged writes: %w", err)
	}
	lostProbes, err := d.verifyDispatches(ctx, url, committed)
	if err != nil {
		return fmt.Errorf("looking up the committed probe dispatches: %w", err)
	}
	res.AckedWrites, res.AckedWritesLost = len(acked), len(lost)
	res.LostKeys = lost[:min(len(lost), maxListed)]
	res.ProbesCommitted, res.ProbesLost = len(committed), len(lostProbes)
	res.LostProbeIDs = lostProbes[:min(len(lostProbes), maxListed)]
	return nil
}

// verifyWrites reads every acknowledged key back from url with a
// linearizable read and returns the keys missing or holding another
// value, sorted. An error means some key could not be read at all.
func (d *drill) verifyWrites(ctx context.Context, url string, acked []ackedWrite) (lost []string, err error) {
	return readAll(ctx, acked, func(a ackedWrite) (string, bool, error) {
		var got []byte
		err := d.retry(ctx, func() error {
			return d.api.call(ctx, 5*time.Second, "GET", url, "/api/v1/kv/"+a.key+"?consistent=true", nil, &got)
		})
		switch {
		case statusOf(err) == http.StatusNotFound:
			return a.key, true, nil
		case err != nil:
			return a.key, false, err
		}
		return a.key, string(got) != a.value, nil
	})
}

// verifyDispatches looks every committed dispatch id up on url with a
// linearizable read and returns the ids not found, sorted.
func (d *drill) verifyDispatches(ctx context.Context, url string, ids []string) (lost []string, err error) {
	return readAll(ctx, ids, func(id string) (string, bool, error) {
		ok, err := d.committed(ctx, url, id)
		return id, !ok, err
	})
}

// committed looks a dispatch id up with a linearizable read.
func (d *drill) committed(ctx context.Context, url, id string) (bool, error) {
	var l api.DispatchLookup
	err := d.retry(ctx, func() error {
		return d.api.call(ctx, 5*time.Second, "GET", url, "/api/v1/dispatches/"+neturl.PathEscape(id)+"?consistent=true", nil, &l)
	})
	if err == nil && l.ID != id {
		// An answer about another id proves nothing about this one.
		return false, fmt.Errorf("looking up dispatch %s, %s answered for %q", id, url, l.ID)
	}
	return l.Committed, err
}

// readAll runs check on every item with a few workers and returns the
// names of the items it found lost, sorted, and the first error (or the
// context's, if it ended before every item was checked).
func readAll[T any](ctx context.Context, items []T, check func(T) (name string, lost bool, err error)) ([]string, error) {
	var mu sync.Mutex
	var lost []string
	var firstErr error
	next := make(chan T)
	var wg sync.WaitGroup
	for range verifyWorkers {
		wg.Go(func() {
			for it := range next {
				name, gone, err := check(it)
				mu.Lock()
				switch {
				case err != nil:
					if firstErr == nil {
						firstErr = fmt.Errorf("%s: %w", name, err)
					}
				case gone:
					lost = append(lost, name)
				}
				mu.Unlock()
			}
		})
	}
	for _, it := range items {
		if ctx.Err() != nil {
			break
		}
		next <- it
	}
	close(next)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	slices.Sort(lost)
	return lost, firstErr
}
