package raft

import (
	"errors"
	"fmt"
	"testing"
)

var errTestSentinel = errors.New("test sentinel refusal")

func init() { RegisterError("raft.test_sentinel", errTestSentinel) }

// TestEntryErrorsKeepTheirIdentity: a handler error that wraps a
// registered sentinel matches it with errors.Is after the trip to the
// forwarding node, whatever its text says; an unregistered error stays
// text; a code-less answer (an older node) is text alone.
func TestEntryErrorsKeepTheirIdentity(t *testing.T) {
	wrapped := fmt.Errorf("applying entry 7: %w: token 3", errTestSentinel)
	got := decodeEntryError(encodeEntryError(wrapped))
	if !errors.Is(got, errTestSentinel) || got.Error() != wrapped.Error() || got.Code != "raft.test_sentinel" {
		t.Fatalf("round trip of a wrapped sentinel: %#v", got)
	}
	bad := decodeEntryError(encodeEntryError(fmt.Errorf("%w: no such op", ErrBadCommand)))
	if !errors.Is(bad, ErrBadCommand) {
		t.Fatalf("ErrBadCommand lost its identity: %#v", bad)
	}
	// The identity is the code, not the text: the same words unwrapped
	// are not the sentinel.
	text := decodeEntryError(encodeEntryError(errors.New(errTestSentinel.Error())))
	if errors.Is(text, errTestSentinel) || text.Code != "" {
		t.Fatalf("an unregistered error with the sentinel's text matched it: %#v", text)
	}
	old := decodeEntryError([]byte("stale fencing token"))
	if old.Code != "" || old.Msg != "stale fencing token" || old.Unwrap() != nil {
		t.Fatalf("code-less answer: %#v", old)
	}
}

// TestRegisterErrorTwicePanics: two sentinels under one code is a
// programming error found at start.
func TestRegisterErrorTwicePanics(t *testing.T) {
	RegisterError("raft.test_sentinel", errTestSentinel) // the same pair again is fine
	defer func() {
		if recover() == nil {
			t.Fatal("registering another error under a used code did not panic")
		}
	}()
	RegisterError("raft.test_sentinel", errors.New("another"))
}
