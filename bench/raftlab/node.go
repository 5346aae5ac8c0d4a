package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	hraft "github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	bolt "go.etcd.io/bbolt"

	"github.com/outpost-mesh/outpost/node/pki"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// variant is one configuration of the replica write path. The zero
// changes reproduce raft.Open's configuration (raft/region.go).
type variant struct {
	name  string
	note  string
	safe  bool // keeps every fsync and commits only on a durable quorum
	tweak func(*labConfig)
}

// labConfig is what a variant may change.
type labConfig struct {
	tuning     raft.Tuning
	raft       func(*hraft.Config)
	maxPool    int
	inFlight   int  // NetworkTransportConfig.MaxRPCsInFlight (raft.Open: 1); 0 = hraft default (2)
	logCache   int  // entries in an hraft.LogCache in front of raft-wal; 0 = none
	plainTCP   bool // diagnostic: no TLS between nodes
	fsmNoSync  bool // diagnostic: bbolt without fsync (NOT crash safe)
	fsmNoFLSyn bool // bbolt NoFreelistSync (still fsyncs every commit)
	gcPercent  int  // GOGC for the run; 0 keeps the process's setting
}

func defaultLabConfig() labConfig {
	return labConfig{tuning: raft.DefaultTuning(), raft: func(*hraft.Config) {}, maxPool: 4, inFlight: 1}
}

// labNode is one replica node: hashicorp/raft over raft-wal, the Outpost
// FSM logic over a bbolt state file, mutual TLS between nodes, all
// configured as raft.Open configures them.
type labNode struct {
	id     int
	raft   *hraft.Raft
	trans  *hraft.NetworkTransport
	wal    *wal.WAL
	meta   *metadb.BoltMetaDB
	fsm    *labFSM
	stream *tlsStream
}

type labCluster struct{ nodes []*labNode }

func startLab(dir string, n int, cfg labConfig, rec *recorder) (_ *labCluster, err error) {
	c := &labCluster{}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	ca, err := pki.NewCA("lab")
	if err != nil {
		return nil, err
	}
	var servers []hraft.Server
	var lns []net.Listener
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		servers = append(servers, hraft.Server{ID: hraft.ServerID(fmt.Sprint("n", i+1)), Address: hraft.ServerAddress(ln.Addr().String()), Suffrage: hraft.Voter})
	}
	for i := range n {
		nd, err := openLabNode(filepath.Join(dir, fmt.Sprint("n", i+1)), i, servers, lns[i], ca, cfg, rec)
		if err != nil {
			for _, ln := range lns[i:] {
				ln.Close()
			}
			return nil, err
		}
		c.nodes = append(c.nodes, nd)
	}
	return c, nil
}

