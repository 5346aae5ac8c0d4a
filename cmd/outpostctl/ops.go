package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/drill"
)

// opsOpts are the flags of the dispatch and drill commands (--tenant and
// --duration are shared with the account commands: accountOpts).
type opsOpts struct {
	kind         string        // dispatches create
	selector     string        // dispatches create
	payload      string        // dispatches create: inline JSON
	payloadFile  string        // dispatches create: a file, or - for stdin
	id           string        // dispatches create
	kinds        string        // dispatches watch
	after        uint64        // dispatches list
	mode         string        // drill failover
	rounds       int           // drill failover
	isolateFor   time.Duration // drill failover --mode isolate
	restartAfter time.Duration // drill failover --mode stop
	node         string        // drill partition
}

func (o *opsOpts) register(fs *flag.FlagSet) {
	def := drill.DefaultConfig()
	fs.StringVar(&o.kind, "kind", "", "what the dispatch is, e.g. config or probe-set (dispatches create)")
	fs.StringVar(&o.selector, "selector", "", "which agents it is for, e.g. os=linux (dispatches create)")
	fs.StringVar(&o.payload, "payload", "", "the dispatch's JSON payload (dispatches create)")
	fs.StringVar(&o.payloadFile, "payload-file", "", "read the JSON payload from a file, - for stdin (dispatches create)")
	fs.StringVar(&o.id, "id", "", "dispatch id; a retry with the same id is applied once (default: random) (dispatches create)")
	fs.StringVar(&o.kinds, "kinds", "", "comma-separated event kinds: leader, lease, dispatch, fenced (dispatches watch)")
	fs.Uint64Var(&o.after, "after", 0, "list dispatches after this Raft index (dispatches list)")
	fs.StringVar(&o.mode, "mode", string(def.Mode), "the fault: transfer, isolate or stop (drill failover)")
	// Three rounds by default, so the p50/p99 mean something.
	fs.IntVar(&o.rounds, "rounds", 3, "how many faults to inject, one after another (drill failover)")
	fs.DurationVar(&o.isolateFor, "isolate-for", def.IsolateFor, "how long --mode isolate cuts the holder off (drill failover)")
	fs.DurationVar(&o.restartAfter, "restart-after", def.RestartAfter, "how long --mode stop keeps the holder down (drill failover)")
	fs.StringVar(&o.node, "node", "", "the node to cut off (drill partition)")
}

// isOpsCommand reports whether runOps owns cmd.
func isOpsCommand(cmd string) bool {
	word, _, _ := strings.Cut(cmd, " ")
	return word == "dispatches" || word == "drill"
}

// eventKinds are the kinds GET /api/v1/events filters on.
var eventKinds = []string{"leader", "lease", "dispatch", "fenced"}

// runOps checks and runs the dispatch and drill commands.
func runOps(ctx context.Context, c *client, g *globals, o opsOpts, acct accountOpts, consistent bool, l cmdline) error {
	switch l.name {
	case "dispatches watch":
		const form = "dispatches watch [--kinds leader,lease,dispatch,fenced]"
		if err := l.check(form, 0, 0); err != nil {
			return err
		}
		if o.kinds != "" {
			for _, k := range strings.Split(o.kinds, ",") {
				if !slices.Contains(eventKinds, k) {
					return l.usage(form, "--kinds: unknown kind %q; use %s", k, strings.Join(eventKinds, ", "))
				}
			}
		}
		return watchEvents(ctx, c, g, o.kinds, l.stdout)

	case "dispatches create":
		const form = "dispatches create --kind K [--tenant T] [--selector S] [--payload JSON | --payload-file F|-] [--id ID]"
		if err := l.check(form, 0, 0); err != nil {
			return err
		}
		switch {
		case o.kind == "":
			return l.usage(form, "--kind is required: say what the dispatch is (config, probe-set, …)")
		case l.given["payload"] && l.given["payload-file"]:
			return l.usage(form, "give --payload or --payload-file, not both")
		case l.given["payload"] && !json.Valid([]byte(o.payload)):
			return l.usage(form, "--payload is not valid JSON: %s", o.payload)
		}
		req := api.DispatchRequest{ID: o.id, Kind: o.kind, Selector: o.selector}
		if o.payload != "" {
			req.Payload = json.RawMessage(o.payload)
		}
		if o.payloadFile != "" {
			b, err := readPayload(o.payloadFile, l.stdin)
			if err != nil {
				return err
			}
			req.Payload = b
		}
		if req.ID == "" {
			req.ID = "ctl-" + randomHex(8)
		}
		return dispatchCreate(ctx, c, g, acct.tenant, req, l.stdout, l.stderr)

	case "dispatches list":
		if err := l.check("dispatches list [--tenant T] [--after INDEX] [--consistent]", 0, 0); err != nil {
			return err
		}
		return dispatchList(ctx, c, g, acct.tenant, o.after, consistent, l.stdout)

	case "drill failover":
		const form = "drill failover [--mode transfer|isolate|stop] [--rounds N] [--isolate-for 5s] [--restart-after 2s]"
		if err := l.check(form, 0, 0); err != nil {
			return err
		}
		cfg := drill.Config{Addr: c.Addr, Token: c.Token, Mode: drill.Mode(o.mode), Rounds: o.rounds,
			IsolateFor: o.isolateFor, RestartAfter: o.restartAfter, Progress: l.stderr}
		switch {
		case cfg.Mode != drill.ModeTransfer && cfg.Mode != drill.ModeIsolate && cfg.Mode != drill.ModeStop:
			return l.usage(form, "--mode %q: use transfer, isolate or stop", o.mode)
		case l.given["isolate-for"] && cfg.Mode != drill.ModeIsolate:
			return l.usage(form, "--isolate-for applies to --mode isolate only")
		case l.given["restart-after"] && cfg.Mode != drill.ModeStop:
			return l.usage(form, "--restart-after applies to --mode stop only")
		}
		var bad *drill.ConfigError
		if err := cfg.Validate(); errors.As(err, &bad) {
			return l.usage(form, "%s", bad.Problem)
		} else if err != nil {
			return err
		}
		return drillFailover(ctx, cfg, g, l.stdout)

	case "drill partition":
		const form = "drill partition --node ID [--duration 10s]"
		if err := l.check(form, 0, 0); err != nil {
			return err
		}
		if o.node == "" {
			return l.usage(form, "--node is required: the node to cut off (`outpostctl status` lists them)")
		}
		d := 10 * time.Second
		if acct.duration != "" {
			var err error
			if d, err = time.ParseDuration(acct.duration); err != nil || d < time.Second || d > drill.MaxFault {
				return l.usage(form, "--duration %q: use a duration in [1s, %v], such as 10s", acct.duration, drill.MaxFault)
			}
		}
		return drillPartition(ctx, c, g, o.node, d, l.stdout, l.stderr)
	}
	fmt.Fprintf(l.stderr, "outpostctl: unknown command %q\n%s", l.name, usage)
	return errUsage
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
