package raft

import (
	"sync"

	hraft "github.com/hashicorp/raft"
)

// pipelineTransport is hashicorp/raft's NetworkTransport with pipelined
// replication that cannot hang (hashicorp/raft#612, still open upstream
// as of its 2026-06 head; pyroscope turned pipelining off for it in
// 2026-08). The bug: netPipeline's decoder hands each response to an
// unbuffered doneCh (MaxRPCsInFlight 2), and Raft's pipelineDecode stops
// reading it after a follower answers Success=false; if the send loop then
// sends once more before it notices, the send waits for the decoder, the
// decoder waits on doneCh, and pipeline.Close, deferred behind the send,
// never runs: replication to that follower stops for good while
// heartbeats continue (no election heals it), and Shutdown hangs. Here a
// pipeline's responses are always taken from the decoder and queued for
// Raft, so the decoder never waits and the send loop always gets to Close.
// Every other method, and the optional interfaces hashicorp/raft looks for
// (WithClose, WithPreVote, WithPeers), are the NetworkTransport's.
type pipelineTransport struct {
	*hraft.NetworkTransport
}

// AppendEntriesPipeline returns the transport's pipeline to target with
// its responses drained.
func (t *pipelineTransport) AppendEntriesPipeline(id hraft.ServerID, target hraft.ServerAddress) (hraft.AppendPipeline, error) {
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return newDrainedPipeline(p), nil
}

// drainedPipeline forwards an AppendPipeline's finished requests through a
// queue of its own, so the wrapped pipeline never blocks handing one over
// when nobody reads Consumer any more. The queue holds at most the
// requests sent between Raft's decoder giving up and its send loop
// closing the pipeline.
type drainedPipeline struct {
	hraft.AppendPipeline
	out       chan hraft.AppendFuture
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newDrainedPipeline(p hraft.AppendPipeline) *drainedPipeline {
	d := &drainedPipeline{AppendPipeline: p, out: make(chan hraft.AppendFuture), stop: make(chan struct{}), done: make(chan struct{})}
	go d.forward()
	return d
}

func (d *drainedPipeline) forward() {
	defer close(d.done)
	in := d.AppendPipeline.Consumer()
	var queue []hraft.AppendFuture
	for {
		var out chan hraft.AppendFuture
		var next hraft.AppendFuture
		if len(queue) > 0 {
			out, next = d.out, queue[0]
		}
		select {
		case f := <-in:
			queue = append(queue, f)
		case out <- next:
			queue[0] = nil
			queue = queue[1:]
		case <-d.stop:
			return
		}
	}
}

// Consumer returns the finished requests in the order they were sent.
func (d *drainedPipeline) Consumer() <-chan hraft.AppendFuture { return d.out }

// Close closes the wrapped pipeline and stops forwarding.
func (d *drainedPipeline) Close() error {
	err := d.AppendPipeline.Close()
	d.closeOnce.Do(func() { close(d.stop) })
	<-d.done
	return err
}
