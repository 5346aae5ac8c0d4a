package probe

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/internal/agentwire"
)

var lo = netip.MustParseAddr("127.0.0.1")

// TestTCP: a connect to a loopback listener succeeds only when loopback
// is allowed; otherwise it is refused with the rule named, whether the
// target is a literal (refused before resolution) or a name that
// resolves to loopback (refused at the dial, by Control), and the
// listener sees no connection.
func TestTCP(t *testing.T) {
	l := newListener(t)
	res := fakeDNS(t, map[string]netip.Addr{"rebind.test": lo})
	for _, c := range []struct {
		name, target string
		allow        []netip.Prefix
		refused      string // "" means success
	}{
		{"literal allowed", "127.0.0.1:" + l.port(), allowLoop, ""},
		{"literal refused", "127.0.0.1:" + l.port(), nil, "loopback 127.0.0.0/8"},
		{"another /8 address refused", "127.0.0.2:" + l.port(), []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, "loopback 127.0.0.0/8"},
		{"ipv6 loopback refused", "[::1]:" + l.port(), allowLoop, "loopback ::1/128"},
		{"mapped loopback refused", "[::ffff:127.0.0.1]:" + l.port(), nil, "loopback 127.0.0.0/8"},
		{"localhost refused by name", "localhost:" + l.port(), nil, "loopback name localhost"},
		{"decimal form refused", "2130706433:" + l.port(), allowLoop, "ambiguous IPv4 form (inet_aton reads 127.0.0.1)"},
		{"name resolving to loopback refused at dial", "rebind.test:" + l.port(), nil, "loopback 127.0.0.0/8"},
		{"name resolving to loopback allowed", "rebind.test:" + l.port(), allowLoop, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := l.accepted.Load()
			r := Run(t.Context(), agentwire.Probe{Kind: "tcp", Target: c.target}, Guard{Allow: c.allow, resolver: res})
			t.Logf("%+v", r)
			if c.refused != "" {
				checkRefused(t, r, c.refused)
				// The accept loop may lag; a refusal never dialed at all.
				time.Sleep(50 * time.Millisecond)
				if n := l.accepted.Load() - before; n != 0 {
					t.Errorf("the listener accepted %d connections from a refused probe", n)
				}
				return
			}
			if !r.Success || r.Error != "" || r.Refused != "" {
				t.Fatalf("failed: %+v", r)
			}
			if r.Addr != lo || r.Connect <= 0 || r.Duration < r.Connect || r.Kind != "tcp" || r.Target != c.target || r.At.IsZero() {
				t.Errorf("result %+v: want Addr 127.0.0.1, 0 < Connect ≤ Duration, kind, target and start", r)
			}
			// Let the accept loop count it, so the next case starts even.
			waitFor(t, "the listener to accept the probe's connection", func() bool { return l.accepted.Load() > before })
		})
	}
	t.Run("closed port fails unrefused", func(t *testing.T) {
		l2 := newListener(t)
		target := "127.0.0.1:" + l2.port()
		l2.Close()
		r := Run(t.Context(), agentwire.Probe{Kind: "tcp", Target: target}, Guard{Allow: allowLoop})
		if r.Success || r.Refused != "" || !strings.Contains(r.Error, "refused") {
			t.Errorf("result %+v: want a failed connect, not a guard refusal", r)
		}
	})
}

func checkRefused(t *testing.T, r Result, rule string) {
	t.Helper()
	if r.Success || r.Refused != rule || !strings.Contains(r.Error, rule) || !strings.Contains(r.Error, "SSRF guard") {
		t.Errorf("result %+v: want refused by rule %q, named in Error", r, rule)
	}
	if r.Addr.IsValid() {
		t.Errorf("a refused probe reports reaching %s", r.Addr)
	}
}

