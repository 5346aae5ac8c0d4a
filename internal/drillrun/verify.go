package drillrun

import (
	"context"
	"net/http"
	"sync"
	"time"
)

const verifyWorkers = 8

// verifyWrites reads every acknowledged key back from url with a
// linearizable read and returns the keys missing or holding another
// value. An error means some key could not be read at all.
func (d *drill) verifyWrites(ctx context.Context, url string, acked []ackedWrite) (lost []string, err error) {
	var mu sync.Mutex
	var firstErr error
	next := make(chan ackedWrite)
	var wg sync.WaitGroup
	for range verifyWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range next {
				var got []byte
				err := d.retry(ctx, func() error {
					return d.api.call(ctx, 5*time.Second, "GET", url+"/api/v1/kv/"+a.key+"?consistent=true", nil, &got)
				})
				mu.Lock()
				switch {
				case statusOf(err) == http.StatusNotFound:
					lost = append(lost, a.key)
				case err != nil:
					if firstErr == nil {
						firstErr = err
					}
				case string(got) != a.value:
					lost = append(lost, a.key)
				}
				mu.Unlock()
			}
		}()
	}
	for _, a := range acked {
		if ctx.Err() != nil {
			break
		}
		next <- a
	}
	close(next)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return lost, firstErr
}
