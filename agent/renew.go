package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/internal/agentwire"
)

// renewLoop renews the certificate once a third of its life is left.
func (a *Agent) renewLoop(ctx context.Context) {
	for {
		c := a.cert.Load()
		life := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore)
		due := c.Leaf.NotBefore.Add(life * 2 / 3)
		if wait := time.Until(due); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			case <-a.renewNow:
			}
		}
		if err := a.Renew(ctx); err != nil {
			a.logger.Error("renewing the agent certificate failed; retrying in a minute", "err", err, "expires", c.Leaf.NotAfter)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Minute):
			case <-a.renewNow:
			}
		}
	}
}

// Renew asks a node for a new certificate for the agent's key now.
//
// Each renewal moves to a new key: a copy of an older key and
// certificate stops working once the renewal has taken effect. The new
// key is kept until its certificate is saved, so a renewal whose answer
// was lost is asked again for the same key and the node answers with
// the certificate it already made.
func (a *Agent) Renew(ctx context.Context) error {
	a.renewMu.Lock()
	defer a.renewMu.Unlock()
	next, err := a.store.nextKey()
	if err != nil {
		return fmt.Errorf("the renewal key: %w", err)
	}
	csrPEM, err := csr(next)
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: a.tlsConfig()}}
	defer hc.CloseIdleConnections()
	servers := a.servers()
	a.mu.Lock()
	if a.url != "" {
		servers = append([]string{a.url}, servers...)
	}
	a.mu.Unlock()
	var errs []error
	for _, s := range servers {
		var out agentwire.Renewal
		if err := postJSON(ctx, hc, strings.TrimRight(s, "/")+agentwire.PathRenew, agentwire.RenewRequest{CSR: csrPEM}, &out); err != nil {
			errs = append(errs, err)
			// 403 is final (revoked); a 409 may come from a node that has
			// not applied the renewal yet: the next one may know better.
			var se *statusError
			if errors.As(err, &se) && se.Code == http.StatusForbidden {
				return err
			}
			continue
		}
		cert, err := certWithKey([]byte(out.Certificate), next)
		if err != nil {
			return fmt.Errorf("the renewed certificate: %w", err)
		}
		if err := a.store.saveCert([]byte(out.Certificate)); err != nil {
			return err
		}
		if err := a.store.promoteNextKey(); err != nil {
			return fmt.Errorf("keeping the renewal key: %w", err)
		}
		a.key = next
		a.cert.Store(cert)
		a.logger.Info("renewed the agent certificate", "expires", out.CertExpires)
		select {
		case a.renewed <- struct{}{}:
		default:
		}
		return nil
	}
	return errors.Join(errs...)
}
