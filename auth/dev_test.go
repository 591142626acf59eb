package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestDevIssuerURL(t *testing.T) {
	for in, want := range map[string]string{
		":8080":          "http://localhost:8080/_dev/oidc",
		"0.0.0.0:9000":   "http://localhost:9000/_dev/oidc",
		"127.0.0.1:9000": "http://127.0.0.1:9000/_dev/oidc",
		"[::]:9000":      "http://localhost:9000/_dev/oidc",
		"[::1]:9000":     "http://[::1]:9000/_dev/oidc",
		"localhost:3000": "http://localhost:3000/_dev/oidc",
		"api.local:80":   "http://api.local:80/_dev/oidc",
		"8080":           "http://localhost:8080/_dev/oidc",
		"":               "http://localhost/_dev/oidc",
	} {
		if got := DevIssuerURL(in); got != want {
			t.Errorf("DevIssuerURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDevIssuerKeyPersisted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	d1, err := LoadOrCreateDevIssuer(dir, "http://localhost:8080/_dev/oidc")
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o700 {
		t.Errorf("data dir mode = %o, want 700", perm)
	}
	keyPath := filepath.Join(dir, DevKeyFile)
	st, err = os.Stat(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode = %o, want 600", perm)
	}
	before, _ := os.ReadFile(keyPath)

	d2, err := LoadOrCreateDevIssuer(dir, "http://localhost:9999/_dev/oidc")
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(keyPath)
	if d1.KeyID() != d2.KeyID() || d1.KeyID() == "" || string(before) != string(after) {
		t.Fatalf("key not reused: %q vs %q", d1.KeyID(), d2.KeyID())
	}
	if !d1.key.Equal(d2.key) {
		t.Fatal("private keys differ")
	}
	if d2.Issuer() != "http://localhost:9999/_dev/oidc" {
		t.Fatalf("issuer = %q", d2.Issuer())
	}
	if d1.key.N.BitLen() != 2048 {
		t.Fatalf("key size = %d", d1.key.N.BitLen())
	}
	assertNoTempFiles(t, dir)
}

func TestDevIssuerConcurrentCreateAgreesOnOneKey(t *testing.T) {
	dir := t.TempDir()
	const n = 6
	kids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			d, err := LoadOrCreateDevIssuer(dir, "http://localhost:8080/_dev/oidc")
			errs[i] = err
			if err == nil {
				kids[i] = d.KeyID()
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("creator %d: %v", i, errs[i])
		}
		if kids[i] != kids[0] {
			t.Fatalf("creators disagree on the key: %v", kids)
		}
	}
	d, err := LoadOrCreateDevIssuer(dir, "http://localhost:8080/_dev/oidc")
	if err != nil || d.KeyID() != kids[0] {
		t.Fatalf("reload: kid %q err %v, want %q", d.KeyID(), err, kids[0])
	}
	assertNoTempFiles(t, dir)
}

func TestDevIssuerRejectsCorruptKeyWithoutOverwriting(t *testing.T) {
	dir := t.TempDir()
	keyPath := filepath.Join(dir, DevKeyFile)
	if err := os.WriteFile(keyPath, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateDevIssuer(dir, "http://localhost:8080/_dev/oidc"); err == nil {
		t.Fatal("want error for corrupt key file")
	}
	if b, _ := os.ReadFile(keyPath); string(b) != "not a key" {
		t.Fatal("corrupt key file was overwritten")
	}
}

func TestDevIssuerRejectsBadURL(t *testing.T) {
	for _, u := range []string{"", "localhost:8080/_dev/oidc", "ftp://x/y", "http://x/y?q=1"} {
		if _, err := LoadOrCreateDevIssuer(t.TempDir(), u); err == nil {
			t.Errorf("LoadOrCreateDevIssuer(%q): want error", u)
		}
	}
}

func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != DevKeyFile {
			t.Errorf("unexpected file left in data dir: %s", e.Name())
		}
	}
}

// startDevServer mounts the dev issuer under its path prefix on a real
// HTTP server, the way the API server does.
func startDevServer(t *testing.T, dir string) (*DevIssuer, *httptest.Server) {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewUnstartedServer(mux)
	issuerURL := "http://" + srv.Listener.Addr().String() + "/_dev/oidc"
	d, err := LoadOrCreateDevIssuer(dir, issuerURL)
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/_dev/oidc/", d.Handler())
	srv.Start()
	t.Cleanup(srv.Close)
	if srv.URL+"/_dev/oidc" != d.Issuer() {
		t.Fatalf("issuer %q vs server %q", d.Issuer(), srv.URL)
	}
	return d, srv
}

func TestDevTokenVerifiesOverHTTP(t *testing.T) {
	const aud = "https://api.salesos.dev"
	d, _ := startDevServer(t, t.TempDir())
	v, err := NewVerifier(Config{Issuer: d.Issuer(), Audience: aud})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Ready(ctxT(t)); err != nil {
		t.Fatalf("Ready: %v", err)
	}

	tok, err := d.Mint(DevTokenRequest{OrgID: "org-dev", Plan: "professional", Audience: aud, Scopes: []string{"read:leads", "write:deals"}})
	if err != nil {
		t.Fatal(err)
	}
	p := mustVerify(t, v, tok)
	want := Principal{Sub: "auth0|dev-user", Type: ActorUser, OrgID: "org-dev", Plan: PlanProfessional, Scopes: []string{"read:leads", "write:deals"}}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("principal = %+v, want %+v", p, want)
	}

	tok, err = d.Mint(DevTokenRequest{OrgID: "org-dev", Sub: "importer@clients", Audience: aud, Scopes: []string{"write:imports"}})
	if err != nil {
		t.Fatal(err)
	}
	p = mustVerify(t, v, tok)
	if p.Type != ActorClient || p.Plan != PlanStarter || p.Sub != "importer@clients" {
		t.Fatalf("client principal = %+v", p)
	}
	claims := decodePayload(t, tok)
	if claims["gty"] != "client-credentials" || claims["iss"] != d.Issuer() || claims["aud"] != aud {
		t.Fatalf("claims = %v", claims)
	}
	if exp, iat := claims["exp"].(float64), claims["iat"].(float64); exp-iat != 3600 {
		t.Fatalf("default ttl = %vs", exp-iat)
	}
	hdr := decodeSegment(t, strings.Split(tok, ".")[0])
	if hdr["alg"] != "RS256" || hdr["kid"] != d.KeyID() {
		t.Fatalf("header = %v", hdr)
	}

	// Wrong audience is still refused.
	tok, _ = d.Mint(DevTokenRequest{OrgID: "org-dev", Audience: "https://elsewhere"})
	if _, err := v.Verify(ctxT(t), tok); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("wrong audience: %v", err)
	}
	// Short TTL is honoured (checked with a clock an hour ahead).
	tok, _ = d.Mint(DevTokenRequest{OrgID: "org-dev", Audience: aud, TTL: time.Minute})
	clock := newFakeClock()
	clock.Advance(time.Hour)
	v2, _ := NewVerifier(Config{Issuer: d.Issuer(), Audience: aud})
	v2.now = clock.Now
	if _, err := v2.Verify(ctxT(t), tok); !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired dev token: %v", err)
	}
}

