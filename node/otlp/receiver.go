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
package otlp

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-mesh/outpost/storage/telemetry"
)

// Path is the OTLP/HTTP metrics path.
const Path = "/v1/metrics"

// Config bounds what one request may cost.
type Config struct {
	// MaxBodyBytes bounds a request body, compressed or not (default 8 MiB).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxInFlight bounds requests being converted at once on this node;
	// more are answered 429 with Retry-After (default 8).
	MaxInFlight int `yaml:"max_in_flight"`
	// ResourceLabels are the resource attributes kept as labels (besides
	// the node's tenant, agent and host); the rest are dropped. Default:
	// service.name, service.namespace, service.instance.id (which the
	// translator also turns into job and instance).
	ResourceLabels []string `yaml:"resource_labels"`
}

// Defaults fills unset fields.
func (c Config) Defaults() Config {
	c.MaxBodyBytes = cmp.Or(c.MaxBodyBytes, 8<<20)
	c.MaxInFlight = cmp.Or(c.MaxInFlight, 8)
	if c.ResourceLabels == nil {
		c.ResourceLabels = []string{"service.name", "service.namespace", "service.instance.id"}
	}
	return c
}

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
	inFlight chan struct{}
	refused  Refusal
	logger   *slog.Logger
	settings prometheusremotewrite.Settings
}

// New returns a receiver writing to db.
func New(cfg Config, db *telemetry.DB, refused Refusal, logger *slog.Logger) *Receiver {
	cfg = cfg.Defaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Receiver{cfg: cfg, db: db, inFlight: make(chan struct{}, cfg.MaxInFlight), refused: refused, logger: logger,
		settings: prometheusremotewrite.Settings{
			AddMetricSuffixes: true,
			PromoteResourceAttributes: prometheusremotewrite.NewPromoteResourceAttributes(config.OTLPConfig{
				PromoteResourceAttributes: cfg.ResourceLabels}),
			LookbackDelta: 5 * time.Minute,
		}}
}

// tenantAttributes are the resource attribute keys read as a claim of
// tenancy: a request naming a tenant other than its certificate's is
// refused whole.
var tenantAttributes = []string{"tenant", "tenant.id", "tenant.name", "tenant_id", "outpost.tenant"}

// errTenantClaim is a payload that names another tenant.
var errTenantClaim = errors.New("the payload names a tenant other than the one in this agent's certificate")

// Serve handles one OTLP/HTTP export from s.
func (rc *Receiver) Serve(w http.ResponseWriter, r *http.Request, s Sender) {
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		writeStatus(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q: send OTLP protobuf (application/x-protobuf)", ct))
		return
	}
	// The body is read (bounded) before a conversion slot is taken, so a
	// slow sender holds no slot.
	body, err := rc.read(r)
	if err != nil {
		writeStatus(w, http.StatusBadRequest, err.Error())
		return
	}
	select {
	case rc.inFlight <- struct{}{}:
		defer func() { <-rc.inFlight }()
	default:
		// OTLP clients retry a 429 after Retry-After.
		w.Header().Set("Retry-After", "1")
		writeStatus(w, http.StatusTooManyRequests, "the node is busy storing telemetry: retry in a second")
		return
	}
	// The protobuf runtime bounds nesting; the conversion's decoder does
	// not, so a request is checked with it first.
	if err := (proto.UnmarshalOptions{RecursionLimit: maxDepth, DiscardUnknown: true}).Unmarshal(body, &colmetrics.ExportMetricsServiceRequest{}); err != nil {
		writeStatus(w, http.StatusBadRequest, "not an OTLP metrics request: "+err.Error())
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
	app := rc.db.Ingest(r.Context(), telemetry.Source{TenantID: s.TenantID, Agent: s.AgentID, Host: s.Host})
	// Points far in the past or the future are dropped before conversion:
	// one would move the store's head for every tenant, and the
	// translator writes a target_info sample for every 2.5 minutes between
	// a resource's earliest and latest point.
	if n := dropOutOfWindow(md, time.Now()); n > 0 {
		app.ShedN(telemetry.ShedOutOfWindow, n)
	}
	conv := prometheusremotewrite.NewPrometheusConverter(app)
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if _, err := conv.FromMetrics(ctx, md, rc.settings); err != nil {
		_ = app.Rollback()
		rc.logger.Warn("converting an agent's metrics failed", "agent", s.AgentID, "err", err)
		writeStatus(w, http.StatusBadRequest, "the metrics could not be converted: "+err.Error())
		return
	}
	if err := app.Commit(); err != nil {
		rc.logger.Error("storing telemetry failed", "agent", s.AgentID, "err", err)
		w.Header().Set("Retry-After", "5")
		writeStatus(w, http.StatusServiceUnavailable, "the node could not store the samples: retry")
		return
	}
	resp := pmetricotlp.NewExportResponse()
	if shed := sum(app.Shed); shed > 0 {
		// Points map to samples one to many (a histogram point is several
		// series); what is reported is the samples not stored, at most the
		// request's points.
		ps := resp.PartialSuccess()
		ps.SetRejectedDataPoints(int64(min(shed, total)))
		ps.SetErrorMessage(shedMessage(app.Shed))
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

func shedMessage(m map[string]int) string {
	var parts []string
	for _, r := range telemetry.ShedReasons {
		if m[r] > 0 {
			parts = append(parts, r+"="+strconv.Itoa(m[r]))
		}
	}
	return "samples not stored: " + strings.Join(parts, ", ")
}

// writeStatus answers with an OTLP Status message's text: OTLP/HTTP
// clients log the body of a refusal.
func writeStatus(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.Copy(w, bytes.NewBufferString(msg+"\n"))
}

// The window of accepted point timestamps around the node's clock.
const (
	maxAge    = time.Hour
	maxFuture = 5 * time.Minute
)

// dropOutOfWindow removes data points older than maxAge or more than
// maxFuture ahead of now, and returns how many it removed.
func dropOutOfWindow(md pmetric.Metrics, now time.Time) int {
	lo, hi := pcommon.NewTimestampFromTime(now.Add(-maxAge)), pcommon.NewTimestampFromTime(now.Add(maxFuture))
	n := 0
	out := func(ts pcommon.Timestamp) bool {
		if ts < lo || ts > hi {
			n++
			return true
		}
		return false
	}
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		sms := rms.At(i).ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				switch m := ms.At(k); m.Type() {
				case pmetric.MetricTypeGauge:
					m.Gauge().DataPoints().RemoveIf(func(p pmetric.NumberDataPoint) bool { return out(p.Timestamp()) })
				case pmetric.MetricTypeSum:
					m.Sum().DataPoints().RemoveIf(func(p pmetric.NumberDataPoint) bool { return out(p.Timestamp()) })
				case pmetric.MetricTypeHistogram:
					m.Histogram().DataPoints().RemoveIf(func(p pmetric.HistogramDataPoint) bool { return out(p.Timestamp()) })
				case pmetric.MetricTypeExponentialHistogram:
					m.ExponentialHistogram().DataPoints().RemoveIf(func(p pmetric.ExponentialHistogramDataPoint) bool { return out(p.Timestamp()) })
				case pmetric.MetricTypeSummary:
					m.Summary().DataPoints().RemoveIf(func(p pmetric.SummaryDataPoint) bool { return out(p.Timestamp()) })
				}
			}
		}
	}
	return n
}