// TestHTTP: status, connect, TTFB and TLS timings and the certificate's
// expiry against local servers; a verification failure is the failure
// yet still reports the expiry; redirects are reported, not followed;
// names that resolve to loopback are refused unless it is allowed.
func TestHTTP(t *testing.T) {
	var followed atomic.Int64
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { followed.Add(1) }))
	t.Cleanup(elsewhere.Close)
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("User-Agent") != userAgent {
			w.WriteHeader(http.StatusBadRequest)
		}
		fmt.Fprint(w, strings.Repeat("x", 2*maxBody)) // more than a probe reads
	})
	mux.HandleFunc("/down", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/followed", http.StatusFound)
	})
	mux.HandleFunc("/metadata", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusMovedPermanently)
	})
	plain := httptest.NewServer(mux)
	t.Cleanup(plain.Close)
	tlsSrv := httptest.NewUnstartedServer(mux)
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted case's handshake error is expected
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(tlsSrv.Certificate())
	notAfter := tlsSrv.Certificate().NotAfter
	_, port, _ := strings.Cut(strings.TrimPrefix(plain.URL, "http://"), ":")
	resolver := fakeDNS(t, map[string]netip.Addr{"rebind.test": lo})

	for _, c := range []struct {
		name, url string
		g         Guard
		status    int
		success   bool
		refused   string
		errHas    string
	}{
		{name: "http", url: plain.URL + "/ok", g: Guard{Allow: allowLoop}, status: 200, success: true},
		{name: "https", url: tlsSrv.URL + "/ok", g: Guard{Allow: allowLoop, rootCAs: roots}, status: 200, success: true},
		{name: "https untrusted", url: tlsSrv.URL + "/ok", g: Guard{Allow: allowLoop}, errHas: "certificate"},
		{name: "server error", url: plain.URL + "/down", g: Guard{Allow: allowLoop}, status: 503, errHas: "HTTP 503 Service Unavailable"},
		{name: "redirect reported", url: plain.URL + "/redirect", g: Guard{Allow: allowLoop}, status: 302, success: true},
		{name: "redirect to metadata reported", url: plain.URL + "/metadata", g: Guard{Allow: allowLoop}, status: 301, success: true},
		{name: "loopback refused", url: plain.URL + "/ok", refused: "loopback 127.0.0.0/8"},
		{name: "localhost refused", url: "http://localhost:" + port + "/ok", refused: "loopback name localhost"},
		{name: "localhost allowed", url: "http://localhost:" + port + "/ok", g: Guard{Allow: allowLoop}, status: 200, success: true},
		{name: "name resolving to loopback refused at dial", url: "http://rebind.test:" + port + "/ok", g: Guard{resolver: resolver}, refused: "loopback 127.0.0.0/8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := Run(t.Context(), agentwire.Probe{Kind: "http", Target: c.url}, c.g)
			t.Logf("%+v", r)
			if c.refused != "" {
				checkRefused(t, r, c.refused)
				return
			}
			if r.Success != c.success || r.HTTPStatus != c.status || !strings.Contains(r.Error, c.errHas) || (c.success && r.Error != "") {
				t.Fatalf("result %+v: want success %v, status %d, error with %q", r, c.success, c.status, c.errHas)
			}
			if r.Addr != lo || r.Connect <= 0 || r.Duration <= 0 {
				t.Errorf("result %+v: want Addr 127.0.0.1, Connect and Duration > 0", r)
			}
			if c.status != 0 && (r.TTFB <= 0 || r.TTFB > r.Duration) {
				t.Errorf("TTFB %v, Duration %v: want 0 < TTFB ≤ Duration", r.TTFB, r.Duration)
			}
			if strings.HasPrefix(c.url, "https") {
				if r.TLSHandshake <= 0 || !r.CertExpiry.Equal(notAfter) {
					t.Errorf("TLSHandshake %v, CertExpiry %v: want > 0 and the test certificate's NotAfter %v", r.TLSHandshake, r.CertExpiry, notAfter)
				}
			} else if r.TLSHandshake != 0 || !r.CertExpiry.IsZero() {
				t.Errorf("plain HTTP reports TLS: %+v", r)
			}
		})
	}
	if n := followed.Load(); n != 0 {
		t.Errorf("a redirect was followed %d times", n)
	}
}

// TestDNS: A and AAAA answers through the system resolver and a given
// one; an unknown name fails.
func TestDNS(t *testing.T) {
	resolver := fakeDNS(t, map[string]netip.Addr{"db.test": netip.MustParseAddr("127.0.0.9")})
	for _, c := range []struct {
		name, target string
		g            Guard
		ok           bool
	}{
		{"localhost, system resolver", "localhost", Guard{}, true},
		{"a name", "db.test", Guard{resolver: resolver}, true},
		{"an unknown name", "nx.test", Guard{resolver: resolver}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := Run(t.Context(), agentwire.Probe{Kind: "dns", Target: c.target}, c.g)
			if r.Success != c.ok || (r.DNSAnswers > 0) != c.ok || r.Refused != "" || r.Addr.IsValid() {
				t.Errorf("result %+v: want success %v with answers, no refusal, no address reached", r, c.ok)
			}
			if c.ok && (r.Error != "" || r.Duration <= 0) {
				t.Errorf("result %+v", r)
			}
		})
	}
}

// TestRunTimeout: a run ends within min(interval, MaxTimeout), and when
// its context ends.
func TestRunTimeout(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	start := time.Now()
	r := Run(t.Context(), agentwire.Probe{Kind: "http", Target: slow.URL, Interval: "1s"}, Guard{Allow: allowLoop})
	if took := time.Since(start); r.Success || !strings.Contains(r.Error, "deadline") || took > 3*time.Second {
		t.Errorf("after %v: %+v; want a failure at the 1s interval", took, r)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	r = Run(ctx, agentwire.Probe{Kind: "http", Target: slow.URL}, Guard{Allow: allowLoop})
	if took := time.Since(start); r.Success || took > 2*time.Second {
		t.Errorf("after %v: %+v; want a failure when the context ends", took, r)
	}
}

// TestRunInvalid: a malformed probe is a failed result, never a panic or
// a dial.
func TestRunInvalid(t *testing.T) {
	for _, p := range []agentwire.Probe{
		{Kind: "ftp", Target: "x"},
		{Kind: "tcp", Target: ":22"},
		{Kind: "http", Target: "file:///etc/passwd"},
	} {
		r := Run(t.Context(), p, Guard{Allow: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}})
		if r.Success || r.Error == "" || r.Refused != "" || r.Duration != 0 {
			t.Errorf("%+v: %+v, want a validation failure", p, r)
		}
	}
}
