package raft

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Tuning holds the region's timing and retention settings. The node's YAML
// config embeds it under `raft:`; every field has a default that works on
// a LAN (DefaultTuning).
type Tuning struct {
	// HeartbeatTimeout: how long a follower waits without leader contact
	// before it starts an election. Lower fails over faster; too low
	// for the network's jitter causes needless elections. Default 500ms.
	HeartbeatTimeout time.Duration `yaml:"heartbeat_timeout"`
	// ElectionTimeout: how long a candidate waits for votes before it
	// retries. Default 500ms.
	ElectionTimeout time.Duration `yaml:"election_timeout"`
	// LeaderLeaseTimeout: how long a leader keeps leading without contact
	// with a quorum before it steps down. Must not exceed HeartbeatTimeout.
	// Default 500ms, the heartbeat timeout: a shorter lease makes the
	// leader depose itself after a pause its followers tolerate. A stall
	// of the process (a busy machine; the three nodes of a dev region share
	// one) longer than the lease but shorter than the heartbeat timeout
	// then costs an election and fails the writes in flight as outcome
	// unknown, and pre-vote cannot help because the leader itself gave up.
	// etcd's check-quorum steps down after an election timeout likewise.
	LeaderLeaseTimeout time.Duration `yaml:"leader_lease_timeout"`
	// CommitTimeout: the longest a follower waits before it learns of a
	// commit when nothing else is sent. Default 5ms.
	CommitTimeout time.Duration `yaml:"commit_timeout"`
	// MaxAppendEntries: entries per AppendEntries RPC and per FSM batch.
	// Default 256.
	MaxAppendEntries int `yaml:"max_append_entries"`
	// FSMSyncInterval: how often the state file is flushed and synced to
	// disk. Each FSM batch is applied into the file's open batch
	// transaction (storage.Store.ApplyBatch: readers see it at once), which
	// the flush commits without fsync, because the Raft log (fsynced on
	// every append, on a quorum, before a write is acknowledged) is the
	// durable record and a restart replays it from the file's applied
	// index; flushing and syncing on an interval, as etcd's backend does,
	// takes a commit and two fsyncs per batch off every node. Longer
	// intervals flush and sync less often, each writing more while applies
	// wait for it. 0 commits every batch with fsync (before issue 20).
	// Default 100ms.
	FSMSyncInterval time.Duration `yaml:"fsm_sync_interval"`
	// FSMSyncEntries: applied entries that trigger a sync before
	// FSMSyncInterval ends. Default 10000.
	FSMSyncEntries int `yaml:"fsm_sync_entries"`
	// SnapshotInterval: how often the node checks whether to snapshot.
	// Default 2m.
	SnapshotInterval time.Duration `yaml:"snapshot_interval"`
	// SnapshotThreshold: log entries since the last snapshot that trigger
	// the next one. Default 8192.
	SnapshotThreshold uint64 `yaml:"snapshot_threshold"`
	// TrailingLogs: entries kept in the log after a snapshot, so a briefly
	// lagging follower catches up from the log instead of a snapshot.
	// Default 10240.
	TrailingLogs uint64 `yaml:"trailing_logs"`
	// SnapshotsRetained: snapshot files kept on disk. Default 2.
	SnapshotsRetained int `yaml:"snapshots_retained"`
	// ServerStabilization: how long a new non-voter must stay healthy before
	// autopilot promotes it to voter. Default 10s.
	ServerStabilization time.Duration `yaml:"server_stabilization"`
	// DeadServerGrace: how long a server must be failed or departed in
	// gossip before autopilot removes it from the Raft configuration, so a
	// restart within it keeps the server's seat. Default 2m.
	DeadServerGrace time.Duration `yaml:"dead_server_grace"`
	// MinQuorum: autopilot never removes a dead server if that would leave
	// fewer voters than this. Default 3 (0 when BootstrapExpect is 1).
	MinQuorum int `yaml:"min_quorum"`
}

