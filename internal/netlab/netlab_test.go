package netlab_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/internal/netlab"
)

func newLab(t *testing.T, n int) *netlab.Lab {
	t.Helper()
	if err := netlab.Available(); err != nil {
		t.Skipf("netlab needs root, ip and nft: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := netlab.New(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
	})
	return l
}

// echoOn serves one-line echoes on host i, port 7000.
func echoOn(t *testing.T, l *netlab.Lab, i int) string {
	t.Helper()
	addr := net.JoinHostPort(netlab.Addr(i), "7000")
	ln, err := l.Listen(i, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return addr
}

// reach says whether a round trip through addr works within 500ms.
func reach(dial func(ctx context.Context, network, addr string) (net.Conn, error), addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	b := make([]byte, 5)
	if _, err := io.ReadFull(c, b); err != nil {
		return err
	}
	if string(b) != "ping\n" {
		return errors.New("echo mangled: " + string(b))
	}
	return nil
}

// Isolation cuts a host from its peers both ways and leaves the bridge's
// view of it intact; healing restores it.
func TestIsolateCutsPeersNotTheBridge(t *testing.T) {
	l := newLab(t, 3)
	ctx := context.Background()
	a1, a2 := echoOn(t, l, 1), echoOn(t, l, 2)
	from := func(i int) func(context.Context, string, string) (net.Conn, error) {
		return func(ctx context.Context, n, a string) (net.Conn, error) { return l.DialFrom(ctx, i, n, a) }
	}
	if err := reach(from(1), a2); err != nil {
		t.Fatalf("host 1 → host 2 before any rule: %v", err)
	}
	if err := l.Isolate(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if rules, _ := l.Rules(ctx, 1); !strings.Contains(rules, "drop") {
		t.Fatalf("host 1 has no drop rule after Isolate:\n%s", rules)
	}
	if err := reach(from(1), a2); err == nil {
		t.Fatal("host 1 reached host 2 while isolated")
	}
	if err := reach(from(2), a1); err == nil {
		t.Fatal("host 2 reached host 1 while host 1 was isolated")
	}
	if err := reach(from(3), a2); err != nil {
		t.Fatalf("host 3 → host 2 while only host 1 is isolated: %v", err)
	}
	if err := reach(l.Dial, a1); err != nil {
		t.Fatalf("bridge → isolated host 1: %v", err)
	}
	if err := l.Heal(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := reach(from(1), a2); err != nil {
		t.Fatalf("host 1 → host 2 after the heal: %v", err)
	}
}

// Loss of 100% drops everything between peers; replacing it with 0%
// restores the link (rules are replaced, not stacked).
func TestLoseReplacesRules(t *testing.T) {
	l := newLab(t, 2)
	ctx := context.Background()
	a2 := echoOn(t, l, 2)
	from1 := func(ctx context.Context, n, a string) (net.Conn, error) { return l.DialFrom(ctx, 1, n, a) }
	if err := l.Lose(ctx, 1, 100); err != nil {
		t.Fatal(err)
	}
	if err := reach(from1, a2); err == nil {
		t.Fatal("a connection got through 100% loss")
	}
	if err := l.Lose(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	if err := reach(from1, a2); err != nil {
		t.Fatalf("0%% loss after 100%%: %v", err)
	}
	if err := l.Lose(ctx, 1, 101); err == nil {
		t.Fatal("Lose accepted 101%")
	}
	if err := l.Heal(ctx, 9); err == nil {
		t.Fatal("Heal accepted a host the lab does not have")
	}
}

// TestDialNeedsIPLiterals: a name is refused with a clear error before
// any namespace is entered (Go would resolve it outside the namespace).
func TestDialNeedsIPLiterals(t *testing.T) {
	var l netlab.Lab
	for _, addr := range []string{"localhost:80", "n1.example:7070", "10.77.0.1"} {
		if _, err := l.Dial(context.Background(), "tcp", addr); err == nil || !strings.Contains(err.Error(), "netlab") {
			t.Errorf("Dial(%q): %v, want a netlab error", addr, err)
		}
		if _, err := l.DialFrom(context.Background(), 1, "tcp", addr); err == nil || !strings.Contains(err.Error(), "netlab") {
			t.Errorf("DialFrom(%q): %v, want a netlab error", addr, err)
		}
	}
}
