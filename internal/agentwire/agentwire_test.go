package agentwire

import (
	"errors"
	"net/netip"
	"testing"
)

// TestGuardTargets: probe targets at link-local, metadata, unspecified
// or multicast addresses (as literals in any probe kind, or metadata
// services by name) are refused unless an allowed range holds them;
// other names pass here, to be checked on the agent once resolved.
func TestGuardTargets(t *testing.T) {
	allow := []netip.Prefix{netip.MustParsePrefix("169.254.10.0/24")}
	for _, c := range []struct {
		kind, target string
		refused      bool
	}{
		{"http", "http://169.254.169.254/latest/meta-data/", true},
		{"http", "http://[fd00:ec2::254]/latest", true},
		{"http", "http://METADATA.google.internal./computeMetadata/v1/", true},
		{"tcp", "[fe80::1%eth0]:22", true},
		{"tcp", "100.100.100.200:80", true},
		{"icmp", "0.0.0.0", true},
		{"icmp", "224.0.0.1", true},
		{"dns", "instance-data", true},
		{"tcp", "[::ffff:169.254.169.254]:80", true},
		{"http", "http://169.254.10.7/allowed", false},
		{"tcp", "10.0.0.5:5432", false},
		{"http", "https://db.internal/health", false},
		{"dns", "example.org", false},
	} {
		err := Config{Probes: []Probe{{Kind: c.kind, Target: c.target}}}.GuardTargets(allow)
		if got := errors.Is(err, ErrGuardedTarget); got != c.refused {
			t.Errorf("%s %s: refused %v (%v), want %v", c.kind, c.target, got, err, c.refused)
		}
	}
}
