package agentwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// TestGuardRule: each guarded range refuses with its rule named, the
// narrowest first; IPv4-mapped IPv6 counts as IPv4 and zones are
// ignored; an allowed prefix lifts any rule.
func TestGuardRule(t *testing.T) {
	loop := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	for _, c := range []struct {
		name, addr string
		allow      []netip.Prefix
		want       string
	}{
		{"aws metadata", "169.254.169.254", nil, "cloud metadata 169.254.169.254/32"},
		{"aws metadata ipv6", "fd00:ec2::254", nil, "cloud metadata fd00:ec2::254/128"},
		{"alibaba metadata", "100.100.100.200", nil, "cloud metadata 100.100.100.200/32"},
		{"loopback", "127.0.0.1", nil, "loopback 127.0.0.0/8"},
		{"loopback elsewhere in /8", "127.3.2.1", nil, "loopback 127.0.0.0/8"},
		{"loopback ipv6", "::1", nil, "loopback ::1/128"},
		{"ipv4-mapped loopback", "::ffff:127.0.0.1", nil, "loopback 127.0.0.0/8"},
		{"ipv4-mapped metadata", "::ffff:a9fe:a9fe", nil, "cloud metadata 169.254.169.254/32"},
		{"link-local", "169.254.1.1", nil, "link-local 169.254.0.0/16"},
		{"link-local ipv6 zoned", "fe80::1%eth0", nil, "link-local fe80::/10"},
		{"unspecified", "0.0.0.0", nil, "unspecified 0.0.0.0/8"},
		{"unspecified ipv6", "::", nil, "unspecified ::/128"},
		{"broadcast", "255.255.255.255", nil, "broadcast 255.255.255.255/32"},
		{"multicast", "224.0.0.1", nil, "multicast 224.0.0.0/4"},
		{"multicast ipv6", "ff02::1", nil, "multicast ff00::/8"},
		{"private passes", "10.0.0.5", nil, ""},
		{"public passes", "2001:db8::1", nil, ""},
		{"loopback allowed", "127.0.0.1", loop, ""},
		{"mapped loopback allowed", "::ffff:127.0.0.1", loop, ""},
		{"ipv6 loopback not in an ipv4 allowance", "::1", loop, "loopback ::1/128"},
		{"metadata allowed by its link-local range", "169.254.169.254", []netip.Prefix{netip.MustParsePrefix("169.254.0.0/16")}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr := netip.MustParseAddr(c.addr)
			if got := GuardRule(addr, c.allow); got != c.want {
				t.Errorf("GuardRule(%s) = %q, want %q", c.addr, got, c.want)
			}
			if got := GuardedAddr(addr, c.allow); got != (c.want != "") {
				t.Errorf("GuardedAddr(%s) = %v, want %v", c.addr, got, c.want != "")
			}
		})
	}
	if got := GuardRule(netip.Addr{}, nil); got == "" {
		t.Error("the zero Addr passed the guard")
	}
}

// TestGuardHost: literals (bracketed, zoned, mapped), metadata and
// localhost names, and the numeric forms inet_aton reads but
// netip.ParseAddr does not, which are refused whatever is allowed.
func TestGuardHost(t *testing.T) {
	all := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	for _, c := range []struct {
		host  string
		allow []netip.Prefix
		want  string
	}{
		{"127.0.0.1", nil, "loopback 127.0.0.0/8"},
		{"[::1]", nil, "loopback ::1/128"},
		{"[fe80::1%eth0]", nil, "link-local fe80::/10"},
		{"169.254.169.254.", nil, "cloud metadata 169.254.169.254/32"},
		{"LOCALHOST", nil, "loopback name localhost"},
		{"db.localhost.", nil, "loopback name db.localhost"},
		{"localhost", all, ""},
		{"Metadata.Google.Internal.", nil, "metadata service name metadata.google.internal"},
		{"metadata.google.internal", []netip.Prefix{netip.MustParsePrefix("169.254.169.254/32")}, ""},
		// Numeric forms: decimal, octal, hex, short forms, leading zeros.
		{"2852039166", nil, "ambiguous IPv4 form (inet_aton reads 169.254.169.254)"},
		{"2852039166", all, "ambiguous IPv4 form (inet_aton reads 169.254.169.254)"},
		{"0251.0376.0251.0376", nil, "ambiguous IPv4 form (inet_aton reads 169.254.169.254)"},
		{"0xa9.0xfe.0xa9.0xfe", nil, "ambiguous IPv4 form (inet_aton reads 169.254.169.254)"},
		{"0xA9FEA9FE", nil, "ambiguous IPv4 form (inet_aton reads 169.254.169.254)"},
		{"169.254.43518", nil, "ambiguous IPv4 form (inet_aton reads 169.254.169.254)"},
		{"169.16689662", nil, "ambiguous IPv4 form (inet_aton reads 169.254.169.254)"},
		{"127.1", nil, "ambiguous IPv4 form (inet_aton reads 127.0.0.1)"},
		{"0", nil, "ambiguous IPv4 form (inet_aton reads 0.0.0.0)"},
		{"010.0.0.1", nil, "ambiguous IPv4 form (inet_aton reads 8.0.0.1)"},
		{"167772165", nil, "ambiguous IPv4 form (inet_aton reads 10.0.0.5)"},
		// Names, including ones that only look numeric, pass (the agent
		// checks what they resolve to).
		{"db.internal", nil, ""},
		{"10.0.0.5", nil, ""},
		{"1.2.3.4.5", nil, ""},
		{"08.1.2.3", nil, ""},
		{"0x", nil, ""},
		{"4294967296", nil, ""},
		{"256.1.1.1", nil, ""},
		{"1.2.65536", nil, ""},
		{"123.example", nil, ""},
	} {
		t.Run(c.host, func(t *testing.T) {
			if got := GuardHost(c.host, c.allow); got != c.want {
				t.Errorf("GuardHost(%q) = %q, want %q", c.host, got, c.want)
			}
		})
	}
}

