// Package federation is read-only federation between regions: every node
// serves HTTP/3 over QUIC on its federation port, and calls its region's
// peers for global views.
//
// A request is accepted only with both factors: mutual TLS where the
// client's node certificate chains to the CA pinned for the peer its
// region names, and an HMAC-SHA256 signature (package httpsig) with that
// peer's shared secret. The server routes GET only and reads through
// View, an interface with no write in it; federation imports neither raft
// nor lease nor storage, so it cannot compile a write. Tenant data is
// asked for and answered under link ids; the wire shapes (dto.go) have no
// tenant field. The client fans out with a deadline per peer, caps and
// strictly decodes each answer, and reports every peer's status
// (PeerStatus) so a partial answer is never taken for a full one.
package federation
