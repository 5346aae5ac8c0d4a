package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/drill"
	"github.com/outpost-mesh/outpost/internal/cli"
)

// eventKinds are the kinds GET /api/v1/events filters on.
var eventKinds = []string{"leader", "lease", "dispatch", "fenced"}

func dispatchesCommand(a *app) *cobra.Command {
	grp := cli.Group("dispatches <command>", "Issue, list and watch fenced dispatches",
		"  outpostctl dispatches create --kind config --selector os=linux --payload '{\"log_level\":\"debug\"}'\n  outpostctl dispatches watch --kinds lease,dispatch")
	grp.Long = `A dispatch is a fenced instruction for agents: only the node holding the
dispatch lease issues one, under the lease's token, and a deposed holder's
dispatch is refused. Region admins use the region-wide commands; with
--tenant T a command acts in tenant T's space (Operator to issue, Viewer to
list).`
	var tenant, kind, selector, payload, payloadFile, id string
	create := &cobra.Command{
		Use:   "create --kind K [--tenant T] [--selector S] [--payload JSON | --payload-file F|-] [--id ID]",
		Short: "Issue a fenced dispatch (follows the lease holder, retries through a failover)",
		Long: `Issue one dispatch and print "dispatch ID committed at index I under lease
token T (issued by N)". Any node may be at --addr: one that does not hold
the lease answers with the holder's URL, and the command sends the same
request there, once. While nobody holds the lease (a failover) it retries
with the same id for up to 10 seconds; the node applies an id once.`,
		Example: "  outpostctl dispatches create --kind config --selector os=linux --payload '{\"log_level\":\"debug\"}'\n  outpostctl dispatches create --kind probe-set --tenant acme --payload-file - < probes.json",
		RunE: func(c *cobra.Command, _ []string) error {
			given := c.Flags().Changed
			switch {
			case kind == "":
				return cli.Usagef("--kind is required: say what the dispatch is (config, probe-set, …)")
			case given("payload") && given("payload-file"):
				return cli.Usagef("give --payload or --payload-file, not both")
			case given("payload") && !json.Valid([]byte(payload)):
				return cli.Usagef("--payload is not valid JSON: %s", payload)
			}
			req := api.DispatchRequest{ID: id, Kind: kind, Selector: selector}
			if payload != "" {
				req.Payload = json.RawMessage(payload)
			}
			if payloadFile != "" {
				b, err := readPayload(payloadFile, a.stdin)
				if err != nil {
					return err
				}
				req.Payload = b
			}
			if req.ID == "" {
				req.ID = "ctl-" + randomHex(8)
			}
			return dispatchCreate(c.Context(), a.client(), &a.g, tenant, req, a.stdout, a.stderr)
		},
	}
	f := create.Flags()
	f.StringVar(&kind, "kind", "", "what the dispatch is, e.g. config or probe-set (required)")
	withTenant(create, &tenant, "issue it in tenant `T`")
	f.StringVar(&selector, "selector", "", "which agents it is for: all (default), none, or key=value terms such as os=linux,mode=ebpf")
	f.StringVar(&payload, "payload", "", "the dispatch's `JSON` payload")
	f.StringVar(&payloadFile, "payload-file", "", "read the JSON payload from this `FILE`, - for standard input")
	f.StringVar(&id, "id", "", "the dispatch `ID`: a retry with the same id is applied once (default: ctl- and random hex)")

	var after uint64
	var consistent bool
	list := &cobra.Command{
		Use:   "list [--tenant T] [--after INDEX] [--consistent]",
		Short: "Committed dispatches, in log order",
		Long: `Print committed dispatches in log order, at most 100 per call. A full page
ends with the --after value of the next one. Without --consistent the answer
is the node's own copy, which may lag a moment behind a dispatch just issued
elsewhere.`,
		Example: "  outpostctl dispatches list\n  outpostctl dispatches list --tenant acme --after 1200 --consistent",
		RunE: func(c *cobra.Command, _ []string) error {
			return dispatchList(c.Context(), a.client(), &a.g, tenant, after, consistent, a.stdout)
		},
	}
	withTenant(list, &tenant, "list tenant `T`'s dispatches")
	list.Flags().Uint64Var(&after, "after", 0, "list dispatches after this Raft `INDEX`")
	list.Flags().BoolVar(&consistent, "consistent", false, "a linearizable read, through the leader")

	var kinds string
	watch := &cobra.Command{
		Use:   "watch [--kinds leader,lease,dispatch,fenced]",
		Short: "Stream the node's events (leader, lease, dispatch, fenced) until Ctrl-C",
		Long: `Print the event stream of the node at --addr until Ctrl-C, which ends it
with exit 0: one line per event, time of day in UTC. With --json every
event as the node sent it, one per line. If the node ends the stream, the
command exits 1; read what was missed with dispatches list --after INDEX.`,
		Example: "  outpostctl dispatches watch\n  outpostctl dispatches watch --kinds lease,dispatch --json",
		RunE: func(c *cobra.Command, _ []string) error {
			if kinds != "" {
				for _, k := range strings.Split(kinds, ",") {
					if !slices.Contains(eventKinds, k) {
						return cli.Usagef("--kinds: unknown kind %q; use %s", k, strings.Join(eventKinds, ", "))
					}
				}
			}
			return watchEvents(c.Context(), a.client(), &a.g, kinds, a.stdout)
		},
	}
	watch.Flags().StringVar(&kinds, "kinds", "", "only these comma-separated event `KINDS`: leader, lease, dispatch, fenced")
	grp.AddCommand(create, list, watch)
	return grp
}

