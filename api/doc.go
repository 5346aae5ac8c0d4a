// Package api is the client side of the node's HTTP API: its JSON shapes
// (shared with the server, node/httpapi) and Client, the one Go client
// outpostctl, drills, dev mode, benchmarks and tests use, as consul/api
// and nomad/api are. It imports only the standard library, so a client
// links no server code (TestImportDirection in internal/pkgdoc).
package api
