package httpapi

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-mesh/outpost/internal/promreg"
)

// metrics are the API's authentication and authorization counts: what an
// operator watches for password guessing and for callers probing what
// they may not reach.
type metrics struct {
	logins   *prometheus.CounterVec
	lockouts prometheus.Counter
	denials  *prometheus.CounterVec
	all      []prometheus.Collector
}

// Login results, the result label of outpost_auth_logins_total.
const (
	loginOK          = "ok"
	loginWrong       = "wrong_password"
	loginUnknown     = "unknown_account"
	loginLocked      = "locked"
	loginSlowed      = "slowed"
	loginRateLimited = "rate_limited"
)

// Denial reasons, the reason label of outpost_api_denials_total.
const (
	deniedUnauthenticated = "unauthenticated"
	deniedRegionAdmin     = "needs_region_admin"
	deniedRole            = "role"
	deniedBreakGlass      = "needs_grant"
)

func newMetrics() *metrics {
	m := &metrics{
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_auth_logins_total",
			Help: "Password logins on this node, by result (ok, wrong_password, unknown_account, locked, slowed, rate_limited)."}, []string{"result"}),
		lockouts: prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_auth_lockouts_total",
			Help: "Accounts locked for a source address after repeated wrong passwords from it."}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_api_denials_total",
			Help: "API requests refused for who made them, by reason (unauthenticated, needs_region_admin, role, needs_grant)."}, []string{"reason"}),
	}
	for _, r := range []string{loginOK, loginWrong, loginUnknown, loginLocked, loginSlowed, loginRateLimited} {
		m.logins.WithLabelValues(r)
	}
	for _, r := range []string{deniedUnauthenticated, deniedRegionAdmin, deniedRole, deniedBreakGlass} {
		m.denials.WithLabelValues(r)
	}
	m.all = []prometheus.Collector{m.logins, m.lockouts, m.denials}
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	return promreg.Register(reg, "API's", m.all...)
}
