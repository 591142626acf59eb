package api_test

import (
	"context"
	"encoding/json"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/labstack/echo/v4"

	"github.com/salesos/salesos/api"
	"github.com/salesos/salesos/internal/apptest"
)

func TestOpenAPIDocumentValid(t *testing.T) {
	t.Parallel()
	doc, err := api.OpenAPIDocument()
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("document does not validate: %v", err)
	}
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi %q, want 3.0.3", doc.OpenAPI)
	}
	if again, _ := api.OpenAPIDocument(); again != doc {
		t.Error("the document is loaded more than once")
	}

	// Conventions every operation must follow, so the document stays a
	// complete contract as routes are added.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			name := method + " " + path
			if op.OperationID == "" || op.Summary == "" {
				t.Errorf("%s: no operationId or summary", name)
			}
			public := op.Security != nil && len(*op.Security) == 0
			if !public {
				if !strings.Contains(op.Description, "scope") {
					t.Errorf("%s: the description does not name the scopes it needs", name)
				}
				// 400: hostile bytes in the path or the query (NUL,
				// invalid UTF-8) are refused on every route.
				for _, status := range []string{"400", "401", "403", "429", "500", "503"} {
					if op.Responses.Value(status) == nil {
						t.Errorf("%s: %s is not documented", name, status)
					}
				}
			}
			if method == http.MethodPost && strings.HasPrefix(path, "/v1/") && !hasParam(op, "header", "Idempotency-Key") {
				t.Errorf("%s: no Idempotency-Key parameter", name)
			}
			if op.RequestBody != nil {
				for _, status := range []string{"400", "408", "413", "415", "422"} {
					if op.Responses.Value(status) == nil {
						t.Errorf("%s takes a body but does not document %s", name, status)
					}
				}
			}
			for status, resp := range op.Responses.Map() {
				if resp.Value.Headers["X-Request-Id"] == nil {
					t.Errorf("%s %s: no X-Request-Id header", name, status)
				}
				if status >= "400" {
					mt := resp.Value.Content.Get("application/json")
					if mt == nil || mt.Schema == nil || mt.Schema.Ref != "#/components/schemas/Error" {
						t.Errorf("%s %s: the body is not the Error schema", name, status)
					}
				}
			}
		}
	}
}

func hasParam(op *openapi3.Operation, in, name string) bool {
	for _, p := range op.Parameters {
		if p.Value != nil && p.Value.In == in && strings.EqualFold(p.Value.Name, name) {
			return true
		}
	}
	return false
}

func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)

	r := s.Do(t, apptest.Request{Method: http.MethodGet, Path: "/v1/openapi.json"}) // no token
	if r.Status != http.StatusOK {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		t.Errorf("Content-Type %q", r.Header.Get("Content-Type"))
	}
	if !strings.Contains(r.Header.Get("Cache-Control"), "max-age") {
		t.Errorf("Cache-Control %q: the document should be cacheable", r.Header.Get("Cache-Control"))
	}
	served, err := openapi3.NewLoader().LoadFromData(r.Body)
	if err != nil {
		t.Fatalf("served document does not load: %v", err)
	}
	if err := served.Validate(context.Background()); err != nil {
		t.Fatalf("served document does not validate: %v", err)
	}
	doc, err := api.OpenAPIDocument()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(doc)
	got, _ := json.Marshal(served)
	if string(want) != string(got) {
		t.Error("the served document differs from the embedded one")
	}

	// Revalidation with the ETag.
	etag := r.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	r = s.Do(t, apptest.Request{Method: http.MethodGet, Path: "/v1/openapi.json", Header: map[string]string{"If-None-Match": etag}})
	if r.Status != http.StatusNotModified || len(r.Body) != 0 {
		t.Errorf("If-None-Match: status %d, body %q; want 304 and no body", r.Status, r.Body)
	}
	r = s.Do(t, apptest.Request{Method: http.MethodGet, Path: "/v1/openapi.json", Header: map[string]string{"If-None-Match": `"other"`}})
	if r.Status != http.StatusOK {
		t.Errorf("stale If-None-Match: status %d", r.Status)
	}

	// A token is not needed, but one does no harm.
	r = s.Do(t, apptest.Request{Method: http.MethodGet, Path: "/v1/openapi.json", Token: s.Token(t, newOrg("openapi"))})
	if r.Status != http.StatusOK {
		t.Errorf("with a token: status %d", r.Status)
	}
}

var echoParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

// TestOpenAPICoversRoutes checks that the document and the router agree:
// every route the server registers is documented, and every documented
// operation is served.
func TestOpenAPICoversRoutes(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	e, ok := s.App.API.Handler().(*echo.Echo)
	if !ok {
		t.Fatalf("the API handler is a %T, not *echo.Echo", s.App.API.Handler())
	}
	doc, err := api.OpenAPIDocument()
	if err != nil {
		t.Fatal(err)
	}

	served := map[string]bool{}
	for _, rt := range e.Routes() {
		// The development issuer, the /v1 catch-all (which answers
		// unknown paths with 401/404) and Echo's own not-found routes of
		// groups are not part of the API.
		if rt.Method == echo.RouteNotFound || strings.HasPrefix(rt.Path, "/_dev/oidc/") || rt.Path == "/v1/*" || rt.Path == "/*" {
			continue
		}
		if strings.Contains(rt.Path, "*") {
			t.Errorf("route %s %s: wildcard routes cannot be documented", rt.Method, rt.Path)
			continue
		}
		path := echoParam.ReplaceAllString(rt.Path, "{$1}")
		key := rt.Method + " " + path
		served[key] = true
		item := doc.Paths.Value(path)
		if item == nil || item.GetOperation(rt.Method) == nil {
			t.Errorf("route %s is not in the OpenAPI document", key)
		}
	}

	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			key := method + " " + path
			documented = append(documented, key)
			if !served[key] {
				t.Errorf("the document describes %s, but the server has no such route", key)
			}
		}
	}
	slices.Sort(documented)
	if len(documented) < 25 {
		t.Errorf("only %d operations documented: %v", len(documented), documented)
	}
}