func TestDevMintValidates(t *testing.T) {
	d, err := LoadOrCreateDevIssuer(t.TempDir(), "http://localhost:8080/_dev/oidc")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Mint(DevTokenRequest{Audience: "a"}); err == nil {
		t.Error("missing OrgID: want error")
	}
	if _, err := d.Mint(DevTokenRequest{OrgID: "o"}); err == nil {
		t.Error("missing Audience: want error")
	}
}

func TestDevIssuerHandler(t *testing.T) {
	d, srv := startDevServer(t, t.TempDir())

	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	resp, body := get("/_dev/oidc/.well-known/openid-configuration")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("discovery: %s %s", resp.Status, body)
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["issuer"] != d.Issuer() || doc["jwks_uri"] != d.Issuer()+"/.well-known/jwks.json" {
		t.Fatalf("discovery doc = %v", doc)
	}
	if !reflect.DeepEqual(doc["id_token_signing_alg_values_supported"], []any{"RS256"}) {
		t.Fatalf("algs = %v", doc["id_token_signing_alg_values_supported"])
	}
	for _, k := range []string{"response_types_supported", "subject_types_supported"} {
		if _, ok := doc[k].([]any); !ok {
			t.Errorf("discovery doc lacks %s", k)
		}
	}

	resp, body = get("/_dev/oidc/.well-known/jwks.json")
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &set) != nil || len(set.Keys) != 1 {
		t.Fatalf("jwks: %s %s", resp.Status, body)
	}
	k := set.Keys[0]
	if k["kid"] != d.KeyID() || k["kty"] != "RSA" || k["alg"] != "RS256" || k["use"] != "sig" {
		t.Fatalf("jwk = %v", k)
	}
	if _, private := k["d"]; private {
		t.Fatal("JWKS leaks the private key")
	}

	for _, p := range []string{"/_dev/oidc", "/_dev/oidc/", "/_dev/oidc/.well-known/other", "/.well-known/jwks.json"} {
		if resp, _ := get(p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", p, resp.Status)
		}
	}
	resp, err := srv.Client().Post(srv.URL+"/_dev/oidc/.well-known/jwks.json", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %s, want 405", resp.Status)
	}
}

func decodePayload(t *testing.T, tok string) map[string]any {
	t.Helper()
	return decodeSegment(t, strings.Split(tok, ".")[1])
}

func decodeSegment(t *testing.T, seg string) map[string]any {
	t.Helper()
	b, err := base64RawURL(seg)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func base64RawURL(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
