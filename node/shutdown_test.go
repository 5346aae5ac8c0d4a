package node_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/node"
)

// TestShutdownEndsEventStreams: a graceful shutdown ends the event
// streams clients hold open (`outpostctl dispatches watch`) and finishes;
// the HTTP server's Shutdown waited on them until its deadline, and
// `outpost dev` exited 1 after Ctrl-C with a watch running.
func TestShutdownEndsEventStreams(t *testing.T) {
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	req, _ := http.NewRequest("GET", tn.url+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+tn.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("events: %d", resp.StatusCode)
	}
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatalf("the stream's first event: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := tn.n.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with an event stream open: %v", err)
	}
	// The stream ended cleanly (the handler returned), not cut off.
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatalf("the stream was cut off rather than ended: %v", err)
	}
}
