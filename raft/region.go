package raft

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	hraft "github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/outpost-mesh/outpost/internal/hclogslog"
	"github.com/outpost-mesh/outpost/storage"
)

// Errors callers match with errors.Is.
var (
	// ErrNoLeader means the region has no leader to take a write; retry
	// after an election (about a second).
	ErrNoLeader = errors.New("region has no leader")
	// ErrOutcomeUnknown means a write was sent but leadership changed before
	// its result came back: it may or may not have committed.
	ErrOutcomeUnknown = errors.New("write outcome unknown")
	// ErrShutdown means the region is shutting down.
	ErrShutdown = errors.New("region is shutting down")
	// ErrCorruptLog means the Raft log on disk cannot be read.
	ErrCorruptLog = errors.New("raft log unreadable")
	// ErrForeignDataDir means the data dir belongs to another node.
	ErrForeignDataDir = errors.New("data dir belongs to another node")
)

// Region is this node's membership in its region's Raft group.
type Region struct {
	// metaMu serialises SetMeta: memberlist's UpdateNode is not safe to
	// call from two goroutines at once (the discovery loop and a node
	// component both advertise; the race detector caught them).
	metaMu  sync.Mutex
	cfg     Config
	logger  *slog.Logger
	store   *storage.Store
	fsm     *fsm
	wal     *wal.WAL
	walMeta *metadb.BoltMetaDB
	snaps   *hraft.FileSnapshotStore
	stream  *streamLayer
	trans   *hraft.NetworkTransport
	raft    *hraft.Raft
	ml      *memberlist.Memberlist
	members *members
	meta    *metaDelegate
	ap      *autopilot.Autopilot
	metrics *metrics
	refused *onceLog
	// nodeHTTP serves Config.NodeHTTP (nil without one).
	nodeHTTP *nodeHTTP

	raftAddr   string
	gossipAddr string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// opened closes once Open has set every field: the node port accepts
	// before Raft exists, and its RPCs must not see a half-built Region.
	opened chan struct{}

	mu          sync.Mutex
	missingFrom map[string]time.Time // raft servers gossip has not seen, since when
	closed      bool
}

// logCacheEntries is how many of the newest log entries are kept in memory
// (hashicorp/raft's LogCache), at least: twice MaxAppendEntries' default,
// as Consul keeps 512, and twice raft.max_append_entries when it is set
// higher, so one batch never evicts its own start.
const logCacheEntries = 512

