package auth

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// DevKeyFile is the name of the development issuer's key inside the data
// directory.
const DevKeyFile = "dev-issuer-key.pem"

// devIssuerPath is the URL path under which the development issuer lives.
const devIssuerPath = "/_dev/oidc"

// DevIssuer is a minimal OIDC issuer for local development: it publishes a
// discovery document and a JWKS, and mints RS256 access tokens shaped like
// Auth0's. It is not an authorization server (no login, no token endpoint)
// and must never be enabled in production.
type DevIssuer struct {
	issuer    string
	path      string // URL path of the issuer, without trailing slash
	key       *rsa.PrivateKey
	kid       string
	discovery []byte
	jwks      []byte
}

// DevIssuerURL derives the development issuer URL from the API's listen
// address: an empty or wildcard host becomes "localhost", anything else is
// kept. ":8080" → "http://localhost:8080/_dev/oidc".
func DevIssuerURL(listenAddr string) string {
	host, port, err := net.SplitHostPort(listenAddr)
	if err != nil {
		// No port: either just a port number, or just a host.
		if _, perr := strconv.Atoi(listenAddr); perr == nil {
			host, port = "", listenAddr
		} else {
			host, port = strings.Trim(listenAddr, "[]"), ""
		}
	}
	switch host {
	case "", "0.0.0.0", "::", "[::]":
		host = "localhost"
	}
	if port != "" {
		if _, perr := strconv.Atoi(port); perr != nil {
			if p, lerr := net.LookupPort("tcp", port); lerr == nil {
				port = strconv.Itoa(p)
			}
		}
	}
	hostport := host
	switch {
	case port != "":
		hostport = net.JoinHostPort(host, port)
	case strings.Contains(host, ":"):
		hostport = "[" + host + "]"
	}
	return "http://" + hostport + devIssuerPath
}

// LoadOrCreateDevIssuer returns a DevIssuer for issuerURL whose signing key
// is kept in dataDir/dev-issuer-key.pem (PKCS#8 PEM, mode 0600). The
// directory is created (0700) if missing. If the file does not exist a new
// RSA 2048 key is generated and published atomically without clobbering:
// when several processes race, all of them end up using the same key. An
// existing but unreadable or invalid key file is an error (it is never
// overwritten). The key id is the RFC 7638 SHA-256 thumbprint of the public
// key, so it is stable across restarts.
func LoadOrCreateDevIssuer(dataDir, issuerURL string) (*DevIssuer, error) {
	u, err := url.Parse(issuerURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("auth: dev issuer URL %q is not an absolute http(s) URL", issuerURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("auth: dev issuer URL %q must not have a query or fragment", issuerURL)
	}
	if dataDir == "" {
		return nil, errors.New("auth: dev issuer needs a data directory")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("auth: dev issuer: %w", err)
	}
	path := filepath.Join(dataDir, DevKeyFile)
	key, err := loadDevKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = createDevKey(dataDir, path)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: dev issuer key %s: %w", path, err)
	}
	return newDevIssuer(issuerURL, strings.TrimSuffix(u.Path, "/"), key)
}

func newDevIssuer(issuer, path string, key *rsa.PrivateKey) (*DevIssuer, error) {
	pub := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(jose.RS256), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("auth: dev issuer key id: %w", err)
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)

	base := strings.TrimSuffix(issuer, "/")
	discovery, err := json.Marshal(map[string]any{
		"issuer":                                issuer,
		"jwks_uri":                              base + "/.well-known/jwks.json",
		"id_token_signing_alg_values_supported": []string{string(jose.RS256)},
		"response_types_supported":              []string{"token"},
		"subject_types_supported":               []string{"public"},
		"token_endpoint_auth_methods_supported": []string{"none"},
		"claims_supported":                      []string{"iss", "aud", "sub", "iat", "exp", "org_id", "plan", "scope", "gty"},
	})
	if err != nil {
		return nil, err
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}})
	if err != nil {
		return nil, err
	}
	return &DevIssuer{issuer: issuer, path: path, key: key, kid: pub.KeyID, discovery: discovery, jwks: jwks}, nil
}

