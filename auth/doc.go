// Package auth turns a bearer token into a Principal: who is calling (a user
// or a machine client), on behalf of which organization, on which plan, and
// with which scopes.
//
// A Verifier trusts exactly one OpenID Connect issuer (Auth0 in production).
// It discovers the issuer's signing keys lazily, accepts only RS256-signed
// JWTs whose issuer, audience and expiry check out, and refuses any token
// that does not name an organization. Every rejection wraps ErrUnauthorized
// and never echoes the token; when the issuer itself cannot be reached the
// error wraps ErrUnavailable instead, so callers can answer 503 rather than
// 401. Claims of unexpected JSON types are treated as absent, never trusted
// and never a cause for panic.
//
// For local development the package also contains a DevIssuer: a tiny,
// self-contained OIDC issuer (discovery document, JWKS and a token minter)
// whose RSA key is persisted in the data directory, so that the API can run
// end to end without an Auth0 tenant. Tests should use package authtest.
package auth
