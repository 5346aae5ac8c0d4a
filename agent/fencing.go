package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	pb "github.com/open-telemetry/opamp-go/protobufs"

	"github.com/outpost-mesh/outpost/internal/agentwire"
)

func statusOf(s string) pb.RemoteConfigStatuses {
	switch s {
	case "applied":
		return pb.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED
	case "failed":
		return pb.RemoteConfigStatuses_RemoteConfigStatuses_FAILED
	}
	return pb.RemoteConfigStatuses_RemoteConfigStatuses_UNSET
}

// applyRemote handles a pushed dispatch: the fencing check against the
// highest token seen, recognition of a redelivery by id, the apply, and
// the state saved durably before the outcome is reported.
func (a *Agent) applyRemote(cl *opampLink, rc *pb.AgentRemoteConfig) {
	status, msg := a.decide(rc)
	if err := cl.setConfigStatus(&pb.RemoteConfigStatus{LastRemoteConfigHash: rc.GetConfigHash(), Status: statusOf(status), ErrorMessage: msg}); err != nil {
		a.logger.Warn("could not report a config status", "err", err)
	}
}

func (a *Agent) decide(rc *pb.AgentRemoteConfig) (status, msg string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	d, err := parseDispatch(rc)
	switch {
	case err != nil:
		status, msg = "failed", err.Error()
		a.logger.Warn("the node pushed a config the agent cannot read", "err", err)
	case d.Token < a.st.HighestToken:
		status = "failed"
		msg = fmt.Sprintf("%s: dispatch %s carries token %d, this agent has seen %d", agentwire.RefusedPrefix, d.ID, d.Token, a.st.HighestToken)
		a.logger.Warn("refused a dispatch under a stale fencing token", "dispatch", d.ID, "token", d.Token, "highest", a.st.HighestToken, "node", d.Node)
	case slices.Contains(a.st.Applied, d.ID):
		// Delivered again (a failover, a reconnect): applied once already.
		status = "applied"
		a.logger.Debug("dispatch delivered again; already applied", "dispatch", d.ID)
	case d.Index < a.st.LastIndex:
		status = "failed"
		msg = fmt.Sprintf("dispatch %s (index %d) is older than the applied config (index %d)", d.ID, d.Index, a.st.LastIndex)
	default:
		// Persist the new highest token before acting on the dispatch:
		// after a crash mid-apply, a restarted agent must still refuse
		// dispatches under the tokens this one superseded.
		if d.Token > a.st.HighestToken {
			prev := a.st.HighestToken
			a.st.HighestToken = d.Token
			if err := a.store.save(a.st); err != nil {
				a.st.HighestToken = prev
				a.logger.Error("could not save the fencing token; the dispatch is not applied", "dispatch", d.ID, "err", err)
				return "failed", "the agent could not save its state: " + err.Error()
			}
		}
		cfg, err := agentwire.ParseConfig(d.Payload)
		if err == nil && a.cfg.Apply != nil {
			err = a.cfg.Apply(cfg)
		}
		if err == nil && a.tel != nil {
			a.tel.apply(cfg)
		}
		if err != nil {
			status, msg = "failed", err.Error()
			a.logger.Warn("could not apply a dispatch", "dispatch", d.ID, "err", err)
		} else {
			status = "applied"
			a.st.Config, a.st.LastIndex = d.Payload, d.Index
			a.st.noteApplied(d.ID)
			a.logger.Info("applied a dispatch", "dispatch", d.ID, "token", d.Token, "index", d.Index, "from", d.Node)
		}
	}
	a.st.ConfigHash, a.st.ConfigStatus, a.st.ConfigError = append([]byte(nil), rc.GetConfigHash()...), status, msg
	if err := a.store.save(a.st); err != nil {
		// Not saved, so not acknowledged as applied: the node sends it
		// again after a reconnect.
		a.logger.Error("could not save the agent state", "err", err)
		return "failed", "the agent could not save its state: " + err.Error()
	}
	return status, msg
}

func parseDispatch(rc *pb.AgentRemoteConfig) (agentwire.Dispatch, error) {
	var d agentwire.Dispatch
	f := rc.GetConfig().GetConfigMap()[agentwire.DispatchFile]
	if f == nil {
		return d, fmt.Errorf("the remote config has no %s", agentwire.DispatchFile)
	}
	dec := json.NewDecoder(bytes.NewReader(f.GetBody()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return d, fmt.Errorf("%s: %w", agentwire.DispatchFile, err)
	}
	if d.ID == "" || d.Kind != agentwire.DispatchKind {
		return d, fmt.Errorf("%s: a %q dispatch with an id is expected, got kind %q", agentwire.DispatchFile, agentwire.DispatchKind, d.Kind)
	}
	return d, nil
}
