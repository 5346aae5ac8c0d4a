// Package httpsig signs and verifies federation requests with HMAC-SHA256
// in the shape of RFC 9421 (HTTP Message Signatures): the covered
// components are "@method", "@path", "@query" and "content-digest" (RFC
// 9530, sha-256 of the body), with the parameters created, nonce, keyid
// and alg, carried in Signature-Input and Signature as structured fields
// (RFC 9651). A verifier accepts a request only within ±Window of its
// created time, only once per nonce (a bounded replay cache), and compares
// the MAC in constant time. It is the second factor of federation's
// request authentication; mutual TLS with the peer's pinned CA is the
// first.
package httpsig

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dunglas/httpsfv"
)

// Label is the signature's label in Signature-Input and Signature.
const Label = "sig1"

// Alg is the algorithm parameter.
const Alg = "hmac-sha256"

// Window is how far a request's created time may be from the verifier's
// clock.
const Window = 30 * time.Second

// MaxBody bounds the body a verifier reads to check its digest.
const MaxBody = 1 << 20

// covered are the components every signature covers, in order.
var covered = []string{"@method", "@path", "@query", "content-digest"}

// Refusals, each wrapped by Verify's error. Callers tell them apart with
// errors.Is (and audit them); none is matched by text.
var (
	ErrMissing      = errors.New("request not signed: Signature-Input, Signature or Content-Digest missing")
	ErrMalformed    = errors.New("signature headers malformed")
	ErrUnknownKey   = errors.New("signature names an unknown key")
	ErrSkew         = errors.New("signature created outside the accepted window")
	ErrDigest       = errors.New("content digest does not match the body")
	ErrBadSignature = errors.New("signature does not verify")
	ErrReplay       = errors.New("nonce seen before: replayed request")
	ErrBusy         = errors.New("replay cache full: too many signed requests in the window")
)

