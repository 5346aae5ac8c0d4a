package raft

import (
	"errors"
	"fmt"
	"strings"
	"sync"
)

// An entry's handler error crosses the node-to-node port when a follower
// forwarded the write. So that the follower's caller can still match it
// with errors.Is, sentinel errors are registered under stable codes: the
// leader sends the code of the first registered sentinel the error wraps
// with its text, and the follower's RemoteError unwraps to that sentinel.
// Codes, not texts, are the identity: a reworded message still matches.

var codes struct {
	sync.RWMutex
	byCode map[string]error
	order  []string
}

// RegisterError gives sentinel err the wire code code, once per process
// (packages call it from init). Registering a code twice with another
// error panics: it is a programming error found at start.
func RegisterError(code string, err error) {
	if code == "" || strings.ContainsRune(code, 0) || err == nil {
		panic("raft: RegisterError needs a code without NUL and an error")
	}
	codes.Lock()
	defer codes.Unlock()
	if codes.byCode == nil {
		codes.byCode = map[string]error{}
	}
	if have, ok := codes.byCode[code]; ok {
		if have != err {
			panic(fmt.Sprintf("raft: error code %q registered twice", code))
		}
		return
	}
	codes.byCode[code] = err
	codes.order = append(codes.order, code)
}

func init() { RegisterError("raft.bad_command", ErrBadCommand) }

// errorCode is the code of the first registered sentinel err wraps, or "".
func errorCode(err error) string {
	codes.RLock()
	defer codes.RUnlock()
	for _, c := range codes.order {
		if errors.Is(err, codes.byCode[c]) {
			return c
		}
	}
	return ""
}

// encodeEntryError is an entry error as sent to the forwarding node:
// "CODE\x00TEXT", or TEXT alone when no registered sentinel matches.
func encodeEntryError(err error) []byte {
	if c := errorCode(err); c != "" {
		return []byte(c + "\x00" + err.Error())
	}
	return []byte(err.Error())
}

// decodeEntryError reverses encodeEntryError. A node of an older version
// sends the text alone: Code is then "" and only the text remains.
func decodeEntryError(b []byte) *RemoteError {
	code, msg, ok := strings.Cut(string(b), "\x00")
	if !ok {
		return &RemoteError{Msg: code}
	}
	return &RemoteError{Code: code, Msg: msg}
}

// RemoteError is an entry's handler error reported by the leader for a
// write this node forwarded. It unwraps to the sentinel registered under
// Code, so errors.Is matches as it would on the leader.
type RemoteError struct {
	Code string // registered code; "" when the leader sent none
	Msg  string
}

func (e *RemoteError) Error() string { return e.Msg }

// Unwrap is the registered sentinel of e.Code, or nil.
func (e *RemoteError) Unwrap() error {
	codes.RLock()
	defer codes.RUnlock()
	return codes.byCode[e.Code]
}
