package dev

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

// RegionNames are the names of federated dev regions, in order.
var RegionNames = []string{"us-east", "eu-west", "ap-south", "sa-east", "af-south"}

// Federation is several dev regions on loopback, each a peer of every
// other, with the dev tenant of each linked to the others'.
type Federation struct {
	Regions []*Region
	dataDir string
	tempDir bool
	keep    bool
}

// StartFederation starts opts.Regions regions (2..5) of opts.Nodes nodes:
// region k's first API port follows region k-1's last; each has its own
// CA, data dir (DATA/NAME) and dev tenant; only the first region's first
// agent observes this machine. It then peers every pair of regions with
// one shared secret (DATA/federation.secret) and links their dev tenants.
func StartFederation(ctx context.Context, opts Options) (_ *Federation, err error) {
	if opts.Regions < 2 || opts.Regions > len(RegionNames) {
		return nil, fmt.Errorf("--regions %d: federated dev regions are 2..%d", opts.Regions, len(RegionNames))
	}
	if opts.Nodes == 0 {
		opts.Nodes = 1
	}
	if opts.HTTP == "" {
		opts.HTTP = "127.0.0.1:7070"
	}
	host, port, err := net.SplitHostPort(opts.HTTP)
	if err != nil {
		return nil, fmt.Errorf("--http %q: %w", opts.HTTP, err)
	}
	base, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("--http %q: bad port", opts.HTTP)
	}
	f := &Federation{keep: opts.Keep}
	if opts.DataDir == "" {
		if f.dataDir, err = os.MkdirTemp("", "outpost-dev-"); err != nil {
			return nil, err
		}
		f.tempDir = true
	} else {
		f.dataDir = opts.DataDir
		if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			_ = f.Stop(context.Background())
		}
	}()
	for k := range opts.Regions {
		ro := opts
		ro.Regions, ro.Name, ro.Federation, ro.Keep = 1, RegionNames[k], true, true
		ro.DataDir = filepath.Join(f.dataDir, RegionNames[k])
		if base != 0 {
			ro.HTTP = net.JoinHostPort(host, strconv.Itoa(base+k*opts.Nodes))
		}
		if k > 0 {
			ro.Telemetry = nil // one observer per host
		}
		r, err := Start(ctx, ro)
		if err != nil {
			return nil, fmt.Errorf("region %s: %w", RegionNames[k], err)
		}
		f.Regions = append(f.Regions, r)
	}
	if err := f.federate(ctx); err != nil {
		return nil, fmt.Errorf("federating the dev regions: %w", err)
	}
	return f, nil
}

// SecretFile holds the secret the dev regions share.
func (f *Federation) SecretFile() string { return filepath.Join(f.dataDir, "federation.secret") }

// DataDir is the directory holding every region's.
func (f *Federation) DataDir() string { return f.dataDir }

func (f *Federation) secret() (string, error) {
	b, err := os.ReadFile(f.SecretFile())
	if errors.Is(err, os.ErrNotExist) {
		raw := make([]byte, 32)
		_, _ = rand.Read(raw)
		b = []byte(hex.EncodeToString(raw) + "\n")
		err = os.WriteFile(f.SecretFile(), b, 0o600)
	}
	return strings.TrimSpace(string(b)), err
}

// federate peers every pair of regions and links their dev tenants; each
// step may be repeated (a restart with --data finds them done).
func (f *Federation) federate(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	secret, err := f.secret()
	if err != nil {
		return err
	}
	admins := make([]*api.Client, len(f.Regions))
	tenants := make([]*api.Client, len(f.Regions))
	for i, r := range f.Regions {
		tok, err := os.ReadFile(r.TokenFile())
		if err != nil {
			return err
		}
		admins[i] = setupClient(r.APIURL(), strings.TrimSpace(string(tok)), r.say)
		if tenants[i], err = r.devTenant(ctx); err != nil {
			return fmt.Errorf("region %s: %w", r.region, err)
		}
	}
	for i, a := range f.Regions {
		for j, b := range f.Regions {
			if i == j {
				continue
			}
			in := api.PeerCreate{Name: b.region, Addr: b.FederationAddr(), CAPEM: string(b.ca.CertPEM()), Secret: secret}
			if err := create(ctx, admins[i], "/api/v1/peers", in); err != nil {
				return fmt.Errorf("region %s: adding peer %s: %w", a.region, b.region, err)
			}
		}
	}
	for i, a := range f.Regions {
		for j := i + 1; j < len(f.Regions); j++ {
			b := f.Regions[j]
			id, err := linkID(ctx, tenants[i], b.region)
			if err != nil {
				return err
			}
			if id == "" {
				var l api.Link
				if err := tenants[i].Do(ctx, "POST", "/api/v1/tenants/"+DevTenant+"/links", api.LinkCreate{Peer: b.region}, &l); err != nil {
					return gaveUp(ctx, err)
				}
				id = l.ID
			}
			if err := create(ctx, tenants[j], "/api/v1/tenants/"+DevTenant+"/links", api.LinkCreate{Peer: a.region, LinkID: id}); err != nil {
				return err
			}
		}
	}
	for _, r := range f.Regions {
		r.say("  region %s federated with %d peer(s); its tenant %q is linked to theirs", r.region, len(f.Regions)-1, DevTenant)
	}
	return nil
}

// linkID is the dev tenant's link to peer, "" when there is none.
func linkID(ctx context.Context, c *api.Client, peer string) (string, error) {
	var ls []api.Link
	if err := c.Do(ctx, "GET", "/api/v1/tenants/"+DevTenant+"/links", nil, &ls); err != nil {
		return "", gaveUp(ctx, err)
	}
	for _, l := range ls {
		if l.Peer == peer {
			return l.ID, nil
		}
	}
	return "", nil
}

// Stop stops every region, then removes a temporary data dir unless kept.
func (f *Federation) Stop(ctx context.Context) error {
	var errs []error
	for i := len(f.Regions) - 1; i >= 0; i-- {
		errs = append(errs, f.Regions[i].Stop(ctx))
	}
	if f.tempDir && !f.keep {
		errs = append(errs, os.RemoveAll(f.dataDir))
	}
	return errors.Join(errs...)
}

// WaitGlobal waits until the first region's global agents view has every
// peer ok (the dev banner is printed after it).
func (f *Federation) WaitGlobal(ctx context.Context, timeout time.Duration) error {
	r := f.Regions[0]
	tok, err := os.ReadFile(r.QueryTokenFile())
	if err != nil {
		return err
	}
	c := api.NewClient(r.APIURL(), strings.TrimSpace(string(tok)))
	c.Timeout = 5 * time.Second
	var last api.GlobalAgents
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := c.Do(ctx, "GET", "/api/v1/tenants/"+DevTenant+"/global/agents", nil, &last); err == nil && last.Complete {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return fmt.Errorf("the global view is not complete after %v: peers %+v", timeout, last.Peers)
}
