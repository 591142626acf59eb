package api_test

import (
	"net/http"
	"testing"

	"github.com/salesos/salesos/app"
	"github.com/salesos/salesos/internal/apptest"
)

// TestDevIssuerErrorsUseTheContract: the development issuer's own routes
// answer as before, and everything else under /_dev/oidc answers with the
// contract's JSON error body rather than net/http's plain text.
func TestDevIssuerErrorsUseTheContract(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, func(c *app.Config) { c.OIDCIssuer, c.OIDCAudience = "", "" })
	// SkipOpenAPI: /_dev/oidc is the development issuer, outside the API
	// the document describes.
	get := func(method, path string) *apptest.Response {
		return s.Do(t, apptest.Request{Method: method, Path: path, SkipOpenAPI: true})
	}
	m := wantStatus(t, get(http.MethodGet, "/_dev/oidc/.well-known/openid-configuration"), http.StatusOK)
	if m["jwks_uri"] == nil {
		t.Errorf("discovery document without jwks_uri: %v", m)
	}
	wantStatus(t, get(http.MethodGet, "/_dev/oidc/.well-known/jwks.json"), http.StatusOK)

	for _, path := range []string{"/_dev/oidc/", "/_dev/oidc/nope", "/_dev/oidc/.well-known/other", "/_dev/oidc/.well-known/jwks.json/x"} {
		wantError(t, get(http.MethodGet, path), http.StatusNotFound, "not_found")
	}
	r := get(http.MethodPost, "/_dev/oidc/.well-known/jwks.json")
	wantError(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
	if r.Header.Get("Allow") == "" {
		t.Error("405 without Allow")
	}
}