// Open starts this node's part of the region: it opens the Raft log in
// cfg.DataDir, binds the Raft and gossip ports, joins the seeds, and
// bootstraps or waits to be added as Config.BootstrapExpect says. The
// caller owns store and closes it after Shutdown.
func Open(cfg Config, store *storage.Store) (_ *Region, err error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("region config: %w", err)
	}
	r := &Region{cfg: cfg, logger: cfg.Logger, store: store, refused: newOnceLog(), missingFrom: map[string]time.Time{}, opened: make(chan struct{})}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if err := claimDataDir(cfg.DataDir, cfg.NodeID); err != nil {
		return nil, err
	}
	raftDir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(filepath.Join(raftDir, "wal"), 0o700); err != nil {
		return nil, fmt.Errorf("create raft dir: %w", err)
	}
	hl := func(name string, lvl hclog.Level) hclog.Logger { return hclogslog.New(r.logger, name, lvl) }
	// raft-wal's Close leaves its bbolt metadata file open (and locked), so
	// the region owns the meta store and closes it after the WAL.
	r.walMeta = &metadb.BoltMetaDB{}
	walDir, walLog := filepath.Join(raftDir, "wal"), wal.WithLogger(hl("raft-wal", hclog.Info))
	if cfg.walSegmentSize > 0 {
		r.wal, err = wal.Open(walDir, walLog, wal.WithMetaStore(r.walMeta), wal.WithSegmentSize(cfg.walSegmentSize))
	} else {
		r.wal, err = wal.Open(walDir, walLog, wal.WithMetaStore(r.walMeta))
	}
	if err != nil {
		return nil, fmt.Errorf("open raft log in %s: %w (if the data dir is damaged, move it aside: the node resyncs from its region)", raftDir, err)
	}
	r.snaps, err = hraft.NewFileSnapshotStoreWithLogger(raftDir, cfg.Tuning.SnapshotsRetained, hl("raft-snapshot", hclog.Info))
	if err != nil {
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}

	r.fsm = newFSM(store, cfg.Handlers, cfg.Auditor, r.logger, cfg.Tuning)
	if r.metrics, err = newMetrics(cfg.Registerer, r); err != nil {
		return nil, err
	}
	r.fsm.onApply = r.metrics.observeBatch
	r.fsm.onSync = r.metrics.observeSync
	if err := r.checkState(); err != nil {
		return nil, err
	}
	if r.fsm.syncEvery > 0 {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.fsm.syncLoop(r.ctx)
		}()
	}

	ln, err := net.Listen("tcp", cfg.RaftBind)
	if err != nil {
		return nil, bindError("raft.bind", cfg.RaftBind, err)
	}
	r.raftAddr = cfg.RaftAdvertise
	if r.raftAddr == "" {
		r.raftAddr = ln.Addr().String()
		if err := concreteAddr(r.raftAddr); err != nil {
			ln.Close()
			return nil, fmt.Errorf("raft.bind %s: %w", cfg.RaftBind, err)
		}
	}
	adv, _ := net.ResolveTCPAddr("tcp", r.raftAddr)
	r.stream = newStreamLayer(ln, adv, cfg.TLS, r.logger.With("component", "raft-tls"))
	r.stream.onTLSFail = r.metrics.tlsFailures.Inc
	r.stream.peerID = func(st *tls.ConnectionState) string {
		if len(st.PeerCertificates) == 0 {
			return ""
		}
		id, _ := cfg.PeerID(st.PeerCertificates[0])
		return id
	}
	if cfg.NodeHTTP != nil {
		r.nodeHTTP = newNodeHTTP(cfg.NodeHTTP, adv, r.logger.With("component", "node-http"))
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			_ = r.nodeHTTP.srv.Serve(r.nodeHTTP)
		}()
	}
	r.stream.serve(r.serveRPC)
	// MaxRPCsInFlight 1 turns pipelined replication off: it measured no
	// gain here (ARCHITECTURE.md, "Replication: pipelining"; raft#541
	// found the same beside batching). The transport Raft gets is wrapped
	// (pipelineTransport) so that turning it on cannot hit raft#612's hang.
	r.trans = hraft.NewNetworkTransportWithConfig(&hraft.NetworkTransportConfig{
		Stream: r.stream, MaxPool: 4, MaxRPCsInFlight: 1, Timeout: 10 * time.Second, Logger: hl("raft-net", hclog.Warn),
	})

	existing, err := hraft.HasExistingState(r.wal, r.wal, r.snaps)
	if err != nil {
		return nil, fmt.Errorf("read raft state: %w", err)
	}
	rc := r.raftConfig()
	rc.Logger = hl("raft", hclog.Info)
	// The newest entries are served from memory: replicating a batch reads
	// each of its entries back (and the one before it), which from raft-wal
	// is a pread and a decode per entry on the path of every commit. Only
	// entries raft-wal has stored (fsynced) enter the cache, and any
	// DeleteRange (compaction, a deposed leader's truncated tail) empties
	// it. +25-30% writes/s at 64 writers (BENCHMARKS.md, issue 20).
	logs, err := hraft.NewLogCache(max(logCacheEntries, 2*cfg.Tuning.MaxAppendEntries), &logGuard{LogStore: r.wal, fsm: r.fsm, logger: r.logger})
	if err != nil {
		return nil, err
	}
	r.raft, err = newRaft(rc, r.fsm, logs, r.wal, r.snaps, &pipelineTransport{NetworkTransport: r.trans})
	if err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}

	r.meta = &metaDelegate{meta: cfg.Meta}
	r.meta.set(func(m *NodeMeta) { m.Region, m.RaftAddr, m.InRegion = cfg.Region, r.raftAddr, existing })
	r.members = newMembers(cfg.NodeID)
	if err := r.startGossip(); err != nil {
		return nil, err
	}

	close(r.opened)
	r.wg.Add(3)
	go r.watchLeadership()
	go r.discoveryLoop()
	go r.observe()
	r.logger.Info("node started", "region", cfg.Region, "raft_addr", r.raftAddr,
		"gossip_addr", r.gossipAddr, "existing_state", existing, "applied_index", r.fsm.applied.Load())
	return r, nil
}

// newRaft starts hashicorp/raft. raft-wal v0.4.0 left a sealed segment
// without its index block after Raft truncated a log suffix (a deposed
// leader's unreplicated entries; hashicorp/raft-wal#31, fixed in the v0.4.1
// we use), and NewRaft panics reading such a segment from an older data dir. Turn that into an error the operator can
// act on instead of a crash of the whole process.
func newRaft(rc *hraft.Config, f *fsm, logs hraft.LogStore, stable hraft.StableStore, snaps hraft.SnapshotStore, trans hraft.Transport) (r *hraft.Raft, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: reading the Raft log failed: %v (a data dir written by raft-wal v0.4.0 after a log truncation can hold a sealed segment without its index, hashicorp/raft-wal#31; move this node's data dir aside and restart it: the node resyncs from its region)", ErrCorruptLog, p)
		}
	}()
	return hraft.NewRaft(rc, f, logs, stable, snaps, trans)
}

