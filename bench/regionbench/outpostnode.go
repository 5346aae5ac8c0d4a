package main

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/outpost-mesh/outpost/audit"
	"github.com/outpost-mesh/outpost/bench/internal/writeload"
	"github.com/outpost-mesh/outpost/internal/gcpolicy"
	"github.com/outpost-mesh/outpost/node/auditlog"
	"github.com/outpost-mesh/outpost/node/pki"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

const regionName = "bench"

// nodeEnv names the environment variable that turns this binary (or its
// test binary) into one Outpost node: its value is the node's config file.
const nodeEnv = "OUTPOST_BENCH_NODE"

// nodeMain runs a node process and exits when it ends.
func nodeMain(path string) {
	gcpolicy.Apply() // as the daemon starts
	if err := runNode(path); err != nil {
		fmt.Fprintf(os.Stderr, "outpost node: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// nodeConfig is what the benchmark hands a node process (as JSON in the
// file nodeEnv names). Every node runs in its own process, as every
// etcd member does, so neither system shares a Go runtime across nodes.
type nodeConfig struct {
	ID          string   `json:"id"`
	Dir         string   `json:"dir"`
	RaftAddr    string   `json:"raft_addr"`
	GossipAddr  string   `json:"gossip_addr"`
	Seeds       []string `json:"seeds"`
	GossipKey   string   `json:"gossip_key"` // hex
	CADir       string   `json:"ca_dir"`     // ca.crt and ca.key (pki.CA.Save)
	Expect      int      `json:"expect"`
	ControlAddr string   `json:"control_addr"` // loopback HTTP the benchmark drives the node through
	// BareFSM: writes without their audit record (-bare-fsm); by default
	// each write carries one, as the API commits it.
	BareFSM bool `json:"bare_fsm,omitempty"`
}

// nodeStatus is the node's answer to GET /status.
type nodeStatus struct {
	ID       string `json:"id"`
	Leader   bool   `json:"leader"`
	LeaderID string `json:"leader_id"`
	Applied  uint64 `json:"applied"`
}

// loadRequest asks the node to run a closed-loop write load against its
// own Region (POST /load); the node must be the leader.
type loadRequest struct {
	Run     string        `json:"run"`
	Writers int           `json:"writers"`
	Warmup  time.Duration `json:"warmup"`
	Measure time.Duration `json:"measure"`
}

// loadResult is writeload.Result on the wire.
type loadResult struct {
	Writers  int           `json:"writers"`
	Ops      int           `json:"ops"`
	Errors   int           `json:"errors"`
	FirstErr string        `json:"first_err,omitempty"`
	Elapsed  time.Duration `json:"elapsed"`
	P50      time.Duration `json:"p50"`
	P99      time.Duration `json:"p99"`
	Max      time.Duration `json:"max"`
}

func (l loadResult) result() writeload.Result {
	r := writeload.Result{Writers: l.Writers, Ops: l.Ops, Errors: l.Errors, Elapsed: l.Elapsed, P50: l.P50, P99: l.P99, Max: l.Max}
	if l.FirstErr != "" {
		r.FirstErr = errors.New(l.FirstErr)
	}
	return r
}

// runNode is the node process: it opens one Outpost node exactly as the
// daemon does (raft.Open over a storage.Store, mutual TLS, gossip) and
// serves the benchmark's control API until SIGTERM or its parent dies.
func runNode(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var c nodeConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	key, err := hex.DecodeString(c.GossipKey)
	if err != nil {
		return fmt.Errorf("gossip key: %w", err)
	}
	ca, err := pki.LoadCA(filepath.Join(c.CADir, "ca.crt"), filepath.Join(c.CADir, "ca.key"))
	if err != nil {
		return err
	}
	cert, err := ca.IssueNode(regionName, c.ID, []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		return err
	}
	store, err := storage.Open(filepath.Join(c.Dir, "state.db"), storage.Options{Region: regionName})
	if err != nil {
		return err
	}
	defer store.Close()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r, err := raft.Open(raft.Config{
		Region: regionName, NodeID: c.ID, DataDir: c.Dir,
		RaftBind: c.RaftAddr, GossipBind: c.GossipAddr, Seeds: c.Seeds,
		GossipKey: key, BootstrapExpect: c.Expect,
		TLS:    pki.NodeTLS(ca, cert, regionName),
		PeerID: func(leaf *x509.Certificate) (string, error) { return pki.NodeID(leaf, regionName) },
		Tuning: raft.DefaultTuning(), Logger: logger, Auditor: auditlog.Append,
	}, store)
	if err != nil {
		return err
	}
	defer r.Close()

	ln, err := net.Listen("tcp", c.ControlAddr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: nodeControl(r, !c.BareFSM), ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func nodeControl(r *raft.Region, audited bool) http.Handler {
	value := writeload.Value()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		id, _ := r.Leader()
		writeJSON(w, http.StatusOK, nodeStatus{ID: r.NodeID(), Leader: r.IsLeader(), LeaderID: id, Applied: r.AppliedIndex()})
	})
	mux.HandleFunc("POST /put", func(w http.ResponseWriter, req *http.Request) {
		timeout, err := time.ParseDuration(req.URL.Query().Get("timeout"))
		if err != nil {
			timeout = 10 * time.Second
		}
		ctx, cancel := context.WithTimeout(req.Context(), timeout)
		defer cancel()
		res, err := applyPut(ctx, r, []byte(req.URL.Query().Get("key")), value, audited)
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]uint64{"index": res.Index})
	})
	mux.HandleFunc("POST /load", func(w http.ResponseWriter, req *http.Request) {
		var lr loadRequest
		if err := json.NewDecoder(req.Body).Decode(&lr); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		if !r.IsLeader() {
			writeJSON(w, http.StatusConflict, map[string]string{"error": r.NodeID() + " is not the leader"})
			return
		}
		res := writeload.Run(req.Context(), writeload.Options{Writers: lr.Writers, Warmup: lr.Warmup, Measure: lr.Measure},
			func(ctx context.Context, w, seq int) error {
				_, err := applyPut(ctx, r, writeload.Key(lr.Run, w, seq), value, audited)
				return err
			})
		out := loadResult{Writers: res.Writers, Ops: res.Ops, Errors: res.Errors, Elapsed: res.Elapsed, P50: res.P50, P99: res.P99, Max: res.Max}
		if res.FirstErr != nil {
			out.FirstErr = res.FirstErr.Error()
		}
		writeJSON(w, http.StatusOK, out)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// applyPut commits one KV put through r and reports the entry's own error;
// audited, with its audit record in the same entry, as the API commits a
// write (the full FSM: the record, its tree hashes, the tenant index).
func applyPut(ctx context.Context, r *raft.Region, key, value []byte, audited bool) (raft.Result, error) {
	cmd, err := raft.KVCommand{Op: raft.KVPut, Bucket: storage.BucketKV, Key: key, Value: value}.Encode()
	if err != nil {
		return raft.Result{}, err
	}
	if audited {
		// As the API commits a write: the change and its audit record in
		// one entry.
		meta, err := audit.EncodeMeta(audit.Meta{Time: time.Now(), Node: r.NodeID(), Actor: "token:bench", Action: "kv.put", Entity: "kv/" + string(key)})
		if err != nil {
			return raft.Result{}, err
		}
		if cmd, err = raft.Audited(meta, cmd); err != nil {
			return raft.Result{}, err
		}
	}
	res, err := r.Apply(ctx, cmd)
	if err != nil {
		return res, err
	}
	if res.Err != nil {
		return res, fmt.Errorf("put %s: %w", key, res.Err)
	}
	return res, nil
}