func loadDevKey(path string) (*rsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var parsed any
	switch block.Type {
	case "PRIVATE KEY":
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		parsed, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
	}
	if err != nil {
		return nil, err
	}
	key, ok := parsed.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an RSA key")
	}
	if key.N.BitLen() < 2048 {
		return nil, errors.New("RSA key shorter than 2048 bits")
	}
	return key, nil
}

// createDevKey generates a key, writes it to a temporary file and links it
// into place. os.Link fails if the target exists, so a concurrent creator
// that won the race is never overwritten; the loser adopts the winner's key.
func createDevKey(dir, path string) (*rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})

	tmp, err := os.CreateTemp(dir, ".dev-issuer-key-*.tmp") // created 0600
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	if err := writeAndSync(tmp, pemBytes); err != nil {
		return nil, err
	}

	err = os.Link(tmp.Name(), path)
	switch {
	case err == nil:
		return key, nil
	case errors.Is(err, fs.ErrExist):
		return loadDevKey(path)
	}
	// Hard links unsupported here: fall back to an exclusive create.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return loadDevKey(path)
	}
	if err != nil {
		return nil, err
	}
	if err := writeAndSync(f, pemBytes); err != nil {
		os.Remove(path)
		return nil, err
	}
	return key, nil
}

func writeAndSync(f *os.File, data []byte) error {
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Issuer returns the issuer URL exactly as it appears in tokens and in the
// discovery document. Configure the Verifier with this value.
func (d *DevIssuer) Issuer() string { return d.issuer }

// KeyID returns the "kid" of the signing key.
func (d *DevIssuer) KeyID() string { return d.kid }

// Handler serves GET (and HEAD) {path}/.well-known/openid-configuration and
// {path}/.well-known/jwks.json, where {path} is the issuer URL's path
// ("/_dev/oidc" for DevIssuerURL). It matches the full request path, so
// mount it at the server root or on a pattern such as "/_dev/oidc/" — but do
// not strip the prefix (no http.StripPrefix). Anything else is 404.
func (d *DevIssuer) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		switch r.URL.Path {
		case d.path + "/.well-known/openid-configuration":
			body = d.discovery
		case d.path + "/.well-known/jwks.json":
			body = d.jwks
		default:
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		if r.Method == http.MethodGet {
			_, _ = w.Write(body)
		}
	})
}

// DevTokenRequest describes a token to mint. OrgID and Audience are
// required; Sub defaults to "auth0|dev-user", Plan to "starter", TTL to one
// hour. A Sub ending in "@clients" yields a client-credentials token.
type DevTokenRequest struct {
	OrgID    string
	Plan     string
	Sub      string
	Audience string
	Scopes   []string
	TTL      time.Duration
}

// Mint signs an RS256 access token carrying kid, iss, aud, sub, iat, exp,
// org_id, plan, scope (space-joined, omitted if empty) and, for
// "...@clients" subjects, gty "client-credentials".
func (d *DevIssuer) Mint(r DevTokenRequest) (string, error) {
	if r.OrgID == "" {
		return "", errors.New("auth: dev token needs an OrgID")
	}
	if r.Audience == "" {
		return "", errors.New("auth: dev token needs an Audience")
	}
	if r.Sub == "" {
		r.Sub = "auth0|dev-user"
	}
	if r.Plan == "" {
		r.Plan = PlanStarter
	}
	if r.TTL <= 0 {
		r.TTL = time.Hour
	}
	now := time.Now()
	claims := map[string]any{
		"iss":    d.issuer,
		"aud":    r.Audience,
		"sub":    r.Sub,
		"iat":    now.Unix(),
		"exp":    now.Add(r.TTL).Unix(),
		"org_id": r.OrgID,
		"plan":   r.Plan,
	}
	if len(r.Scopes) > 0 {
		claims["scope"] = strings.Join(r.Scopes, " ")
	}
	if strings.HasSuffix(r.Sub, "@clients") {
		claims["gty"] = "client-credentials"
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: d.key, KeyID: d.kid}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}
