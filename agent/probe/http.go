package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync"
	"time"

	"github.com/outpost-mesh/outpost/internal/agentwire"
)

// maxBody is how much of a response body a probe reads, so that a small
// answer completes normally and a large one costs nothing.
const maxBody = 64 << 10

// userAgent names the probe to the servers it checks.
const userAgent = "outpost-agent-probe"

// httpTimes collects what the trace hooks see; they run on the
// transport's goroutines.
type httpTimes struct {
	mu       sync.Mutex
	start    time.Time
	tlsStart time.Time
	tls      time.Duration
	ttfb     time.Duration
}

func (h *httpTimes) tlsBegin() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tlsStart = time.Now()
}

func (h *httpTimes) tlsDone(tls.ConnectionState, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tls = time.Since(h.tlsStart)
}

func (h *httpTimes) firstByte() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ttfb = time.Since(h.start)
}

// runHTTP GETs p.Target once over a new connection. A status of 400 or
// more is a failure; a redirect is reported as it is, never followed (its
// target was not checked by the node, and the dialer's guard would be
// the only thing between it and a metadata service).
func runHTTP(ctx context.Context, p agentwire.Probe, g Guard, res *Result) error {
	var ct connTimes
	ht := httpTimes{start: res.At}
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		ConnectStart:         ct.start,
		ConnectDone:          ct.done,
		TLSHandshakeStart:    ht.tlsBegin,
		TLSHandshakeDone:     ht.tlsDone,
		GotFirstResponseByte: ht.firstByte,
	})
	tr := &http.Transport{
		// Proxy stays nil: a proxy (even one from the environment) would
		// be dialed instead of the target, out of the guard's sight.
		DialContext:            g.dialer().DialContext,
		TLSClientConfig:        &tls.Config{RootCAs: g.rootCAs},
		DisableKeepAlives:      true, // each run measures a new connection
		MaxResponseHeaderBytes: maxBody,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.Target, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := client.Do(req)
	defer func() {
		res.Addr, res.Connect = ct.get()
		ht.mu.Lock()
		res.TLSHandshake, res.TTFB = ht.tls, ht.ttfb
		ht.mu.Unlock()
	}()
	if err != nil {
		// A certificate that failed verification still has an expiry
		// worth reporting (an expired one is the likeliest failure).
		if cve := (*tls.CertificateVerificationError)(nil); errors.As(err, &cve) && len(cve.UnverifiedCertificates) > 0 {
			res.CertExpiry = cve.UnverifiedCertificates[0].NotAfter
		}
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody)) // the status is the probe; the body is drained for a clean close only
	res.HTTPStatus = resp.StatusCode
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		res.CertExpiry = resp.TLS.PeerCertificates[0].NotAfter
	}
	if resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return nil
}