// TestGuardTargetsNamesRule: the refusal names the target and the rule,
// and says what to do next.
func TestGuardTargetsNamesRule(t *testing.T) {
	for _, c := range []struct {
		name  string
		probe Probe
		want  []string
	}{
		{"loopback url", Probe{Kind: "http", Target: "http://127.0.0.1:8080/health"},
			[]string{"probes[0]", "http://127.0.0.1:8080/health", "rule loopback 127.0.0.0/8", "probe_allow"}},
		{"localhost tcp", Probe{Kind: "tcp", Target: "localhost:22"}, []string{"rule loopback name localhost", "probe_allow"}},
		{"metadata ipv6", Probe{Kind: "http", Target: "http://[fd00:ec2::254]/"}, []string{"rule cloud metadata fd00:ec2::254/128"}},
		{"metadata name", Probe{Kind: "dns", Target: "metadata.goog"}, []string{"rule metadata service name metadata.goog"}},
		{"decimal url host", Probe{Kind: "http", Target: "http://2852039166/latest/"},
			[]string{"rule ambiguous IPv4 form (inet_aton reads 169.254.169.254)", "dotted decimal"}},
		{"octal icmp", Probe{Kind: "icmp", Target: "0177.0.0.1"}, []string{"ambiguous IPv4 form (inet_aton reads 127.0.0.1)"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Config{Probes: []Probe{c.probe}}.GuardTargets(nil)
			if !errors.Is(err, ErrGuardedTarget) {
				t.Fatalf("not refused: %v", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestValidateProbeAllow: probe_allow holds at most MaxProbeAllow masked
// CIDR ranges.
func TestValidateProbeAllow(t *testing.T) {
	many := make([]string, MaxProbeAllow+1)
	for i := range many {
		many[i] = fmt.Sprintf("10.%d.0.0/16", i)
	}
	for _, c := range []struct {
		name  string
		allow []string
		ok    bool
	}{
		{"none", nil, true},
		{"ranges", []string{"127.0.0.0/8", "169.254.10.0/24", "::1/128"}, true},
		{"at the limit", many[:MaxProbeAllow], true},
		{"over the limit", many, false},
		{"host bits set", []string{"169.254.0.1/16"}, false},
		{"an address", []string{"127.0.0.1"}, false},
		{"junk", []string{"loopback"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Config{ProbeAllow: c.allow}.Validate()
			if (err == nil) != c.ok {
				t.Errorf("Validate: %v, want ok %v", err, c.ok)
			}
		})
	}
	cfg, err := ParseConfig([]byte(`{"probe_allow":["127.0.0.0/8"],"probes":[{"kind":"tcp","target":"127.0.0.1:22"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	allow, err := ParseProbeAllow(cfg.ProbeAllow)
	if err != nil || len(allow) != 1 || allow[0] != netip.MustParsePrefix("127.0.0.0/8") {
		t.Fatalf("ParseProbeAllow = %v, %v", allow, err)
	}
	if err := cfg.GuardTargets(allow); err != nil {
		t.Errorf("allowed loopback refused: %v", err)
	}
}

// TestValidateTargets: a target with no host, or with spaces or control
// characters in its host, is malformed.
func TestValidateTargets(t *testing.T) {
	for _, c := range []struct {
		probe Probe
		ok    bool
	}{
		{Probe{Kind: "tcp", Target: "db:5432"}, true},
		{Probe{Kind: "tcp", Target: ":5432"}, false},
		{Probe{Kind: "tcp", Target: "169.254.169.254 x:80"}, false},
		{Probe{Kind: "tcp", Target: "db\t:80"}, false},
		{Probe{Kind: "http", Target: "http://:8080/"}, false},
		{Probe{Kind: "http", Target: "https://db.internal/health"}, true},
		{Probe{Kind: "icmp", Target: "db\x00"}, false},
		{Probe{Kind: "dns", Target: "example.org"}, true},
	} {
		t.Run(c.probe.Kind+" "+c.probe.Target, func(t *testing.T) {
			if err := c.probe.Validate(); (err == nil) != c.ok {
				t.Errorf("Validate: %v, want ok %v", err, c.ok)
			}
		})
	}
}

// FuzzParseInetAton: every inet_aton spelling of an address (decimal,
// octal and hex parts, one to four of them) reads as that address, and
// the guard refuses every one that netip.ParseAddr does not read.
func FuzzParseInetAton(f *testing.F) {
	f.Add(uint32(0xa9fea9fe), uint8(0), uint8(4))
	f.Add(uint32(0x7f000001), uint8(1), uint8(2))
	f.Add(uint32(0), uint8(2), uint8(1))
	f.Fuzz(func(t *testing.T, n uint32, base, parts uint8) {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], n)
		want := netip.AddrFrom4(b)
		k := int(parts%4) + 1
		vals := make([]uint64, k)
		for i := range k - 1 {
			vals[i] = uint64(b[i])
		}
		vals[k-1] = uint64(n) & (1<<(8*(5-k)) - 1)
		strs := make([]string, k)
		for i, v := range vals {
			switch base % 3 {
			case 0:
				strs[i] = fmt.Sprintf("%d", v)
			case 1:
				strs[i] = fmt.Sprintf("0%o", v)
			case 2:
				strs[i] = fmt.Sprintf("0x%x", v)
			}
		}
		s := strings.Join(strs, ".")
		got, ok := parseInetAton(s)
		if !ok || got != want {
			t.Fatalf("parseInetAton(%q) = %v, %v; want %v", s, got, ok, want)
		}
		if _, err := netip.ParseAddr(s); err == nil {
			return // dotted decimal: the guard reads it as the address
		}
		if rule := GuardHost(s, nil); !strings.HasPrefix(rule, "ambiguous IPv4 form") {
			t.Fatalf("GuardHost(%q) = %q, want an ambiguous IPv4 form refusal", s, rule)
		}
	})
}

// FuzzGuardHost: any host string is answered without a panic, and a
// guarded address literal is never passed without an allowance.
func FuzzGuardHost(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "[::ffff:127.0.0.1]", "fe80::1%25eth0", "2852039166", "0x7f.1", "metadata.", "a..b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		rule := GuardHost(host, nil)
		h := strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
		if addr, err := netip.ParseAddr(h); err == nil && GuardRule(addr, nil) != rule {
			t.Fatalf("GuardHost(%q) = %q, GuardRule = %q", host, rule, GuardRule(addr, nil))
		}
	})
}

// TestGuardEmbeddedIPv4: a NAT64 or 6to4 address embedding a guarded IPv4
// address is refused with the IPv4 rule; the allowance of the IPv4 range
// lets it through; Azure's WireServer is a metadata address.
func TestGuardEmbeddedIPv4(t *testing.T) {
	for addr, want := range map[string]string{
		"64:ff9b::a9fe:a9fe":   "cloud metadata 169.254.169.254/32 (embedded in 64:ff9b::a9fe:a9fe)",
		"64:ff9b:1::7f00:1":    "loopback 127.0.0.0/8 (embedded in 64:ff9b:1::7f00:1)",
		"2002:a9fe:a9fe::1":    "cloud metadata 169.254.169.254/32 (embedded in 2002:a9fe:a9fe::1)",
		"64:ff9b::a00:5":       "",
		"168.63.129.16":        "cloud metadata 168.63.129.16/32",
		"::ffff:168.63.129.16": "cloud metadata 168.63.129.16/32",
	} {
		if got := GuardRule(netip.MustParseAddr(addr), nil); got != want {
			t.Errorf("GuardRule(%s) = %q, want %q", addr, got, want)
		}
	}
	if got := GuardRule(netip.MustParseAddr("64:ff9b::7f00:1"), []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}); got != "" {
		t.Errorf("allowed loopback embedded in NAT64 refused: %q", got)
	}
}
