// Package node wires one Outpost node: it loads the config, opens the
// state store, joins the region (package raft), issues the node's
// certificate from the region CA (node/pki), and serves the HTTP API
// (node/httpapi). It implements nothing itself beyond that wiring.
//
// Only cmd/outpost and end-to-end tests import it.
package node
