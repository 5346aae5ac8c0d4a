package raft

import (
	"io"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
)

// TestPipelineNeverBlocksAfterItsReaderStops is hashicorp/raft#612: once
// Raft's decoder stops reading a pipeline (a follower answered
// Success=false), sending on it and closing it must still return. The
// plain netPipeline blocks the third send for good.
func TestPipelineNeverBlocksAfterItsReaderStops(t *testing.T) {
	follower, err := hraft.NewTCPTransport("127.0.0.1:0", nil, 2, 2*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer follower.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case rpc := <-follower.Consumer():
				rpc.Respond(&hraft.AppendEntriesResponse{Term: 1, Success: false}, nil)
			case <-stop:
				return
			}
		}
	}()
	leader, err := hraft.NewTCPTransport("127.0.0.1:0", nil, 2, 2*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer leader.Close()
	trans := &pipelineTransport{NetworkTransport: leader}
	p, err := trans.AppendEntriesPipeline("f", follower.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	// Raft reads the first answer, sees Success=false and stops reading;
	// its send loop may still send before it closes the pipeline.
	if _, err := p.AppendEntries(&hraft.AppendEntriesRequest{Term: 1}, &hraft.AppendEntriesResponse{}); err != nil {
		t.Fatal(err)
	}
	<-p.Consumer()
	done := make(chan error, 1)
	go func() {
		for i := 0; i < 10; i++ {
			if _, err := p.AppendEntries(&hraft.AppendEntriesRequest{Term: 1}, &hraft.AppendEntriesResponse{}); err != nil {
				done <- err
				return
			}
		}
		done <- p.Close()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sending on a pipeline nobody reads blocked: replication to the follower would hang (hashicorp/raft#612)")
	}
}
