package node

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/node/keys"
)

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig(strings.NewReader("region: eu-west\nnode_id: n1\ndata_dir: /tmp/x\nraft:\n  advertise: 10.0.0.1:7301\ngossip:\n  advertise: 10.0.0.1:7302\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.BootstrapExpect != 3 || c.HTTP.Bind != "127.0.0.1:7070" || c.Raft.HeartbeatTimeout != 500*time.Millisecond {
		t.Fatalf("defaults not applied: %+v", c)
	}
	if c.AdminTokenFile != "/tmp/x/admin.token" {
		t.Fatalf("admin_token_file default = %q", c.AdminTokenFile)
	}
	c, err = ParseConfig(strings.NewReader("region: eu\nnode_id: n1\nbootstrap_expect: 1\nraft:\n  bind: 127.0.0.1:7301\n  heartbeat_timeout: 1s\n  election_timeout: 2s\ngossip:\n  bind: 127.0.0.1:7302\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Raft.HeartbeatTimeout != time.Second || c.Raft.ElectionTimeout != 2*time.Second || c.Raft.MinQuorum != 0 {
		t.Fatalf("raft settings not decoded: %+v", c.Raft)
	}
}

func TestParseConfigRejects(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"unknown field names field and line", "region: eu\nnode_id: n1\nbootstrap_expct: 3\n", "line 3: field bootstrap_expct not found"},
		{"unknown nested field", "region: eu\nnode_id: n1\nraft:\n  heartbeat: 1s\n", "line 4: field heartbeat not found"},
		{"wrong type", "region: eu\nnode_id: n1\nbootstrap_expect: three\n", "line 3"},
		{"bad duration", "region: eu\nnode_id: n1\nraft:\n  heartbeat_timeout: soon\n", "line 4"},
		{"bad region name", "region: EU West\nnode_id: n1\n", "region \"EU West\""},
		{"bad node id", "region: eu\nnode_id: ''\n", "node_id"},
		{"even region size", "region: eu\nnode_id: n1\nbootstrap_expect: 4\n", "bootstrap_expect 4"},
		{"heartbeat too low", "region: eu\nnode_id: n1\nraft:\n  heartbeat_timeout: 10ms\n", "raft.heartbeat_timeout"},
		{"election below heartbeat", "region: eu\nnode_id: n1\nraft:\n  heartbeat_timeout: 1s\n  election_timeout: 500ms\n  leader_lease_timeout: 500ms\n", "raft.election_timeout"},
		{"half a TLS pair", "region: eu\nnode_id: n1\nhttp:\n  cert_file: a.pem\n", "http.cert_file and http.key_file"},
		{"bad log level", "region: eu\nnode_id: n1\nlog:\n  level: loud\n", "log.level"},
		{"min quorum above size", "region: eu\nnode_id: n1\nraft:\n  min_quorum: 5\n", "raft.min_quorum"},
		{"two documents", "region: eu\nnode_id: n1\n---\nregion: us\n", "one YAML document"},
		{"wildcard bind without advertise", "region: eu\nnode_id: n1\n", "set raft.advertise"},
		{"unspecified advertise", "region: eu\nnode_id: n1\nraft:\n  advertise: 0.0.0.0:7301\n", "raft.advertise"},
		{"advertise without port", "region: eu\nnode_id: n1\nraft:\n  advertise: 10.0.0.1\n", "raft.advertise"},
		{"bad seed", "region: eu\nnode_id: n1\nraft:\n  bind: 127.0.0.1:1\ngossip:\n  bind: 127.0.0.1:2\n  seeds: [nope]\n", "gossip.seeds[0]"},
		{"wildcard http without advertise_url", "region: eu\nnode_id: n1\nraft:\n  bind: 127.0.0.1:1\ngossip:\n  bind: 127.0.0.1:2\nhttp:\n  bind: 0.0.0.0:7070\n", "http.advertise_url"},
		{"trusted proxy not a prefix", "region: eu\nnode_id: n1\nraft:\n  bind: 127.0.0.1:1\ngossip:\n  bind: 127.0.0.1:2\nhttp:\n  trusted_proxies: [10.0.0.0/8, proxy.example]\n",
			`http.trusted_proxies[1] "proxy.example": not an IP address or CIDR prefix; write a CIDR prefix such as 10.0.0.0/8`},
		{"trusted proxy with host bits", "region: eu\nnode_id: n1\nraft:\n  bind: 127.0.0.1:1\ngossip:\n  bind: 127.0.0.1:2\nhttp:\n  trusted_proxies: [10.1.2.3/8]\n",
			`http.trusted_proxies[0] "10.1.2.3/8": has host bits set; write the network (10.0.0.0/8) or one address (10.1.2.3)`},
		{"trusting everyone", "region: eu\nnode_id: n1\nraft:\n  bind: 127.0.0.1:1\ngossip:\n  bind: 127.0.0.1:2\nhttp:\n  trusted_proxies: [0.0.0.0/0]\n",
			"http.trusted_proxies[0] \"0.0.0.0/0\": trusts every address"},
		{"too large", "region: eu\nnode_id: n1\n#" + strings.Repeat("x", maxConfigSize), "larger than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(strings.NewReader(tc.yaml))
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.yaml)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestGossipKey(t *testing.T) {
	dir := t.TempDir()
	kp, err := keys.New(make([]byte, 32), nil)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := keys.WriteFile(kp, p, PurposeGossipKey, []byte(content)); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("AAAAAAAAAAAAAAAAAAAAAA==\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OUTPOST_GOSSIP_KEY", "")
	cases := []struct {
		name, file, env, want string
	}{
		{"32-byte key file", write("good", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"), "", ""},
		{"env overrides", "", "AAAAAAAAAAAAAAAAAAAAAA==", ""},
		{"missing", "", "", "outpost keygen"},
		{"not base64", write("bad", "!!!"), "", "not base64"},
		{"wrong length", write("short", "AAAA"), "", "must be 16, 24 or 32"},
		{"unwrapped file", plain, "", "outpost keys wrap"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("OUTPOST_GOSSIP_KEY", tc.env)
			c := DefaultConfig()
			c.Gossip.KeyFile = tc.file
			_, err := c.GossipKey(kp)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// FuzzParseConfig: a config file is operator input; no bytes may panic
// the parser, and anything accepted must pass Validate.
func FuzzParseConfig(f *testing.F) {
	f.Add("region: eu\nnode_id: n1\n")
	f.Add("raft:\n  heartbeat_timeout: 1s\ngossip:\n  seeds: [a, b]\n")
	f.Add("region: [\n")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConfig(strings.NewReader(s))
		if err == nil {
			if verr := c.Validate(); verr != nil {
				t.Fatalf("accepted config fails Validate: %v", verr)
			}
		}
	})
}

// The shipped example config must stay a valid config.
func TestExampleConfigParses(t *testing.T) {
	c, err := LoadConfig("../deploy/node.example.yaml")
	if err != nil {
		t.Fatalf("deploy/node.example.yaml: %v", err)
	}
	if c.BootstrapExpect != 3 || len(c.Gossip.Seeds) == 0 || c.Raft.Advertise == "" {
		t.Fatalf("example is not a 3-node region member: %+v", c)
	}
}

// TestTrustedProxiesConfig: left out, no proxy is trusted; listed
// prefixes and single addresses are trusted, nothing else.
func TestTrustedProxiesConfig(t *testing.T) {
	const base = "region: eu\nnode_id: n1\nraft:\n  bind: 127.0.0.1:1\ngossip:\n  bind: 127.0.0.1:2\n"
	c, err := ParseConfig(strings.NewReader(base))
	if err != nil {
		t.Fatal(err)
	}
	if ps, err := c.HTTP.Proxies(); err != nil || len(c.HTTP.TrustedProxies) != 0 || ps.Trusts(netip.MustParseAddr("127.0.0.1")) {
		t.Fatalf("default trusted_proxies %q (%v): must trust nothing", c.HTTP.TrustedProxies, err)
	}
	c, err = ParseConfig(strings.NewReader(base + "http:\n  trusted_proxies: [10.1.0.0/16, \"2001:db8::7\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	ps, err := c.HTTP.Proxies()
	if err != nil {
		t.Fatal(err)
	}
	for a, want := range map[string]bool{"10.1.2.3": true, "10.2.0.1": false, "2001:db8::7": true, "2001:db8::8": false} {
		if got := ps.Trusts(netip.MustParseAddr(a)); got != want {
			t.Errorf("Trusts(%s) = %v, want %v", a, got, want)
		}
	}
}
