// Package lease holds the region's dispatch lease and its fencing tokens,
// and the dispatcher that issues fenced dispatches (ARCHITECTURE.md, "Lease and
// fencing").
//
// The lease lives in the FSM as State{Holder, Token, Duration}. Token only
// grows: each acquisition is a compare-and-set on the token it replaces.
// Only the Raft leader acquires (Manager), and only after waiting out the
// previous holder's lease, counted on its own monotonic clock from the last
// renewal it applied (FSM.Seen), so the wait overlaps the election. The
// holder renews through Raft every Duration/3 and stops dispatching at once
// when a renewal has not committed by Duration - DriftMargin after it
// started (self-fencing).
//
// Safety does not rest on the clocks: every dispatch is a Raft entry
// carrying the token, and the FSM refuses one whose token is not the
// current one or whose issuer is not the holder. Nodes deliver only
// committed dispatches (Hub, after the state file's commit). The waits
// guard effects outside the log.
//
// It imports raft and storage, never node (TestImportDirection in
// internal/pkgdoc).
package lease
