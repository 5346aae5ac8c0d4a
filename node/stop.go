package node

import (
	"context"
	"errors"
	"time"
)

// Shutdown stops the node gracefully: stop taking API requests, hand off
// leadership, leave gossip, close Raft and flush the state file.
func (n *Node) Shutdown(ctx context.Context) error {
	var errs []error
	n.once.Do(func() {
		// Hand the lease off first, so the next leader need not wait it out.
		if n.lease != nil {
			if _, held := n.lease.Holding(); held {
				rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				if err := n.lease.Release(rctx); err != nil {
					n.logger.Warn("releasing the dispatch lease before shutdown failed; the next holder waits it out", "err", err)
				}
				cancel()
			}
		}
		if n.cancel != nil {
			n.cancel()
		}
		if n.agents != nil {
			errs = append(errs, n.agents.Close())
		}
		n.closeFederation()
		if n.http != nil {
			errs = append(errs, n.http.Shutdown(ctx))
		}
		// No request is in flight now: the API writes what it still
		// holds (open refusal windows) while the region can commit it.
		// Past ctx the region shuts down anyway and those writes fail,
		// logged.
		if n.stopAPI != nil {
			n.stopAPI()
		}
		apiDone := make(chan struct{})
		go func() {
			n.apiWG.Wait()
			close(apiDone)
		}()
		select {
		case <-apiDone:
		case <-ctx.Done():
		}
		if n.region != nil {
			errs = append(errs, n.region.Shutdown(ctx))
		}
		n.apiWG.Wait()
		n.wg.Wait()
		errs = append(errs, n.closeRest())
		n.logger.Info("node stopped")
	})
	return errors.Join(errs...)
}

// goAPI runs the API's background work under apiWG; it ends when the
// API's stopping channel closes (n.stopAPI).
func (n *Node) goAPI(run func()) {
	n.apiWG.Add(1)
	go func() {
		defer n.apiWG.Done()
		run()
	}()
}

// Kill stops the node abruptly, as a crash would (tests, dev mode).
func (n *Node) Kill() {
	n.once.Do(func() {
		if n.stopAPI != nil {
			n.stopAPI()
		}
		if n.cancel != nil {
			n.cancel()
		}
		if n.agents != nil {
			n.agents.Close()
		}
		n.closeFederation()
		if n.agentLn != nil { // not served yet, or already closed (harmless)
			n.agentLn.Close()
		}
		if n.http != nil {
			n.http.Close()
		} else if n.httpLn != nil {
			n.httpLn.Close()
		}
		if n.region != nil {
			n.region.Close()
		}
		n.apiWG.Wait()
		n.wg.Wait()
		_ = n.closeRest()
	})
}

func (n *Node) closeRest() error {
	var errs []error
	if n.tsdb != nil {
		errs = append(errs, n.tsdb.Close())
	}
	// After the store: no commit can enqueue any more.
	if n.remoteWrite != nil {
		errs = append(errs, n.remoteWrite.Close())
	}
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	return errors.Join(errs...)
}

// closeFederation stops the federation endpoint and client (its Run ends
// with the node's context).
func (n *Node) closeFederation() {
	if n.fed != nil {
		n.fed.Close()
	}
	if n.fedConn != nil {
		_ = n.fedConn.Close()
	}
}