// DefaultTuning returns settings tuned for a region on one LAN.
func DefaultTuning() Tuning {
	return Tuning{
		HeartbeatTimeout:    500 * time.Millisecond,
		ElectionTimeout:     500 * time.Millisecond,
		LeaderLeaseTimeout:  500 * time.Millisecond,
		CommitTimeout:       5 * time.Millisecond,
		MaxAppendEntries:    256,
		FSMSyncInterval:     100 * time.Millisecond,
		FSMSyncEntries:      10000,
		SnapshotInterval:    2 * time.Minute,
		SnapshotThreshold:   8192,
		TrailingLogs:        10240,
		SnapshotsRetained:   2,
		ServerStabilization: 10 * time.Second,
		DeadServerGrace:     2 * time.Minute,
		MinQuorum:           3,
	}
}

// Validate rejects out-of-range and conflicting settings, naming the field.
func (t Tuning) Validate() error {
	switch {
	case t.HeartbeatTimeout < 50*time.Millisecond:
		return fmt.Errorf("raft.heartbeat_timeout %v is below 50ms", t.HeartbeatTimeout)
	case t.ElectionTimeout < t.HeartbeatTimeout:
		return fmt.Errorf("raft.election_timeout %v must be at least raft.heartbeat_timeout %v", t.ElectionTimeout, t.HeartbeatTimeout)
	case t.LeaderLeaseTimeout <= 0 || t.LeaderLeaseTimeout > t.HeartbeatTimeout:
		return fmt.Errorf("raft.leader_lease_timeout %v must be in (0, heartbeat_timeout %v]", t.LeaderLeaseTimeout, t.HeartbeatTimeout)
	case t.LeaderLeaseTimeout < 5*time.Millisecond:
		return fmt.Errorf("raft.leader_lease_timeout %v is below 5ms", t.LeaderLeaseTimeout)
	case t.CommitTimeout < time.Millisecond:
		return fmt.Errorf("raft.commit_timeout %v is below 1ms", t.CommitTimeout)
	case t.MaxAppendEntries < 1 || t.MaxAppendEntries > 1024:
		return fmt.Errorf("raft.max_append_entries %d must be in 1..1024", t.MaxAppendEntries)
	case t.FSMSyncInterval < 0 || (t.FSMSyncInterval > 0 && t.FSMSyncInterval < time.Millisecond) || t.FSMSyncInterval > time.Minute:
		return fmt.Errorf("raft.fsm_sync_interval %v must be 0 (sync every batch) or in 1ms..1m", t.FSMSyncInterval)
	case t.FSMSyncInterval > 0 && t.FSMSyncEntries < 1:
		return fmt.Errorf("raft.fsm_sync_entries %d must be at least 1", t.FSMSyncEntries)
	case t.SnapshotInterval < 5*time.Millisecond:
		return fmt.Errorf("raft.snapshot_interval %v is below 5ms", t.SnapshotInterval)
	case t.SnapshotThreshold < 1:
		return errors.New("raft.snapshot_threshold must be at least 1")
	case t.SnapshotsRetained < 1:
		return errors.New("raft.snapshots_retained must be at least 1")
	case t.ServerStabilization < 0:
		return errors.New("raft.server_stabilization must not be negative")
	case t.DeadServerGrace < time.Second:
		return fmt.Errorf("raft.dead_server_grace %v is below 1s", t.DeadServerGrace)
	case t.MinQuorum < 0:
		return errors.New("raft.min_quorum must not be negative")
	}
	return nil
}

