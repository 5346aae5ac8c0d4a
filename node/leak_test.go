package node_test

import (
	"fmt"
	"net/http"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/outpost-mesh/outpost/internal/leakcheck"
)

// TestMain fails the package's tests if they leave goroutines running.
// Client-side keep-alive connections are not counted: the tests call the
// nodes with http.DefaultClient (closed here) and with clients of their
// own (an agent's TLS client, a third-party OpAMP client), whose idle
// connections are the test's, not a node's. A node's own goroutines, its
// server-side connections included, still fail the run.
func TestMain(m *testing.M) {
	code := m.Run()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(append(leakcheck.Ignored,
			goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		)...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines left running after the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