// checkState logs a state file storage.Open rebuilt and refuses a start
// whose state file, snapshots and log do not meet (durability.go).
func (r *Region) checkState() error {
	var snapIndex uint64
	if snaps, err := r.snaps.List(); err == nil && len(snaps) > 0 {
		snapIndex = snaps[0].Index
	}
	first, err := r.wal.FirstIndex()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorruptLog, err)
	}
	last, err := r.wal.LastIndex()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorruptLog, err)
	}
	logRecovery(r.logger, r.store.Recovered(), snapIndex, first, last)
	fileIndex := r.store.LastApplied()
	if from := max(fileIndex, snapIndex); r.store.Recovered() == nil && last > from {
		// After a kill, the batches applied since the last flush (and any
		// entries committed but not applied) come back from the log.
		r.logger.Info("state file is behind the Raft log: replaying the entries after its index once they are committed",
			"state_index", fileIndex, "snapshot_index", snapIndex, "log_last_index", last, "entries", last-from)
	}
	return checkCoverage(fileIndex, snapIndex, first)
}

// claimDataDir records which node owns dataDir on first use and refuses a
// data dir that another node id created.
func claimDataDir(dir, nodeID string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	p := filepath.Join(dir, "node-id")
	b, err := os.ReadFile(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return os.WriteFile(p, []byte(nodeID+"\n"), 0o600)
	case err != nil:
		return fmt.Errorf("read %s: %w", p, err)
	}
	if got := strings.TrimSpace(string(b)); got != nodeID {
		return fmt.Errorf("%w: %s was created by node %q, this node is %q (use that node's id or another data dir)", ErrForeignDataDir, dir, got, nodeID)
	}
	return nil
}

func bindError(field, addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		// Wrap the errno itself: callers (a dev node restarting on its
		// old ports) match it with errors.Is; its text is the same.
		return fmt.Errorf("%s %s: %w; stop the process using it or choose another %s", field, addr, syscall.EADDRINUSE, field)
	}
	return fmt.Errorf("%s %s: %w", field, addr, err)
}

func (r *Region) raftConfig() *hraft.Config {
	t := r.cfg.Tuning
	c := hraft.DefaultConfig()
	c.LocalID = hraft.ServerID(r.cfg.NodeID)
	c.HeartbeatTimeout = t.HeartbeatTimeout
	c.ElectionTimeout = t.ElectionTimeout
	c.LeaderLeaseTimeout = t.LeaderLeaseTimeout
	c.CommitTimeout = t.CommitTimeout
	c.MaxAppendEntries = t.MaxAppendEntries
	c.SnapshotInterval = t.SnapshotInterval
	c.SnapshotThreshold = t.SnapshotThreshold
	c.TrailingLogs = t.TrailingLogs
	// Group concurrent Applies into one log write and one fsync.
	c.BatchApplyCh = true
	// A removed node stays up so the leader can add it back when it returns.
	c.ShutdownOnRemove = false
	// The state file is durable and records its own applied index, so at
	// start Raft replays only what the file has not seen. If the file is
	// behind the newest snapshot (lost or replaced), let Raft restore it.
	c.NoSnapshotRestoreOnStart = true
	if snaps, err := r.snaps.List(); err == nil && len(snaps) > 0 && snaps[0].Index > r.store.LastApplied() {
		r.logger.Warn("state file is behind the newest snapshot; restoring from it", "file_index", r.store.LastApplied(), "snapshot_index", snaps[0].Index)
		c.NoSnapshotRestoreOnStart = false
	}
	return c
}

// TransferLeadership hands leadership to another voter and waits for it;
// ErrNotLeader-like errors come back when this node does not lead.
func (r *Region) TransferLeadership() error { return r.await(r.raft.LeadershipTransfer()) }

// Term is the current Raft term as this node knows it.
func (r *Region) Term() uint64 {
	t, _ := strconv.ParseUint(r.raft.Stats()["term"], 10, 64)
	return t
}

// VerifyLeader confirms this node is still the leader with a quorum.
func (r *Region) VerifyLeader() error { return r.await(r.raft.VerifyLeader()) }

// IsLeader reports whether this node believes it is the leader.
func (r *Region) IsLeader() bool { return r.raft.State() == hraft.Leader }

// Leader returns the current leader's id and Raft address, empty if none.
func (r *Region) Leader() (id, addr string) {
	a, i := r.raft.LeaderWithID()
	return string(i), string(a)
}

// AppliedIndex is the last index this node's FSM applied.
func (r *Region) AppliedIndex() uint64 { return r.fsm.applied.Load() }