func drillCommand(a *app) *cobra.Command {
	grp := cli.Group("drill <command>", "Failover and partition drills (region admins, drills enabled)",
		"  outpostctl drill failover --mode isolate --rounds 5\n  outpostctl drill partition --node n2 --duration 15s")
	grp.Long = `Drills inject real faults into the region and measure what the fencing
promises. They need a region-admin token and drills enabled on the nodes
(drills: {enabled: true}; ` + "`outpost dev`" + ` enables them). Every drill is audited.`
	def := drill.DefaultConfig()
	var mode string
	var rounds int
	var isolateFor, restartAfter time.Duration
	failover := &cobra.Command{
		Use:   "failover [--mode transfer|isolate|stop] [--rounds N] [--isolate-for 5s] [--restart-after 2s]",
		Short: "Fail the lease holder over and time the new leader, lease and dispatch",
		Long: `Fail the dispatch lease holder over, --rounds times, under load, and report
the times from the fault to a new Raft leader, a new lease and its first
dispatch; stale dispatches the fence refused; and acknowledged writes lost.
Needs at least 3 voters. Exit 1 when a stale dispatch was accepted, a write
or committed dispatch was lost, a round was inconclusive or failed.`,
		Example: "  outpostctl drill failover\n  outpostctl drill failover --mode isolate --isolate-for 10s --rounds 5 --json",
		RunE: func(c *cobra.Command, _ []string) error {
			cl := a.client()
			cfg := drill.Config{Addr: cl.Addr, Token: cl.Token, Mode: drill.Mode(mode), Rounds: rounds,
				IsolateFor: isolateFor, RestartAfter: restartAfter, Progress: a.stderr}
			given := c.Flags().Changed
			switch {
			case cfg.Mode != drill.ModeTransfer && cfg.Mode != drill.ModeIsolate && cfg.Mode != drill.ModeStop:
				return cli.Usagef("--mode %q: use transfer, isolate or stop", mode)
			case given("isolate-for") && cfg.Mode != drill.ModeIsolate:
				return cli.Usagef("--isolate-for applies to --mode isolate only")
			case given("restart-after") && cfg.Mode != drill.ModeStop:
				return cli.Usagef("--restart-after applies to --mode stop only")
			}
			var bad *drill.ConfigError
			if err := cfg.Validate(); errors.As(err, &bad) {
				return cli.Usagef("%s", bad.Problem)
			} else if err != nil {
				return err
			}
			return drillFailover(c.Context(), cfg, &a.g, a.stdout)
		},
	}
	f := failover.Flags()
	f.StringVar(&mode, "mode", string(def.Mode), "the fault: transfer, isolate or stop")
	// Three rounds by default, so the p50/p99 mean something.
	f.IntVar(&rounds, "rounds", 3, "how many faults to inject, one after another")
	f.DurationVar(&isolateFor, "isolate-for", def.IsolateFor, "how long --mode isolate cuts the holder off")
	f.DurationVar(&restartAfter, "restart-after", def.RestartAfter, "how long --mode stop keeps the holder down")

	var node, duration string
	partition := &cobra.Command{
		Use:   "partition --node ID [--duration 10s]",
		Short: "Cut one node off its peers, watch the region, confirm it healed",
		Long: `Cut one node off its peers on the Raft port for --duration (1s to 1h, at
most the node's drills.max_duration), print about once a second what
another node reports (leader, lease holder and token, unreachable nodes),
then wait until the node follows the leader again. A node that does not
rejoin is exit 1.`,
		Example: "  outpostctl drill partition --node n2\n  outpostctl drill partition --node n1 --duration 30s --json",
		RunE: func(c *cobra.Command, _ []string) error {
			if node == "" {
				return cli.Usagef("--node is required: the node to cut off (`outpostctl status` lists them)")
			}
			d := 10 * time.Second
			if duration != "" {
				var err error
				if d, err = time.ParseDuration(duration); err != nil || d < time.Second || d > drill.MaxFault {
					return cli.Usagef("--duration %q: use a duration in [1s, %v], such as 10s", duration, drill.MaxFault)
				}
			}
			return drillPartition(c.Context(), a.client(), &a.g, node, d, a.stdout, a.stderr)
		},
	}
	partition.Flags().StringVar(&node, "node", "", "the `ID` to cut off (required)")
	partition.Flags().StringVar(&duration, "duration", "", "how long the node is cut off, 1s to 1h (default 10s)")
	grp.AddCommand(failover, partition)
	return grp
}

// readPayload reads a JSON payload from a file, or stdin for "-".
func readPayload(file string, stdin io.Reader) (json.RawMessage, error) {
	var b []byte
	var err error
	if file == "-" {
		b, err = io.ReadAll(stdin)
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the payload: %w", err)
	}
	if !json.Valid(b) {
		from := file
		if file == "-" {
			from = "stdin"
		}
		return nil, fmt.Errorf("the payload in %s is not valid JSON", from)
	}
	return json.RawMessage(b), nil
}
