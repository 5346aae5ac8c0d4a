package oidctest

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// rsaBits is the smallest size crypto/rsa generates without a GODEBUG
// override; bigger keys only slow tests down.
const rsaBits = 2048

type signingKey struct {
	id   string // kid
	priv *rsa.PrivateKey
}

func newRSAKey() (*rsa.PrivateKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, rsaBits)
	if err != nil {
		return nil, fmt.Errorf("generating RSA key: %w", err)
	}
	return k, nil
}

// publicKeySet is what /jwks serves: the public half of every key, marked
// for RS256 signatures so go-oidc picks the algorithm from it.
func publicKeySet(keys []signingKey) jose.JSONWebKeySet {
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(keys))}
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{
			Key:       &k.priv.PublicKey,
			KeyID:     k.id,
			Algorithm: string(jose.RS256),
			Use:       "sig",
		})
	}
	return set
}

// sign serializes claims, merged left to right, as a compact RS256 JWT
// whose header carries kid.
func sign(priv *rsa.PrivateKey, kid string, claims ...any) (string, error) {
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: priv, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return "", fmt.Errorf("making signer: %w", err)
	}
	b := jwt.Signed(signer)
	for _, c := range claims {
		b = b.Claims(c)
	}
	tok, err := b.Serialize()
	if err != nil {
		return "", fmt.Errorf("signing JWT: %w", err)
	}
	return tok, nil
}
