// Package otlp is the node's OTLP metrics receiver: POST /v1/metrics
// (OTLP protobuf over HTTP, gzip accepted) on the agent port, behind its
// mutual TLS. The agent is identified by its certificate, and its tenant
// is taken from the certificate, never from the payload: a resource
// attribute that names another tenant refuses the request. Metrics are
// converted to Prometheus series by Prometheus's own OTLP translator
// (the OpenTelemetry-to-Prometheus compatibility rules: name and unit
// suffixes, _total for monotonic sums, native histograms for exponential
// ones) and stored in the node's telemetry store, which stamps every
// series with the tenant, agent and host.
//
// A request's costs are bounded before they are paid (Serve): the body
// within its cap, then a walk of its wire format that bounds nesting and
// estimates the decode's memory without decoding (walk.go), then the
// node's and the tenant's in-flight bounds (gate.go), then one decode
// and the conversion (convert.go).
package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/outpost-mesh/outpost/storage/telemetry"
)

// Path is the OTLP/HTTP metrics path.
const Path = "/v1/metrics"

// maxDepth bounds the nesting of a request's protobuf messages (attribute
// values nest: a list of maps of lists…); OTLP metrics need a dozen.
const maxDepth = 32

// Sender is who sent a request, from its certificate and the registry.
type Sender struct {
	TenantID, TenantName, AgentID, Host string
}

// Refusal is told of a request that claimed another tenant, for the
// audit log (the caller aggregates by rate).
type Refusal func(s Sender, claimed string)

// Receiver converts OTLP requests and stores them.
type Receiver struct {
	cfg      Config
	db       *telemetry.DB
	gate     *gate
	refused  Refusal
	logger   *slog.Logger
	settings prometheusremotewrite.Settings
	// converters keeps the translator's converters (and their label-name
	// caches) between requests.
	converters sync.Pool
}

// New returns a receiver writing to db; cfg's zero fields take their
// defaults.
func New(cfg Config, db *telemetry.DB, refused Refusal, logger *slog.Logger) *Receiver {
	cfg = cfg.Defaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	rc := &Receiver{cfg: cfg, db: db, gate: newGate(cfg), refused: refused, logger: logger,
		settings: prometheusremotewrite.Settings{
			AddMetricSuffixes: true,
			PromoteResourceAttributes: prometheusremotewrite.NewPromoteResourceAttributes(config.OTLPConfig{
				PromoteResourceAttributes: cfg.ResourceLabels}),
			LookbackDelta: 5 * time.Minute,
		}}
	rc.converters.New = func() any { return prometheusremotewrite.NewPrometheusConverter(nil) }
	return rc
}

// tenantAttributes are the resource attribute keys read as a claim of
// tenancy: a request naming a tenant other than its certificate's is
// refused whole.
var tenantAttributes = []string{"tenant", "tenant.id", "tenant.name", "tenant_id", "outpost.tenant"}

// errTenantClaim is a payload that names another tenant.
var errTenantClaim = errors.New("the payload names a tenant other than the one in this agent's certificate")

