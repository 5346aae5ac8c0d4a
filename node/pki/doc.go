// Package pki owns the region's certificate authority: creating it, loading
// it, issuing node certificates, and the mutual-TLS configuration nodes use
// to talk to each other. A node certificate names its region and node in a
// URI SAN (outpost://REGION/node/ID); peers check it, so a certificate from
// the same CA issued to something other than a node of this region (an
// agent, later) cannot join the Raft group.
//
// It stands apart from the region's state: TestImportDirection
// (internal/pkgdoc) keeps raft, storage and the API out of its imports.
package pki