// NodeID returns this node's id.
func (r *Region) NodeID() string { return r.cfg.NodeID }

// RaftAddr returns the address peers dial for Raft.
func (r *Region) RaftAddr() string { return r.raftAddr }

// GossipAddr returns the address peers gossip to (a seed for new nodes).
func (r *Region) GossipAddr() string { return r.gossipAddr }

// Members lists every node gossip knows of.
func (r *Region) Members() []Member { return r.members.list() }

// Snapshot forces a snapshot now (tests and operators' backups).
func (r *Region) Snapshot() error { return r.await(r.raft.Snapshot()) }

// SetMeta updates what this node advertises by gossip.
func (r *Region) SetMeta(fn func(*NodeMeta)) {
	r.metaMu.Lock()
	defer r.metaMu.Unlock()
	r.meta.set(fn)
	if r.ml != nil {
		_ = r.ml.UpdateNode(2 * time.Second)
	}
}

// Configuration returns the committed Raft server set.
func (r *Region) Configuration() ([]hraft.Server, error) {
	f := r.raft.GetConfiguration()
	if err := r.await(f); err != nil {
		return nil, err
	}
	return f.Configuration().Servers, nil
}

func (r *Region) localStats() Stats {
	s := Stats{ID: r.cfg.NodeID, RaftState: strings.ToLower(r.raft.State().String()), LastIndex: r.raft.LastIndex(), AppliedIndex: r.fsm.applied.Load(), LastContactMs: -1}
	_, id := r.raft.LeaderWithID()
	s.Leader = string(id)
	st := r.raft.Stats()
	s.Term, _ = strconv.ParseUint(st["term"], 10, 64)
	s.LastTerm, _ = strconv.ParseUint(st["last_log_term"], 10, 64)
	s.CommitIndex, _ = strconv.ParseUint(st["commit_index"], 10, 64)
	if r.raft.State() == hraft.Leader {
		s.LastContactMs = 0
	} else if lc := r.raft.LastContact(); !lc.IsZero() {
		s.LastContactMs = time.Since(lc).Milliseconds()
	}
	return s
}

// watchLeadership runs the leader's duties (autopilot, adding servers)
// for exactly as long as this node leads.
func (r *Region) watchLeadership() {
	defer r.wg.Done()
	r.ap = autopilot.New(r.raft, &apDelegate{r: r},
		autopilot.WithLogger(hclogslog.New(r.logger, "autopilot", hclog.Info)),
		autopilot.WithReconcileInterval(time.Second), autopilot.WithUpdateInterval(time.Second))
	var stop context.CancelFunc
	defer func() {
		if stop != nil {
			stop()
			<-r.ap.Stop()
		}
	}()
	for {
		select {
		case <-r.ctx.Done():
			return
		case leader := <-r.raft.LeaderCh():
			if leader && stop == nil {
				stop = r.startLeading()
				r.logger.Info("this node is now the region leader")
			} else if !leader && stop != nil {
				stop()
				<-r.ap.Stop()
				stop = nil
				r.logger.Info("this node is no longer the region leader")
			}
		}
	}
}

// startLeading starts autopilot under a context the caller cancels when
// leadership ends.
func (r *Region) startLeading() context.CancelFunc {
	ctx, cancel := context.WithCancel(r.ctx)
	r.ap.Start(ctx)
	return cancel
}

// observe logs leader changes as every node sees them.
func (r *Region) observe() {
	defer r.wg.Done()
	ch := make(chan hraft.Observation, 16)
	obs := hraft.NewObserver(ch, false, func(o *hraft.Observation) bool {
		_, ok := o.Data.(hraft.LeaderObservation)
		return ok
	})
	r.raft.RegisterObserver(obs)
	defer r.raft.DeregisterObserver(obs)
	for {
		select {
		case <-r.ctx.Done():
			return
		case o := <-ch:
			lo := o.Data.(hraft.LeaderObservation)
			r.metrics.leaderChanges.Inc()
			if r.cfg.OnLeaderChange != nil {
				r.cfg.OnLeaderChange(string(lo.LeaderID))
			}
			if lo.LeaderID == "" {
				r.logger.Warn("region has no leader; election under way")
			} else {
				r.logger.Info("region leader elected", "leader", string(lo.LeaderID), "leader_addr", string(lo.LeaderAddr))
			}
		}
	}
}

// slogStd returns a standard-library logger (what memberlist takes) that
// writes to l and demotes repeated warnings to debug.
func slogStd(l *slog.Logger) *log.Logger {
	return log.New(&hclogslog.Writer{L: l, RepeatWindow: 5 * time.Minute}, "", 0)
}
