package api

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/labstack/echo/v4"
)

// openAPIYAML is the API's contract: every route, body, status and header.
// The HTTP suites validate all their traffic against it (internal/apptest),
// so it cannot drift from the code.
//
//go:embed openapi.yaml
var openAPIYAML []byte

type openAPISpec struct {
	doc  *openapi3.T
	json []byte // the document served at GET /v1/openapi.json
	etag string
}

// loadOpenAPI parses and validates the embedded document once per process.
var loadOpenAPI = sync.OnceValues(func() (*openAPISpec, error) {
	loader := openapi3.NewLoader()
	loader.IsExternalRefsAllowed = false
	doc, err := loader.LoadFromData(openAPIYAML)
	if err != nil {
		return nil, fmt.Errorf("openapi: load: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("openapi: invalid document: %w", err)
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi: encode: %w", err)
	}
	sum := sha256.Sum256(raw)
	return &openAPISpec{doc: doc, json: raw, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}, nil
})

// OpenAPIDocument returns the API's OpenAPI 3.0 document, loaded and
// validated once. Callers must treat it as read-only: it is shared.
func OpenAPIDocument() (*openapi3.T, error) {
	spec, err := loadOpenAPI()
	if err != nil {
		return nil, err
	}
	return spec.doc, nil
}

// OpenAPIYAML returns the document's YAML source.
func OpenAPIYAML() []byte { return append([]byte(nil), openAPIYAML...) }

// openAPI serves the document as JSON: public, cacheable, with an ETag so
// clients can revalidate cheaply.
func (s *Server) openAPI(c echo.Context) error {
	spec, err := loadOpenAPI()
	if err != nil {
		return err // logged and answered as internal_error
	}
	h := c.Response().Header()
	h.Set("ETag", spec.etag)
	h.Set("Cache-Control", "public, max-age=300")
	if etagListMatches(c.Request().Header.Get("If-None-Match"), spec.etag) {
		return c.NoContent(http.StatusNotModified)
	}
	return c.JSONBlob(http.StatusOK, spec.json)
}

// etagListMatches reports whether an If-None-Match value names tag (weak
// comparison, as RFC 9110 prescribes for If-None-Match).
func etagListMatches(header, tag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == tag {
			return true
		}
	}
	return false
}