func openLabNode(dir string, i int, servers []hraft.Server, ln net.Listener, ca *pki.CA, cfg labConfig, rec *recorder) (*labNode, error) {
	if err := os.MkdirAll(filepath.Join(dir, "raft", "wal"), 0o700); err != nil {
		return nil, err
	}
	nd := &labNode{id: i}
	quiet := hclog.New(&hclog.LoggerOptions{Level: hclog.Off, Output: os.Stderr}) // failures surface as failed writes
	nd.meta = &metadb.BoltMetaDB{}
	var err error
	nd.wal, err = wal.Open(filepath.Join(dir, "raft", "wal"), wal.WithMetaStore(nd.meta), wal.WithLogger(quiet))
	if err != nil {
		return nil, err
	}
	snaps, err := hraft.NewFileSnapshotStoreWithLogger(filepath.Join(dir, "raft"), 2, quiet)
	if err != nil {
		return nil, err
	}
	nd.fsm, err = openLabFSM(filepath.Join(dir, "state.db"), i, cfg, rec)
	if err != nil {
		return nil, err
	}
	var logs hraft.LogStore = nd.wal
	if cfg.logCache > 0 {
		if logs, err = hraft.NewLogCache(cfg.logCache, logs); err != nil {
			return nil, err
		}
	}
	logs = &tracedLogStore{LogStore: logs, node: i, rec: rec}

	var tcfg *tls.Config
	if !cfg.plainTCP {
		cert, err := ca.IssueNode("lab", string(servers[i].ID), []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
		if err != nil {
			return nil, err
		}
		tcfg = pki.NodeTLS(ca, cert, "lab")
	}
	peers := map[string]int{}
	for j, sv := range servers {
		peers[string(sv.Address)] = j
	}
	nd.stream = &tlsStream{Listener: ln, cfg: tcfg, node: i, peers: peers, rec: rec}
	nd.trans = hraft.NewNetworkTransportWithConfig(&hraft.NetworkTransportConfig{
		Stream: nd.stream, MaxPool: cfg.maxPool, MaxRPCsInFlight: cfg.inFlight, Timeout: 10 * time.Second, Logger: quiet,
	})

	// As raft/region.go's raftConfig.
	t := cfg.tuning
	rc := hraft.DefaultConfig()
	rc.LocalID = servers[i].ID
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = t.HeartbeatTimeout, t.ElectionTimeout, t.LeaderLeaseTimeout
	rc.CommitTimeout, rc.MaxAppendEntries = t.CommitTimeout, t.MaxAppendEntries
	rc.SnapshotInterval, rc.SnapshotThreshold, rc.TrailingLogs = t.SnapshotInterval, t.SnapshotThreshold, t.TrailingLogs
	rc.BatchApplyCh, rc.ShutdownOnRemove, rc.NoSnapshotRestoreOnStart = true, false, true
	rc.Logger = quiet
	cfg.raft(rc)

	nd.raft, err = hraft.NewRaft(rc, nd.fsm, logs, nd.wal, snaps, nd.trans)
	if err != nil {
		return nil, err
	}
	if err := nd.raft.BootstrapCluster(hraft.Configuration{Servers: servers}).Error(); err != nil && !errors.Is(err, hraft.ErrCantBootstrap) {
		return nil, err
	}
	return nd, nil
}

func (c *labCluster) leader(ctx context.Context) (*labNode, error) {
	for {
		for _, nd := range c.nodes {
			if nd.raft.State() == hraft.Leader {
				return nd, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no leader: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (c *labCluster) Close() {
	for _, nd := range c.nodes {
		if nd.raft != nil {
			_ = nd.raft.Shutdown().Error()
		}
		if nd.trans != nil {
			_ = nd.trans.Close()
		}
		if nd.wal != nil {
			_ = nd.wal.Close()
		}
		if nd.meta != nil {
			_ = nd.meta.Close()
		}
		if nd.fsm != nil {
			nd.fsm.close()
		}
	}
}

// tlsStream is a minimal hraft.StreamLayer: mutual TLS (or plain TCP for
// the diagnostic variant) over a loopback listener.
type tlsStream struct {
	net.Listener
	cfg   *tls.Config
	node  int
	peers map[string]int // Raft address -> node index
	rec   *recorder
}

func (s *tlsStream) Accept() (net.Conn, error) {
	c, err := s.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if s.cfg != nil {
		c = tls.Server(c, s.cfg)
	}
	return &tracedConn{Conn: c, rec: s.rec, stream: ioStream{node: s.node, peer: -1}}, nil
}

func (s *tlsStream) Dial(addr hraft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	var c net.Conn
	var err error
	if s.cfg == nil {
		c, err = d.Dial("tcp", string(addr))
	} else {
		c, err = (&tls.Dialer{NetDialer: d, Config: s.cfg}).Dial("tcp", string(addr))
	}
	if err != nil {
		return nil, err
	}
	return &tracedConn{Conn: c, rec: s.rec, stream: ioStream{node: s.node, peer: s.peers[string(addr)]}}, nil
}

// labFSM applies entries exactly as Outpost's FSM does (raft/fsm.go: one
// bbolt transaction per batch, committed without fsync and synced every
// fsm_sync_interval, KV puts decoded with raft.DecodeKV, the last applied
// index written in the same transaction). By default it uses the
// real storage.Store; the bbolt-option variants open bbolt directly with
// the same layout.
type labFSM struct {
	node  int
	rec   *recorder
	store *storage.Store
	db    *bolt.DB
	// syncEvery > 0: batches go into the store's batch transaction, and
	// the file is flushed and synced on this interval, as raft.Open's FSM
	// does (fsm_sync_interval).
	syncEvery time.Duration
	stop      chan struct{}
	stopped   chan struct{}
}

var _ hraft.BatchingFSM = (*labFSM)(nil)

func openLabFSM(path string, node int, cfg labConfig, rec *recorder) (*labFSM, error) {
	f := &labFSM{node: node, rec: rec}
	if !cfg.fsmNoSync && !cfg.fsmNoFLSyn {
		s, err := storage.Open(path, storage.Options{Region: "lab"})
		f.store = s
		if err == nil && cfg.tuning.FSMSyncInterval > 0 {
			f.syncEvery, f.stop, f.stopped = cfg.tuning.FSMSyncInterval, make(chan struct{}), make(chan struct{})
			go f.syncLoop()
		}
		return f, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, InitialMmapSize: storage.InitialMmapSize, NoSync: cfg.fsmNoSync, NoFreelistSync: cfg.fsmNoFLSyn})
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{[]byte("meta"), storage.BucketKV} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	f.db = db
	return f, err
}

// syncLoop syncs the state file every syncEvery, as raft's fsm.syncLoop.
func (f *labFSM) syncLoop() {
	defer close(f.stopped)
	t := time.NewTicker(f.syncEvery)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
			t0 := time.Now()
			if _, err := f.store.Sync(); err != nil {
				panic(fmt.Sprintf("raftlab: sync failed: %v", err))
			}
			f.rec.sync(f.node, t0, time.Now())
		}
	}
}

func (f *labFSM) close() {
	if f.stop != nil {
		close(f.stop)
		<-f.stopped
	}
	if f.store != nil {
		f.store.Close()
	}
	if f.db != nil {
		f.db.Close()
	}
}

func (f *labFSM) Apply(l *hraft.Log) any { return f.ApplyBatch([]*hraft.Log{l})[0] }

func (f *labFSM) ApplyBatch(logs []*hraft.Log) []any {
	t0 := time.Now()
	out := make([]any, len(logs))
	var err error
	if f.store != nil {
		commit := f.store.Update
		if f.syncEvery > 0 {
			commit = f.store.ApplyBatch
		}
		err = commit(func(tx *storage.Tx) error {
			last := tx.LastApplied()
			for i, l := range logs {
				out[i] = raft.Result{Index: l.Index}
				if l.Index <= last {
					continue
				}
				if l.Type == hraft.LogCommand {
					out[i] = applyKV(l, tx.Put)
				}
				last = l.Index
			}
			return tx.SetLastApplied(last)
		})
	} else {
		err = f.db.Update(func(tx *bolt.Tx) error {
			kv, meta := tx.Bucket(storage.BucketKV), tx.Bucket([]byte("meta"))
			var last uint64
			for i, l := range logs {
				out[i] = raft.Result{Index: l.Index}
				if l.Type == hraft.LogCommand {
					out[i] = applyKV(l, func(_, k, v []byte) error { return kv.Put(k, v) })
				}
				last = l.Index
			}
			return meta.Put([]byte("last_applied"), fmt.Append(nil, last))
		})
	}
	if err != nil {
		panic(fmt.Sprintf("raftlab: FSM commit failed: %v", err))
	}
	f.rec.apply(f.node, logs, t0, time.Now())
	return out
}

func applyKV(l *hraft.Log, put func(bucket, key, value []byte) error) raft.Result {
	if len(l.Data) == 0 || raft.CommandType(l.Data[0]) != raft.CmdKV {
		return raft.Result{Index: l.Index, Err: raft.ErrBadCommand}
	}
	c, err := raft.DecodeKV(l.Data[1:])
	if err == nil {
		err = put(c.Bucket, c.Key, c.Value)
	}
	return raft.Result{Index: l.Index, Err: err}
}

// Snapshot syncs, then pins a read transaction, as Outpost's FSM does.
func (f *labFSM) Snapshot() (hraft.FSMSnapshot, error) {
	if f.store != nil {
		if _, err := f.store.Sync(); err != nil {
			return nil, err
		}
		sn, err := f.store.Snapshot()
		if err != nil {
			return nil, err
		}
		return labSnapshot{write: sn.WriteTo, release: sn.Release}, nil
	}
	tx, err := f.db.Begin(false)
	if err != nil {
		return nil, err
	}
	return labSnapshot{write: tx.WriteTo, release: func() { _ = tx.Rollback() }}, nil
}

// Restore is never needed: lab clusters start empty and no node falls
// behind the trailing logs.
func (f *labFSM) Restore(rc io.ReadCloser) error {
	rc.Close()
	return errors.New("raftlab: restore is not supported")
}

type labSnapshot struct {
	write   func(io.Writer) (int64, error)
	release func()
}

func (s labSnapshot) Persist(sink hraft.SnapshotSink) error {
	if _, err := s.write(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s labSnapshot) Release() { s.release() }
