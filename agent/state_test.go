package agent

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/outpost-mesh/outpost/internal/agentwire"
)

// TestFencingStateNeverGoesBack: while dispatches under rising tokens are
// applied, node-list changes save the state too (a failover that moves
// the agent while the new holder dispatches). The token on disk never
// falls, every save succeeds, the file always parses, and after the run
// it holds the highest token applied. A node-list save made from a copy
// outside the lock put the token back (179 → 174) and shared one
// temporary file with the dispatch's save.
func TestFencingStateNeverGoesBack(t *testing.T) {
	dir := t.TempDir()
	a := testAgent(t, dir, nil)
	const dispatches = 150
	var wg sync.WaitGroup
	errs := make(chan error, 3*dispatches)
	stop := make(chan struct{})

	wg.Add(1)
	go func() { // the node list changes all the while
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := a.setServers([]string{fmt.Sprintf("https://127.0.0.%d:7443", 2+i%3)}); err != nil {
				errs <- fmt.Errorf("node list save: %w", err)
			}
		}
	}()
	wg.Add(1)
	go func() { // a restart could read the state at any moment
		defer wg.Done()
		var seen uint64
		for {
			select {
			case <-stop:
				return
			default:
			}
			st, err := a.store.load()
			if err != nil {
				errs <- fmt.Errorf("reading the state: %w", err)
				return
			}
			if st.HighestToken < seen {
				errs <- fmt.Errorf("the token on disk went back from %d to %d", seen, st.HighestToken)
				return
			}
			seen = st.HighestToken
		}
	}()
	for tok := uint64(1); tok <= dispatches; tok++ {
		d := agentwire.Dispatch{ID: fmt.Sprintf("d%d", tok), Kind: "config", Token: tok, Index: tok, Node: "n1",
			Payload: json.RawMessage(`{"export_interval":"10s"}`)}
		if st, msg := a.decide(remote(t, d)); st != "applied" {
			errs <- fmt.Errorf("dispatch %d: %s %s", tok, st, msg)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st, err := a.store.load()
	if err != nil {
		t.Fatal(err)
	}
	if st.HighestToken != dispatches {
		t.Errorf("token on disk after the run: %d, want %d", st.HighestToken, dispatches)
	}
}

// TestTokenPersistedBeforeApply: when the agent acts on a dispatch, its
// token is already on disk, so a crash during the apply cannot let a
// restarted agent accept a dispatch under an older token.
func TestTokenPersistedBeforeApply(t *testing.T) {
	dir := t.TempDir()
	var a *Agent
	var onDisk []uint64
	a = testAgent(t, dir, func(agentwire.Config) error {
		st, err := a.store.load()
		if err != nil {
			return err
		}
		onDisk = append(onDisk, st.HighestToken)
		return nil
	})
	for _, tok := range []uint64{3, 7, 7, 9} {
		d := agentwire.Dispatch{ID: fmt.Sprintf("d%d-%d", tok, len(onDisk)), Kind: "config", Token: tok, Index: uint64(len(onDisk) + 1),
			Node: "n1", Payload: json.RawMessage(`{"export_interval":"10s"}`)}
		if st, msg := a.decide(remote(t, d)); st != "applied" {
			t.Fatalf("token %d: %s %s", tok, st, msg)
		}
	}
	want := []uint64{3, 7, 7, 9}
	if fmt.Sprint(onDisk) != fmt.Sprint(want) {
		t.Fatalf("token on disk when each dispatch was applied: %v, want %v", onDisk, want)
	}
}
