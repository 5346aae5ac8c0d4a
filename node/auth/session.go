package auth

import (
	"crypto/ecdsa"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

// CookieName is the session cookie.
const CookieName = api.SessionCookie

// SessionTTL is how long a login lasts.
const SessionTTL = 12 * time.Hour

// Sessions signs and checks session cookies. The key is derived from the
// region CA key (HKDF-SHA256, salted with the region), so every node of
// the region accepts a cookie any node issued, a cookie from another
// region never verifies, and no further secret is stored.
type Sessions struct {
	region string
	key    []byte
}

// NewSessions derives the region's session key.
func NewSessions(region string, caKey *ecdsa.PrivateKey) (*Sessions, error) {
	secret, err := caKey.Bytes()
	if err != nil {
		return nil, err
	}
	key, err := hkdf.Key(sha256.New, secret, []byte(region), "outpost session cookie key v1", 32)
	if err != nil {
		return nil, err
	}
	return &Sessions{region: region, key: key}, nil
}

type sessionClaims struct {
	Region  string `json:"r"`
	User    string `json:"u"`
	Epoch   string `json:"e"`
	Issued  int64  `json:"iat"`
	Expires int64  `json:"exp"`
}

// Session errors, each a 401 for the caller.
var (
	ErrBadSession     = errors.New("session cookie is not valid (forged, damaged, or from another region); log in again")
	ErrSessionExpired = errors.New("session expired; log in again")
)

// Issue returns a cookie value for user, valid for SessionTTL from now.
func (s *Sessions) Issue(u User, now time.Time) (value string, expires time.Time) {
	expires = now.Add(SessionTTL)
	body, _ := json.Marshal(sessionClaims{Region: s.region, User: u.Name, Epoch: u.Epoch, Issued: now.Unix(), Expires: expires.Unix()})
	p := base64.RawURLEncoding.EncodeToString(body)
	return p + "." + base64.RawURLEncoding.EncodeToString(s.mac(p)), expires
}

func (s *Sessions) mac(payload string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("outpost-session\x00"))
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// parse checks a cookie value's signature, region and expiry.
func (s *Sessions) parse(value string, now time.Time) (sessionClaims, error) {
	var c sessionClaims
	p, sig, ok := strings.Cut(value, ".")
	if !ok || len(value) > 4096 {
		return c, ErrBadSession
	}
	got, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(p)) {
		return c, ErrBadSession
	}
	body, err := base64.RawURLEncoding.Strict().DecodeString(p)
	if err != nil || json.Unmarshal(body, &c) != nil || c.Region != s.region || c.User == "" {
		return c, ErrBadSession
	}
	if now.Unix() >= c.Expires {
		return c, ErrSessionExpired
	}
	return c, nil
}