// Sign signs r (its body, if any, is read and put back) with the secret of
// keyID at now, adding Content-Digest, Signature-Input and Signature.
func Sign(r *http.Request, keyID string, secret []byte, now time.Time) error {
	body, err := readBody(r, MaxBody)
	if err != nil {
		return err
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	digest := contentDigest(body)
	r.Header.Set("Content-Digest", digest)
	params := httpsfv.NewParams()
	params.Add("created", now.Unix())
	params.Add("nonce", base64.RawURLEncoding.EncodeToString(nonce))
	params.Add("keyid", keyID)
	params.Add("alg", Alg)
	items := make([]httpsfv.Item, len(covered))
	for i, c := range covered {
		items[i] = httpsfv.NewItem(c)
	}
	list := httpsfv.InnerList{Items: items, Params: params}
	sigParams, err := httpsfv.Marshal(list)
	if err != nil {
		return err
	}
	mac := sum(secret, base(r, digest, sigParams))
	input := httpsfv.NewDictionary()
	input.Add(Label, list)
	sig := httpsfv.NewDictionary()
	sig.Add(Label, httpsfv.NewItem(mac))
	in, err := httpsfv.Marshal(input)
	if err != nil {
		return err
	}
	out, err := httpsfv.Marshal(sig)
	if err != nil {
		return err
	}
	r.Header.Set("Signature-Input", in)
	r.Header.Set("Signature", out)
	return nil
}

// Verifier checks signed requests.
type Verifier struct {
	// Key returns the secret of a key id (a peer), false if unknown.
	Key func(keyID string) ([]byte, bool)
	// Now is the clock (default time.Now).
	Now func() time.Time
	// MaxNonces bounds the replay cache (default 100,000): beyond it,
	// new requests are refused until entries expire.
	MaxNonces int
	// MaxPerKey bounds one key's (one peer's) share of the cache
	// (default MaxNonces/4), so a peer sending at a high rate fills its
	// own share and refuses itself, not the other peers.
	MaxPerKey int

	mu     sync.Mutex
	nonces map[string]nonce // keyid + nonce → its key and when it may be forgotten
	perKey map[string]int
	swept  time.Time
}

type nonce struct {
	key   string
	until time.Time
}

// Verified is what a request's signature established.
type Verified struct {
	KeyID   string
	Created time.Time
}

// Verify checks r's signature; its body is read (at most MaxBody) and put
// back. A request passes only if every check passes; the error wraps one
// of the Err… refusals.
func (v *Verifier) Verify(r *http.Request) (Verified, error) {
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	inputs, sigs, digest := r.Header.Values("Signature-Input"), r.Header.Values("Signature"), r.Header.Values("Content-Digest")
	if len(inputs) == 0 || len(sigs) == 0 || len(digest) == 0 {
		return Verified{}, ErrMissing
	}
	if len(digest) != 1 {
		return Verified{}, fmt.Errorf("%w: more than one Content-Digest", ErrMalformed)
	}
	input, err := httpsfv.UnmarshalDictionary(inputs)
	if err != nil {
		return Verified{}, fmt.Errorf("%w: Signature-Input: %v", ErrMalformed, err)
	}
	sigDict, err := httpsfv.UnmarshalDictionary(sigs)
	if err != nil {
		return Verified{}, fmt.Errorf("%w: Signature: %v", ErrMalformed, err)
	}
	m, ok := input.Get(Label)
	list, isList := m.(httpsfv.InnerList)
	if !ok || !isList {
		return Verified{}, fmt.Errorf("%w: Signature-Input has no inner list %q", ErrMalformed, Label)
	}
	var comps []string
	for _, it := range list.Items {
		s, ok := it.Value.(string)
		if !ok || len(it.Params.Names()) > 0 {
			return Verified{}, fmt.Errorf("%w: a covered component is not a plain string", ErrMalformed)
		}
		comps = append(comps, s)
	}
	if !slices.Equal(comps, covered) {
		return Verified{}, fmt.Errorf("%w: covered components %q, want %q", ErrMalformed, comps, covered)
	}
	created, ok1 := param[int64](list.Params, "created")
	nonce, ok2 := param[string](list.Params, "nonce")
	keyID, ok3 := param[string](list.Params, "keyid")
	alg, hasAlg := param[string](list.Params, "alg")
	if !ok1 || !ok2 || !ok3 || nonce == "" || len(nonce) > 128 || keyID == "" || hasAlg && alg != Alg {
		return Verified{}, fmt.Errorf("%w: created, nonce and keyid are required, alg must be %s", ErrMalformed, Alg)
	}
	sm, ok := sigDict.Get(Label)
	sigItem, isItem := sm.(httpsfv.Item)
	got, isBytes := sigItem.Value.([]byte)
	if !ok || !isItem || !isBytes {
		return Verified{}, fmt.Errorf("%w: Signature has no byte sequence %q", ErrMalformed, Label)
	}
	secret, ok := v.Key(keyID)
	if !ok {
		return Verified{}, fmt.Errorf("%w: %q", ErrUnknownKey, keyID)
	}
	at := time.Unix(created, 0)
	if d := now.Sub(at); d > Window || d < -Window {
		return Verified{}, fmt.Errorf("%w: created %s, %v from this node's clock (±%v accepted)", ErrSkew, at.UTC().Format(time.RFC3339), d.Round(time.Second), Window)
	}
	body, err := readBody(r, MaxBody)
	if err != nil {
		return Verified{}, fmt.Errorf("%w: body: %v", ErrMalformed, err)
	}
	if !hmac.Equal([]byte(digest[0]), []byte(contentDigest(body))) {
		return Verified{}, ErrDigest
	}
	sigParams, err := httpsfv.Marshal(list)
	if err != nil {
		return Verified{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !hmac.Equal(got, sum(secret, base(r, digest[0], sigParams))) {
		return Verified{}, ErrBadSignature
	}
	// Only a request that verified takes a place in the replay cache.
	if err := v.remember(keyID, nonce, now); err != nil {
		return Verified{}, err
	}
	return Verified{KeyID: keyID, Created: at}, nil
}

func (v *Verifier) remember(keyID, n string, now time.Time) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.nonces == nil {
		v.nonces, v.perKey = map[string]nonce{}, map[string]int{}
	}
	if now.Sub(v.swept) > Window {
		for k, e := range v.nonces {
			if now.After(e.until) {
				delete(v.nonces, k)
				if v.perKey[e.key]--; v.perKey[e.key] <= 0 {
					delete(v.perKey, e.key)
				}
			}
		}
		v.swept = now
	}
	k := keyID + "\x00" + n
	if e, seen := v.nonces[k]; seen && !now.After(e.until) {
		return ErrReplay
	}
	limit := v.MaxNonces
	if limit <= 0 {
		limit = 100_000
	}
	perKey := v.MaxPerKey
	if perKey <= 0 {
		perKey = max(limit/4, 1)
	}
	if len(v.nonces) >= limit {
		return ErrBusy
	}
	if v.perKey[keyID] >= perKey {
		return fmt.Errorf("%w (this key's share, %d requests in %v)", ErrBusy, perKey, 2*Window)
	}
	// A nonce is kept as long as its request could still be accepted.
	if _, had := v.nonces[k]; !had {
		v.perKey[keyID]++
	}
	v.nonces[k] = nonce{key: keyID, until: now.Add(2 * Window)}
	return nil
}

func param[T any](p *httpsfv.Params, name string) (T, bool) {
	var zero T
	if p == nil {
		return zero, false
	}
	v, ok := p.Get(name)
	if !ok {
		return zero, false
	}
	t, ok := v.(T)
	return t, ok
}

// base is the signature base (RFC 9421 §2.5).
func base(r *http.Request, digest, sigParams string) []byte {
	query := "?" + r.URL.RawQuery
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\"@method\": %s\n", r.Method)
	fmt.Fprintf(&b, "\"@path\": %s\n", path)
	fmt.Fprintf(&b, "\"@query\": %s\n", query)
	fmt.Fprintf(&b, "\"content-digest\": %s\n", digest)
	fmt.Fprintf(&b, "\"@signature-params\": %s", sigParams)
	return []byte(b.String())
}

func sum(secret, data []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write(data)
	return h.Sum(nil)
}

// contentDigest is RFC 9530's Content-Digest of body with sha-256.
func contentDigest(body []byte) string {
	s := sha256.Sum256(body)
	return "sha-256=:" + base64.StdEncoding.EncodeToString(s[:]) + ":"
}

// readBody reads r's body (at most max bytes) and puts it back.
func readBody(r *http.Request, max int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	r.Body.Close()
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("body over %d bytes", max)
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b, nil
}