// Serve handles one OTLP/HTTP export from s. What a request may cost is
// checked before the cost is paid: the body is read within its cap, then
// walked (wire format, nesting depth, an estimate of its decoded size),
// then admitted within the node's and its tenant's in-flight bounds,
// and only then decoded and converted.
func (rc *Receiver) Serve(w http.ResponseWriter, r *http.Request, s Sender) {
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		writeStatus(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q: send OTLP protobuf (application/x-protobuf)", ct))
		return
	}
	// The body is read (bounded) before a slot is taken, so a slow sender
	// holds no slot.
	body, err := rc.read(r)
	if err != nil {
		writeStatus(w, http.StatusBadRequest, err.Error())
		return
	}
	// pdata's decoder has no nesting bound, and allocates up to ~200
	// times a body's size: the walk bounds the one and estimates the
	// other without decoding.
	decoded, err := validate(body)
	if err != nil {
		writeStatus(w, http.StatusBadRequest, "not an OTLP metrics request: "+err.Error())
		return
	}
	cost := int64(len(body)) + decoded
	switch why := rc.gate.enter(s.TenantID, cost); why {
	case "":
		defer rc.gate.leave(s.TenantID, cost)
	case tooBig:
		writeStatus(w, http.StatusRequestEntityTooLarge, fmt.Sprintf(
			"the export would take about %d bytes of memory decoded, over telemetry.otlp.max_in_flight_bytes (%d): send smaller batches", cost, rc.cfg.MaxInFlightBytes))
		return
	default:
		// OTLP clients retry a 429 after Retry-After.
		w.Header().Set("Retry-After", "1")
		writeStatus(w, http.StatusTooManyRequests, busyMessage[why])
		return
	}
	req := pmetricotlp.NewExportRequest()
	if err := req.UnmarshalProto(body); err != nil {
		writeStatus(w, http.StatusBadRequest, "not an OTLP metrics request: "+err.Error())
		return
	}
	md := req.Metrics()
	if claimed := claimedTenant(md.ResourceMetrics(), s); claimed != "" {
		if rc.refused != nil {
			rc.refused(s, claimed)
		}
		writeStatus(w, http.StatusForbidden, errTenantClaim.Error()+": the tenant comes from the certificate; drop the attribute")
		return
	}
	total := md.DataPointCount()
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	app := rc.db.Ingest(ctx, telemetry.Source{TenantID: s.TenantID, Agent: s.AgentID, Host: s.Host})
	// Points far in the past or the future are dropped before conversion:
	// one would move the store's head for every tenant, and the
	// translator writes a target_info sample for every 2.5 minutes between
	// a resource's earliest and latest point.
	if n := dropOutOfWindow(md, time.Now()); n > 0 {
		app.ShedN(telemetry.ShedOutOfWindow, n)
	}
	notes, err := rc.convert(ctx, md, app)
	if err != nil {
		// Only a timeout or a cancelled request: the translator's
		// complaints about the points are notes, and what converted is
		// committed.
		_ = app.Rollback()
		w.Header().Set("Retry-After", "5")
		writeStatus(w, http.StatusServiceUnavailable, "the node could not convert the export in time: retry")
		return
	}
	if notes != "" {
		rc.logger.Debug("an agent's points were not converted", "agent", s.AgentID, "err", notes)
	}
	if err := app.Commit(); err != nil {
		rc.logger.Error("storing telemetry failed", "agent", s.AgentID, "err", err)
		w.Header().Set("Retry-After", "5")
		writeStatus(w, http.StatusServiceUnavailable, "the node could not store the samples: retry")
		return
	}
	resp := pmetricotlp.NewExportResponse()
	if shed := sum(app.Shed); shed > 0 || notes != "" {
		// Points map to samples one to many (a histogram point is several
		// series); what is reported is the samples not stored, at most the
		// request's points.
		ps := resp.PartialSuccess()
		ps.SetRejectedDataPoints(int64(min(shed, total)))
		ps.SetErrorMessage(shedMessage(app.Shed, notes))
	}
	out, err := resp.MarshalProto()
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// busyMessage tells an exporter answered 429 why.
var busyMessage = map[string]string{
	busyNode:   "the node is busy storing telemetry: retry in a second",
	busyTenant: "the node is busy storing this tenant's telemetry (telemetry.otlp.max_in_flight_per_tenant): retry in a second",
	busyBytes:  "the node's memory for exports in flight is taken (telemetry.otlp.max_in_flight_bytes): retry in a second",
}

// read returns the request body, gunzipped when it says so, within
// MaxBodyBytes either way.
func (rc *Receiver) read(r *http.Request) ([]byte, error) {
	limit := rc.cfg.MaxBodyBytes
	var rd io.Reader = io.LimitReader(r.Body, limit+1)
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(rd)
		if err != nil {
			return nil, fmt.Errorf("bad gzip body: %w", err)
		}
		defer zr.Close()
		rd = zr
	default:
		return nil, fmt.Errorf("Content-Encoding %q: send gzip or none", enc)
	}
	b, err := io.ReadAll(io.LimitReader(rd, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading the body: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("the body is over %d bytes (otlp.max_body_bytes): send smaller batches", limit)
	}
	return b, nil
}

// claimedTenant returns a tenant a resource names other than s's, or "".
func claimedTenant(rms pmetric.ResourceMetricsSlice, s Sender) string {
	for i := 0; i < rms.Len(); i++ {
		attrs := rms.At(i).Resource().Attributes()
		for _, k := range tenantAttributes {
			v, ok := attrs.Get(k)
			if !ok {
				continue
			}
			if str := v.AsString(); str != s.TenantID && str != s.TenantName {
				return str
			}
		}
	}
	return ""
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func shedMessage(m map[string]int, notes string) string {
	var parts []string
	for _, r := range telemetry.ShedReasons {
		if m[r] > 0 {
			parts = append(parts, r+"="+strconv.Itoa(m[r]))
		}
	}
	msg := "samples not stored: " + strings.Join(parts, ", ")
	if notes != "" {
		msg += "; " + notes
	}
	return msg
}

// writeStatus answers with an OTLP Status message's text: OTLP/HTTP
// clients log the body of a refusal.
func writeStatus(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.Copy(w, bytes.NewBufferString(msg+"\n"))
}
