// Package node wires one Outpost node: it loads the config, opens the
// state store, joins the region (package raft), issues the node's
// certificate from the region CA (node/pki), and serves the HTTP API
// (node/httpapi). It implements nothing itself beyond that wiring.
//
// Nothing below it imports it: cmd/outpost, dev mode (package dev) and
// the tests' node cluster (internal/testcluster/nodes) do.
package node
