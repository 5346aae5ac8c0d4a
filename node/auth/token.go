package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"regexp"
	"strings"
)

// API tokens look like opt_<id>_<secret>: the id (12 hex) finds the
// record, the whole token's SHA-256 is compared with the stored one.
const tokenPrefix = "opt_"

var tokenIDPattern = regexp.MustCompile(`^[0-9a-f]{12}$`)

// NewToken returns a fresh API token and its id.
func NewToken() (token, id string) { return NewPrefixedToken(tokenPrefix) }

// NewPrefixedToken returns a fresh PREFIX<id>_<secret> token (12-hex id,
// 256-bit secret, base64url) and its id: API tokens, agent bootstrap
// tokens.
func NewPrefixedToken(prefix string) (token, id string) {
	idb := make([]byte, 6)
	sec := make([]byte, 32)
	_, _ = rand.Read(idb)
	_, _ = rand.Read(sec)
	id = hex.EncodeToString(idb)
	return prefix + id + "_" + base64.RawURLEncoding.EncodeToString(sec), id
}

// PrefixedTokenID extracts the id and secret of a well-formed
// PREFIX<id>_<secret> token.
func PrefixedTokenID(prefix, token string) (id, secret string, ok bool) {
	rest, ok := strings.CutPrefix(token, prefix)
	if !ok {
		return "", "", false
	}
	id, sec, ok := strings.Cut(rest, "_")
	if !ok || !tokenIDPattern.MatchString(id) {
		return "", "", false
	}
	return id, sec, true
}

// tokenID extracts the id of a well-formed API token.
func tokenID(token string) (string, bool) {
	id, sec, ok := PrefixedTokenID(tokenPrefix, token)
	if !ok || len(sec) < 32 || len(sec) > 64 {
		return "", false
	}
	return id, true
}

// TokenHash is the stored form of a token.
func TokenHash(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return []byte(hex.EncodeToString(sum[:]))
}

func tokenMatches(token string, stored []byte) bool {
	return len(stored) > 0 && subtle.ConstantTimeCompare(TokenHash(token), stored) == 1
}

// NewID returns a random id of n bytes, hex-encoded (tenant, grant ids).
func NewID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
