package httpsig

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	secret = []byte("0123456789abcdef0123456789abcdef")
	t0     = time.Unix(1_800_000_000, 0)
)

func verifier(at time.Time) *Verifier {
	return &Verifier{
		Key: func(id string) ([]byte, bool) {
			if id == "eu-west" {
				return secret, true
			}
			return nil, false
		},
		Now: func() time.Time { return at },
	}
}

func signed(t *testing.T, method, target, body string, at time.Time) *http.Request {
	t.Helper()
	var r *http.Request
	if body == "" {
		r = httptest.NewRequest(method, target, nil)
	} else {
		r = httptest.NewRequest(method, target, strings.NewReader(body))
	}
	if err := Sign(r, "eu-west", secret, at); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestSignatureFormat: the headers are RFC 9421 / RFC 9530 structured
// fields with the covered components and parameters the design names.
func TestSignatureFormat(t *testing.T) {
	r := signed(t, "GET", "https://peer/api/v1/agents?link=l1", "", t0)
	in := r.Header.Get("Signature-Input")
	want := regexp.MustCompile(`^sig1=\("@method" "@path" "@query" "content-digest"\);created=1800000000;nonce="[A-Za-z0-9_-]{22}";keyid="eu-west";alg="hmac-sha256"$`)
	if !want.MatchString(in) {
		t.Fatalf("Signature-Input %q", in)
	}
	if sig := r.Header.Get("Signature"); !regexp.MustCompile(`^sig1=:[A-Za-z0-9+/]{43}=:$`).MatchString(sig) {
		t.Fatalf("Signature %q", sig)
	}
	if d := r.Header.Get("Content-Digest"); d != "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:" {
		t.Fatalf("Content-Digest of an empty body %q", d)
	}
	got := string(base(r, r.Header.Get("Content-Digest"), strings.TrimPrefix(in, "sig1=")))
	if !strings.HasPrefix(got, "\"@method\": GET\n\"@path\": /api/v1/agents\n\"@query\": ?link=l1\n\"content-digest\": sha-256=:") ||
		!strings.Contains(got, "\n\"@signature-params\": (\"@method\" \"@path\" \"@query\" \"content-digest\");created=1800000000;") {
		t.Fatalf("signature base:\n%s", got)
	}
}

func TestVerify(t *testing.T) {
	v := verifier(t0.Add(5 * time.Second))
	for _, r := range []*http.Request{
		signed(t, "GET", "https://peer/api/v1/agents?link=l1&x=%2F", "", t0),
		signed(t, "POST", "https://peer/api/v1/query", `{"q":"up"}`, t0),
		signed(t, "GET", "https://peer/", "", t0),
	} {
		got, err := v.Verify(r)
		if err != nil || got.KeyID != "eu-west" || !got.Created.Equal(t0) {
			t.Fatalf("%s %s: %+v %v", r.Method, r.URL, got, err)
		}
	}
}

// TestEachTamperingRefused: every covered part changed after signing, a
// wrong or unknown key, a missing header, a clock beyond the window and a
// replay are refused, each with its own error.
func TestEachTamperingRefused(t *testing.T) {
	at := t0.Add(time.Second)
	for _, tc := range []struct {
		name   string
		change func(r *http.Request) *http.Request
		v      *Verifier
		want   error
	}{
		{"method", func(r *http.Request) *http.Request { r.Method = "DELETE"; return r }, nil, ErrBadSignature},
		{"path", func(r *http.Request) *http.Request { r.URL.Path = "/api/v1/tenants"; return r }, nil, ErrBadSignature},
		{"query", func(r *http.Request) *http.Request { r.URL.RawQuery = "link=l2"; return r }, nil, ErrBadSignature},
		{"body", func(r *http.Request) *http.Request {
			r.Body = http.NoBody
			return r
		}, nil, ErrDigest},
		{"body and its digest", func(r *http.Request) *http.Request {
			r.Body = http.NoBody
			r.Header.Set("Content-Digest", contentDigest(nil))
			return r
		}, nil, ErrBadSignature},
		{"no signature", func(r *http.Request) *http.Request { r.Header.Del("Signature"); return r }, nil, ErrMissing},
		{"no digest", func(r *http.Request) *http.Request { r.Header.Del("Content-Digest"); return r }, nil, ErrMissing},
		{"garbage signature", func(r *http.Request) *http.Request { r.Header.Set("Signature", "sig1=garbage((("); return r }, nil, ErrMalformed},
		{"fewer components", func(r *http.Request) *http.Request {
			r.Header.Set("Signature-Input", `sig1=("@method");created=1800000000;nonce="n";keyid="eu-west"`)
			return r
		}, nil, ErrMalformed},
		{"another alg", func(r *http.Request) *http.Request {
			r.Header.Set("Signature-Input", strings.Replace(r.Header.Get("Signature-Input"), Alg, "rsa-pss-sha512", 1))
			return r
		}, nil, ErrMalformed},
		{"unknown key", func(r *http.Request) *http.Request {
			r.Header.Set("Signature-Input", strings.Replace(r.Header.Get("Signature-Input"), "eu-west", "us-east", 1))
			return r
		}, nil, ErrUnknownKey},
		{"wrong secret", func(r *http.Request) *http.Request { return r }, &Verifier{Key: func(string) ([]byte, bool) { return []byte("other"), true },
			Now: func() time.Time { return at }}, ErrBadSignature},
		{"31s late", func(r *http.Request) *http.Request { return r }, verifier(t0.Add(31 * time.Second)), ErrSkew},
		{"31s early", func(r *http.Request) *http.Request { return r }, verifier(t0.Add(-31 * time.Second)), ErrSkew},
	} {
		r := tc.change(signed(t, "POST", "https://peer/api/v1/agents?link=l1", `{"a":1}`, t0))
		v := tc.v
		if v == nil {
			v = verifier(at)
		}
		if _, err := v.Verify(r); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// 29 s off either way is inside the window.
	for _, d := range []time.Duration{29 * time.Second, -29 * time.Second} {
		if _, err := verifier(t0.Add(d)).Verify(signed(t, "GET", "https://peer/x", "", t0)); err != nil {
			t.Errorf("%v off: %v", d, err)
		}
	}
}

// TestReplayRefused: the same signed request is accepted once; a copy is
// refused while it is inside the window, and after it by the window.
func TestReplayRefused(t *testing.T) {
	v := verifier(t0)
	r := signed(t, "GET", "https://peer/api/v1/agents", "", t0)
	copyOf := r.Clone(r.Context())
	if _, err := v.Verify(r); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(copyOf); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay: %v", err)
	}
	v.Now = func() time.Time { return t0.Add(Window + time.Second) }
	if _, err := v.Verify(copyOf); !errors.Is(err, ErrSkew) {
		t.Fatalf("replay after the window: %v", err)
	}
	// A refused request takes no place in the cache: a forged request
	// with someone's nonce cannot burn it.
	v2 := verifier(t0)
	good := signed(t, "GET", "https://peer/a", "", t0)
	forged := good.Clone(good.Context())
	forged.URL.Path = "/b"
	if _, err := v2.Verify(forged); !errors.Is(err, ErrBadSignature) {
		t.Fatal(err)
	}
	if _, err := v2.Verify(good); err != nil {
		t.Fatalf("a forged copy burnt the nonce: %v", err)
	}
}

func TestReplayCacheBounded(t *testing.T) {
	v := verifier(t0)
	v.MaxNonces, v.MaxPerKey = 3, 3
	for i := range 3 {
		if _, err := v.Verify(signed(t, "GET", fmt.Sprintf("https://peer/%d", i), "", t0)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v.Verify(signed(t, "GET", "https://peer/4", "", t0)); !errors.Is(err, ErrBusy) {
		t.Fatalf("over the bound: %v", err)
	}
	v.Now = func() time.Time { return t0.Add(2*Window + 2*time.Second) }
	if _, err := v.Verify(signed(t, "GET", "https://peer/5", "", v.Now())); err != nil {
		t.Fatalf("after the entries expired: %v", err)
	}
}

// TestOnePeerCannotFillTheCache: a peer sending fast fills its own share
// of the replay cache and is refused; another peer is still accepted.
func TestOnePeerCannotFillTheCache(t *testing.T) {
	other := []byte("another-secret-0123456789abcdef0123")
	v := verifier(t0)
	v.Key = func(id string) ([]byte, bool) {
		switch id {
		case "eu-west":
			return secret, true
		case "ap-south":
			return other, true
		}
		return nil, false
	}
	v.MaxNonces, v.MaxPerKey = 8, 2
	for i := range 2 {
		if _, err := v.Verify(signed(t, "GET", fmt.Sprintf("https://peer/%d", i), "", t0)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v.Verify(signed(t, "GET", "https://peer/3", "", t0)); !errors.Is(err, ErrBusy) {
		t.Fatalf("over its share: %v", err)
	}
	r := httptest.NewRequest("GET", "https://peer/x", nil)
	if err := Sign(r, "ap-south", other, t0); err != nil {
		t.Fatal(err)
	}
	if got, err := v.Verify(r); err != nil || got.KeyID != "ap-south" {
		t.Fatalf("another peer refused while eu-west is over its share: %v", err)
	}
	v.Now = func() time.Time { return t0.Add(2*Window + 2*time.Second) }
	if _, err := v.Verify(signed(t, "GET", "https://peer/5", "", v.Now())); err != nil {
		t.Fatalf("after its entries expired: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	r := signed(&testing.T{}, "GET", "https://peer/x", "", t0)
	f.Add(r.Header.Get("Signature-Input"), r.Header.Get("Signature"), r.Header.Get("Content-Digest"))
	f.Add(`sig1=("@method" "@path" "@query" "content-digest");created=-1;nonce="";keyid=""`, "sig1=:AA==:", "sha-256=:AA==:")
	f.Fuzz(func(t *testing.T, in, sig, digest string) {
		r := httptest.NewRequest("GET", "https://peer/x", nil)
		r.Header.Set("Signature-Input", in)
		r.Header.Set("Signature", sig)
		r.Header.Set("Content-Digest", digest)
		if got, err := verifier(t0).Verify(r); err == nil && got.KeyID != "eu-west" {
			t.Fatalf("verified with key %q", got.KeyID)
		}
	})
}
