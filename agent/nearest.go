package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/internal/agentwire"
)

// candidate is a node's agent endpoint and how it measured.
type candidate struct {
	url  string
	node string // node id from its certificate
	rtt  time.Duration
	full bool
	err  error
}

// samples per endpoint; the least is kept (queueing only adds).
const rttSamples = 3

// measure times a TCP connect plus TLS handshake (with the agent's
// certificate) to each endpoint, concurrently.
func (a *Agent) measure(ctx context.Context, urls []string, full map[string]bool) []candidate {
	out := make([]candidate, len(urls))
	done := make(chan struct{})
	for i, u := range urls {
		go func() {
			defer func() { done <- struct{}{} }()
			c := candidate{url: u, full: full[u]}
			for range rttSamples {
				node, d, err := a.handshake(ctx, u)
				if err != nil {
					c.err = err
					break
				}
				c.node = node
				if c.rtt == 0 || d < c.rtt {
					c.rtt = d
				}
			}
			out[i] = c
		}()
	}
	for range urls {
		<-done
	}
	sort.SliceStable(out, func(i, j int) bool {
		ci, cj := out[i], out[j]
		if (ci.err == nil) != (cj.err == nil) {
			return ci.err == nil
		}
		if ci.full != cj.full {
			return !ci.full
		}
		return ci.rtt < cj.rtt
	})
	return out
}

// handshake dials u and completes a TLS handshake, returning the node
// id its certificate names and the time taken.
func (a *Agent) handshake(ctx context.Context, u string) (string, time.Duration, error) {
	pu, err := url.Parse(u)
	if err != nil || pu.Host == "" {
		return "", 0, errors.New("bad server URL " + u)
	}
	host := pu.Host
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(host, "443")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	d := tls.Dialer{Config: a.tlsConfig()}
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return "", 0, err
	}
	took := time.Since(start)
	defer c.Close()
	cs := c.(*tls.Conn).ConnectionState()
	node, err := verifyNode(cs.PeerCertificates, a.pool, a.st.Region)
	return node, took, err
}

// refreshServers asks a node for the region's agent endpoints (and which
// are full); on failure the known list stands.
func (a *Agent) refreshServers(ctx context.Context, via string) map[string]bool {
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: a.tlsConfig()}}
	defer hc.CloseIdleConnections()
	var nodes []agentwire.Node
	if err := doJSON(ctx, hc, "GET", strings.TrimRight(via, "/")+agentwire.PathNodes, nil, &nodes); err != nil {
		a.logger.Debug("could not refresh the node list", "via", via, "err", err)
		return nil
	}
	full := map[string]bool{}
	var urls []string
	for _, n := range nodes {
		if n.URL != "" {
			urls = append(urls, n.URL)
			full[n.URL] = n.Full
		}
	}
	if len(urls) > 0 {
		if err := a.setServers(urls); err != nil {
			a.logger.Warn("could not save the node list", "err", err)
		}
	}
	return full
}

// setServers records the region's node list and saves the state if it
// changed. The lock is held from the change to the rename: a copy saved
// outside it could land after a save of a higher fencing token and put
// the token on disk back (seen: 179 → 174 while a failover delivered
// new-token dispatches and the node list changed).
func (a *Agent) setServers(urls []string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if slices.Equal(urls, a.st.Servers) {
		return nil
	}
	a.st.Servers = urls
	return a.store.save(a.st)
}

// better reports whether best should replace current: markedly nearer
// (hysteresis), or current is unreachable or full.
func (a *Agent) better(current, best candidate) bool {
	if best.err != nil || best.full || best.url == current.url {
		return false
	}
	if current.err != nil || current.full {
		return true
	}
	return float64(current.rtt) > a.cfg.Hysteresis*float64(best.rtt) && current.rtt-best.rtt >= a.cfg.MinGain
}
