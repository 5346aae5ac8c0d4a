package node_test

import (
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/outpost-mesh/outpost/node"
)

// A port in use fails node.Start with an error that names the config
// field and still is syscall.EADDRINUSE, so callers (a dev node
// restarting on its old ports) match it by identity, not by text.
func TestBindErrorsKeepTheirIdentity(t *testing.T) {
	for _, field := range []string{"http.bind", "raft.bind"} {
		t.Run(field, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			cfg := nodeConfig(t, t.TempDir())
			switch field {
			case "http.bind":
				cfg.HTTP.Bind = l.Addr().String()
			case "raft.bind":
				cfg.Raft.Bind = l.Addr().String()
			}
			n, err := node.Start(cfg, node.Options{Keys: mustKeys(t, newMasterKey(t), nil), GossipKey: make([]byte, 32)})
			if err == nil {
				n.Kill()
				t.Fatalf("node.Start with %s on a port in use succeeded", field)
			}
			if !errors.Is(err, syscall.EADDRINUSE) {
				t.Errorf("error %q is not syscall.EADDRINUSE", err)
			}
			if !strings.Contains(err.Error(), field) || !strings.Contains(err.Error(), "choose another") {
				t.Errorf("error %q does not name %s and what to do", err, field)
			}
		})
	}
}
