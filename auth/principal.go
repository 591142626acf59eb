package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ActorType tells whether a token was issued to a person or to a machine.
type ActorType string

const (
	// ActorUser is a person who signed in (authorization-code flow).
	ActorUser ActorType = "user"
	// ActorClient is a machine client (client-credentials flow).
	ActorClient ActorType = "client"
)

// Plans known to SalesOS. Anything else is treated as PlanStarter.
const (
	PlanStarter      = "starter"
	PlanProfessional = "professional"
	PlanEnterprise   = "enterprise"
)

// Principal is the verified identity behind a request.
type Principal struct {
	Sub    string    // token subject (user id, or "<client_id>@clients")
	Type   ActorType // ActorUser or ActorClient
	OrgID  string    // tenant; never empty for a verified token
	Plan   string    // PlanStarter, PlanProfessional or PlanEnterprise
	Scopes []string  // union of "scope" and "permissions", de-duplicated
}

// HasScope reports whether the principal was granted scope s.
func (p Principal) HasScope(s string) bool {
	for _, sc := range p.Scopes {
		if sc == s {
			return true
		}
	}
	return false
}

var (
	// ErrUnauthorized is wrapped by every error that means "this token is
	// not acceptable" (HTTP 401). The wrapping text is a short reason and
	// never contains the token.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnavailable is wrapped when the identity provider's discovery
	// document or key set could not be fetched (HTTP 503).
	ErrUnavailable = errors.New("identity provider unavailable")
)

// unauthorized builds an ErrUnauthorized with a fixed reason. Reasons are
// constants chosen by this package, never derived from the token.
func unauthorized(reason string) error {
	return fmt.Errorf("%w: %s", ErrUnauthorized, reason)
}

// claimSet gives tolerant access to raw JWT claims: a claim of an
// unexpected JSON type is reported as absent.
type claimSet map[string]json.RawMessage

func (c claimSet) str(name string) (string, bool) {
	raw, ok := c[name]
	if !ok {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// strList accepts a JSON array (non-string items are skipped) or a
// space-separated string.
func (c claimSet) strList(name string) []string {
	raw, ok := c[name]
	if !ok {
		return nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return strings.Fields(s)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		var v string
		if json.Unmarshal(it, &v) == nil {
			if v = strings.TrimSpace(v); v != "" {
				out = append(out, v)
			}
		}
	}
	return out
}

// principalFromClaims builds a Principal from already-verified claims.
func principalFromClaims(c claimSet, sub, tenantClaim, planClaim string) (Principal, error) {
	if sub == "" {
		return Principal{}, unauthorized("missing sub")
	}
	org, _ := c.str(tenantClaim)
	if strings.TrimSpace(org) == "" {
		return Principal{}, unauthorized("missing tenant claim")
	}
	// Both are stored with every event the request writes; NUL cannot be
	// (JSON decoding has already replaced invalid UTF-8).
	if strings.IndexByte(org, 0) >= 0 || strings.IndexByte(sub, 0) >= 0 {
		return Principal{}, unauthorized("malformed claims")
	}

	p := Principal{Sub: sub, Type: ActorUser, OrgID: org, Plan: PlanStarter}

	if gty, _ := c.str("gty"); gty == "client-credentials" || strings.HasSuffix(sub, "@clients") {
		p.Type = ActorClient
	}

	if plan, ok := c.str(planClaim); ok {
		switch plan = strings.ToLower(strings.TrimSpace(plan)); plan {
		case PlanStarter, PlanProfessional, PlanEnterprise:
			p.Plan = plan
		}
	}

	scopes := append(c.strList("scope"), c.strList("permissions")...)
	seen := make(map[string]struct{}, len(scopes))
	p.Scopes = make([]string, 0, len(scopes))
	for _, s := range scopes {
		if _, dup := seen[s]; dup {
			continue
		}
		seen[s] = struct{}{}
		p.Scopes = append(p.Scopes, s)
	}
	return p, nil
}
