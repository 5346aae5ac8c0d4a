package oidctest

// Rejection records one request the provider refused.
type Rejection struct {
	Endpoint string // "/authorize", "/token" or "/userinfo"
	Error    string // the RFC 6749 or RFC 6750 error code sent, e.g. "invalid_grant"
	Reason   Reason // why, precisely enough for a test to assert on
	Detail   string // the offending value or parameter, for the log; may be empty
}

func (r Rejection) String() string {
	s := r.Endpoint + " " + r.Error + ": " + string(r.Reason)
	if r.Detail != "" {
		s += " (" + r.Detail + ")"
	}
	return s
}

// Reason says why a request was refused. Its text is also sent to the
// client as error_description.
type Reason string

// Reasons /authorize refuses a request for. The first three are answered
// with a 400 page, because the redirect URI is not yet trusted; the rest
// redirect back with error= and state=.
const (
	ReasonRepeatedParameter Reason = "parameter given more than once"
	ReasonUnknownClient     Reason = "unknown client_id"
	ReasonRedirectURI       Reason = "redirect_uri is not registered for this client"
	ReasonResponseType      Reason = "response_type must be code"
	ReasonScope             Reason = "scope must include openid"
	ReasonChallengeMissing  Reason = "code_challenge is required"
	ReasonChallengeMethod   Reason = "code_challenge_method must be S256"
	ReasonChallenge         Reason = "code_challenge is not a base64url SHA-256 digest"
	ReasonNoUser            Reason = "no user is logged in"
)

// Reasons /token refuses a request for.
const (
	ReasonMalformedRequest Reason = "malformed token request"
	ReasonClientAuth       Reason = "client authentication failed"
	ReasonTwoClientAuths   Reason = "more than one client authentication method"
	ReasonGrantType        Reason = "grant_type must be authorization_code"
	ReasonCodeMissing      Reason = "code is required"
	ReasonCodeUnknown      Reason = "code unknown"
	ReasonCodeReused       Reason = "code already redeemed; tokens issued for it are revoked"
	ReasonCodeExpired      Reason = "code expired"
	ReasonCodeClient       Reason = "code was issued to another client"
	ReasonRedirectMismatch Reason = "redirect_uri differs from the one sent to /authorize"
	ReasonVerifierMissing  Reason = "code_verifier is required"
	ReasonVerifier         Reason = "code_verifier is not 43 to 128 unreserved characters"
	ReasonVerifierMismatch Reason = "code_verifier does not match code_challenge"
	ReasonSigning          Reason = "signing the ID token failed"
)

// ReasonAccessToken is why /userinfo refuses a request.
const ReasonAccessToken Reason = "access token missing, unknown, expired or revoked"