// Config wires one node's Region. Addresses are host:port; advertise
// addresses must be concrete IPs peers can reach.
type Config struct {
	Region  string // region name; every node of a region must agree
	NodeID  string // this node's stable, unique id (Raft server id, gossip name)
	DataDir string // holds raft/ (log + snapshots); the state store is passed in

	RaftBind        string   // listen address for Raft and node RPCs
	RaftAdvertise   string   // address peers dial; defaults to the bound address
	GossipBind      string   // listen address for memberlist (TCP and UDP)
	GossipAdvertise string   // address peers gossip to; defaults to the bound address
	Seeds           []string // gossip addresses of any existing nodes
	GossipKey       []byte   // 16, 24 or 32 bytes; gossip is encrypted with it

	// BootstrapExpect is how many nodes form a new region. A node with no
	// Raft state bootstraps once it sees exactly this many nodes by gossip,
	// none of them already in a region, all of them passing mutual TLS.
	BootstrapExpect int

	// TLS is the node-to-node mutual-TLS configuration (node/pki.NodeTLS).
	TLS *tls.Config
	// PeerID returns the node id a peer's verified certificate names
	// (node/pki.NodeID). Before adding or bootstrapping with a node, and
	// when asking it for stats, the region checks the certificate at its
	// Raft address names the id it claims in gossip, so one node cannot
	// pose as another or move another's address.
	PeerID func(leaf *x509.Certificate) (string, error)

	// Meta is advertised to peers by gossip (the node's API URL, later the
	// agent and federation endpoints).
	Meta NodeMeta
	// NodeHTTP, if set, serves HTTP from the region's other nodes on the
	// node port (connection kind 'H', mutual TLS; PeerNode names the
	// caller): the telemetry remote-read. Nil refuses such connections.
	NodeHTTP http.Handler

	Tuning Tuning

	// Handlers apply custom command types (FirstCustomCommand and above).
	Handlers map[CommandType]HandlerFunc

	// Auditor records the audit entry of a CmdAudited command in the same
	// transaction as the change. Nil refuses audited commands.
	Auditor Auditor

	// OnLeaderChange is called with the new leader's id ("" while there is
	// none) each time this node sees the leader change. It runs on the
	// region's observer goroutine and must not block.
	OnLeaderChange func(leaderID string)

	Logger     *slog.Logger
	Registerer prometheus.Registerer

	// walSegmentSize overrides raft-wal's 64 MiB segments (tests only: the
	// WAL drops compacted entries a whole segment at a time).
	walSegmentSize int
}

func (c *Config) validate() error {
	switch {
	case c.Region == "":
		return errors.New("region name is required")
	case c.NodeID == "":
		return errors.New("node id is required")
	case c.DataDir == "":
		return errors.New("data dir is required")
	case c.TLS == nil:
		return errors.New("node TLS config is required")
	case c.PeerID == nil:
		return errors.New("peer identity check (PeerID) is required")
	case c.BootstrapExpect < 1:
		return fmt.Errorf("bootstrap_expect %d must be at least 1", c.BootstrapExpect)
	}
	switch len(c.GossipKey) {
	case 16, 24, 32:
	default:
		return fmt.Errorf("gossip key is %d bytes; it must be 16, 24 or 32 (generate one with `outpost keygen`)", len(c.GossipKey))
	}
	for t := range c.Handlers {
		if t < FirstCustomCommand {
			return fmt.Errorf("handler for command type %d collides with a built-in type (use %d and above)", t, FirstCustomCommand)
		}
	}
	for name, a := range map[string]string{"raft bind": c.RaftBind, "gossip bind": c.GossipBind} {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("%s address %q: %w", name, a, err)
		}
	}
	for name, a := range map[string]string{"raft advertise": c.RaftAdvertise, "gossip advertise": c.GossipAdvertise} {
		if a == "" {
			continue
		}
		if err := concreteAddr(a); err != nil {
			return fmt.Errorf("%s address %q: %w", name, a, err)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	return c.Tuning.Validate()
}

// concreteAddr checks that a is an IP:port with a specified IP (0.0.0.0
// cannot be dialled by peers) and a non-zero port.
func concreteAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return errors.New("host must be an IP address")
	}
	if ip.IsUnspecified() {
		return errors.New("an unspecified address cannot be advertised; set the advertise address")
	}
	if port == "0" || port == "" {
		return errors.New("port must be set")
	}
	return nil
}
