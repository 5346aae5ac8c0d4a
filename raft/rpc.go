package raft

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	hraft "github.com/hashicorp/raft"
)

// Stats is one node's view of itself, served to peers over the node RPC
// port (mutual TLS): autopilot uses it to judge health, and the region
// status API shows it.
type Stats struct {
	ID            string `json:"id"`
	RaftState     string `json:"raft_state"`
	Leader        string `json:"leader"`
	Term          uint64 `json:"term"`
	LastIndex     uint64 `json:"last_index"`
	LastTerm      uint64 `json:"last_term"`
	CommitIndex   uint64 `json:"commit_index"`
	AppliedIndex  uint64 `json:"applied_index"`
	LastContactMs int64  `json:"last_contact_ms"` // -1: never; 0 on the leader
}

// maxRPCFrame caps a forwarded command or response: a KV value plus room
// for its header.
const maxRPCFrame = MaxValueLen + 4096

// Forwarded-apply response status.
const (
	applyOK        byte = 0
	applyEntryErr  byte = 1 // the entry committed; its handler returned an error
	applyNotLeader byte = 2 // nothing was appended; safe to retry elsewhere
	applyFailed    byte = 3 // the outcome is unknown (leadership lost mid-apply)
)

func (r *Region) serveRPC(kind byte, conn net.Conn) {
	if kind == connHTTP {
		r.nodeHTTP.deliver(conn)
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer conn.Close()
		select {
		case <-r.opened:
		case <-r.ctx.Done():
			return
		}
		switch kind {
		case connStats:
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			_ = json.NewEncoder(conn).Encode(r.localStats())
		case connApply:
			r.serveApply(conn)
		case connReadIndex:
			r.serveReadIndex(conn)
		}
	}()
}

func (r *Region) serveApply(conn net.Conn) {
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	cmd, err := readFrame(br)
	if err != nil {
		return
	}
	timeoutMs, err := binary.ReadUvarint(br)
	if err != nil {
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	timeout := time.Duration(timeoutMs) * time.Millisecond
	if timeout <= 0 || timeout > time.Minute {
		timeout = 10 * time.Second
	}
	status, res := applyOK, Result{}
	if r.raft.State() != hraft.Leader {
		status = applyNotLeader
	} else {
		res, err = r.applyLocal(cmd, timeout)
		switch {
		case errors.Is(err, hraft.ErrNotLeader):
			status = applyNotLeader
		case err != nil:
			status, res.Value = applyFailed, []byte(err.Error())
		case res.Err != nil:
			status, res.Value = applyEntryErr, encodeEntryError(res.Err)
		}
	}
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	bw := bufio.NewWriter(conn)
	bw.WriteByte(status)
	bw.Write(binary.AppendUvarint(nil, res.Index))
	writeFrame(bw, res.Value)
	_ = bw.Flush()
}

// forwardApply sends cmd to the leader at addr. errNotLeaderRetry means
// nothing was appended and the caller may retry.
func (r *Region) forwardApply(ctx context.Context, addr string, cmd []byte, timeout time.Duration) (Result, error) {
	conn, err := r.stream.dialKind(ctx, addr, connApply)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %v", errNotLeaderRetry, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	bw := bufio.NewWriter(conn)
	writeFrame(bw, cmd)
	bw.Write(binary.AppendUvarint(nil, uint64(timeout.Milliseconds())))
	if err := bw.Flush(); err != nil {
		// Part of the command may have reached the leader.
		return Result{}, fmt.Errorf("%w: forwarding to leader %s: %v", ErrOutcomeUnknown, addr, err)
	}
	br := bufio.NewReader(conn)
	status, err := br.ReadByte()
	if err != nil {
		return Result{}, fmt.Errorf("%w: forwarded to leader %s, no answer: %v", ErrOutcomeUnknown, addr, err)
	}
	idx, err := binary.ReadUvarint(br)
	if err != nil {
		return Result{}, fmt.Errorf("%w: forwarded to leader %s, no answer: %v", ErrOutcomeUnknown, addr, err)
	}
	val, err := readFrame(br)
	if err != nil {
		return Result{}, fmt.Errorf("%w: forwarded to leader %s, no answer: %v", ErrOutcomeUnknown, addr, err)
	}
	switch status {
	case applyOK:
		return Result{Index: idx, Value: val}, nil
	case applyEntryErr:
		return Result{Index: idx, Err: decodeEntryError(val)}, nil
	case applyNotLeader:
		return Result{}, errNotLeaderRetry
	default: // applyFailed: the leader lost leadership mid-apply
		return Result{}, fmt.Errorf("%w: leader %s: %s", ErrOutcomeUnknown, addr, val)
	}
}

var errNotLeaderRetry = errors.New("not the leader")

// fetchStats asks the node at addr for its Stats over mutual TLS, first
// checking that its certificate names node wantID.
func (r *Region) fetchStats(ctx context.Context, addr, wantID string) (Stats, error) {
	conn, err := r.stream.dialKind(ctx, addr, connStats)
	if err != nil {
		return Stats{}, err
	}
	defer conn.Close()
	if err := r.checkPeer(conn, wantID); err != nil {
		return Stats{}, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	var s Stats
	if err := json.NewDecoder(io.LimitReader(conn, 64<<10)).Decode(&s); err != nil {
		return Stats{}, fmt.Errorf("stats from %s: %w", addr, err)
	}
	return s, nil
}

// ErrWrongNode means the certificate at an address names another node
// than the one gossip advertised there.
var ErrWrongNode = errors.New("peer certificate names another node")

func (r *Region) checkPeer(conn net.Conn, wantID string) error {
	tc, ok := conn.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		return errors.New("peer connection is not TLS")
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return errors.New("peer presented no certificate")
	}
	got, err := r.cfg.PeerID(certs[0])
	if err != nil {
		return err
	}
	if got != wantID {
		return fmt.Errorf("%w: %s presents a certificate for %q, gossip says %q", ErrWrongNode, conn.RemoteAddr(), got, wantID)
	}
	return nil
}

func writeFrame(w *bufio.Writer, b []byte) {
	w.Write(binary.AppendUvarint(nil, uint64(len(b))))
	w.Write(b)
}

func readFrame(r *bufio.Reader) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > maxRPCFrame {
		return nil, fmt.Errorf("frame of %d bytes exceeds %d", n, maxRPCFrame)
	}
	b := make([]byte, n)
	_, err = io.ReadFull(r, b)
	return b, err
}

// serveReadIndex answers a follower's read-index request: confirm
// leadership with a quorum, wait until the FSM has applied everything
// committed, and return that index.
func (r *Region) serveReadIndex(conn net.Conn) {
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if r.raft.State() != hraft.Leader {
		conn.Write([]byte{applyNotLeader})
		return
	}
	if err := r.VerifyLeader(); err != nil {
		conn.Write([]byte{applyNotLeader})
		return
	}
	if err := r.Barrier(4 * time.Second); err != nil {
		conn.Write([]byte{applyFailed})
		return
	}
	conn.Write(binary.AppendUvarint([]byte{applyOK}, r.fsm.applied.Load()))
}

func (r *Region) fetchReadIndex(ctx context.Context, addr string) (uint64, error) {
	conn, err := r.stream.dialKind(ctx, addr, connReadIndex)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	br := bufio.NewReader(conn)
	status, err := br.ReadByte()
	if err != nil {
		return 0, err
	}
	if status != applyOK {
		return 0, errNotLeaderRetry
	}
	return binary.ReadUvarint(br)
}
