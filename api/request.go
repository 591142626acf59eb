package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/projections"
)

// decodeJSON reads a JSON object body into v: malformed JSON is 400,
// unknown fields and wrongly typed values are 422 with details, and a body
// over the limit is 413. An empty body decodes as {} when allowEmpty.
func decodeJSON(c echo.Context, v any, allowEmpty bool) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		if allowEmpty {
			body = []byte("{}")
		} else {
			return errBadRequest("a JSON object body is required")
		}
	}
	if body[0] != '{' {
		if !json.Valid(body) {
			return errBadRequest("the request body is not valid JSON")
		}
		return errBadRequest("the request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return jsonError(err, body)
	}
	// dec.More reports false before a stray '}' or ']', so look at the
	// rest of the body itself: only whitespace may follow the object.
	if len(bytes.TrimSpace(body[dec.InputOffset():])) > 0 {
		return errBadRequest("the request body has data after the JSON object")
	}
	return nil
}

func jsonError(err error, body []byte) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var ve *domain.ValidationError
	switch {
	case errors.As(err, &ve):
		return err
	case errors.As(err, &syn), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return errBadRequest("the request body is not valid JSON")
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return errBadRequest("the request body must be a JSON object")
		}
		return errValidation(domain.FieldError{Field: field, Code: "invalid_type", Message: field + " must be a JSON " + jsonKind(typ.Type.Kind().String())})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return errValidation(domain.FieldError{Field: name, Code: "unknown_field", Message: "there is no field " + strconv.Quote(name)})
	}
	if !json.Valid(body) {
		return errBadRequest("the request body is not valid JSON")
	}
	return errValidation(domain.FieldError{Field: "", Code: "invalid_value", Message: err.Error()})
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "map", "struct":
		return "object"
	case "slice", "array":
		return "array"
	case "bool":
		return "boolean"
	}
	return "value of another type"
}

// ifMatch parses If-Match: a strong or weak ETag holding a version. "*" and
// an absent header mean no precondition.
func ifMatch(c echo.Context) (*int64, error) {
	h := strings.TrimSpace(c.Request().Header.Get("If-Match"))
	if h == "" || h == "*" {
		return nil, nil
	}
	h = strings.TrimPrefix(h, "W/")
	v, err := strconv.ParseInt(strings.Trim(h, `"`), 10, 64)
	if err != nil || v < 1 {
		return nil, errBadRequest(`If-Match must be the ETag of a version, such as "3"`)
	}
	return &v, nil
}

func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// listParams reads limit and cursor.
func listParams(c echo.Context) (int, *projections.Cursor, error) {
	limit := 50
	if s := c.QueryParam("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 200 {
			return 0, nil, errValidation(domain.FieldError{Field: "limit", Code: "invalid_value", Message: "limit must be an integer from 1 to 200"})
		}
		limit = n
	}
	var cur *projections.Cursor
	if s := c.QueryParam("cursor"); s != "" {
		cc, err := projections.DecodeCursor(s)
		if err != nil {
			return 0, nil, errBadRequest("cursor is not a cursor this API returned")
		}
		cur = &cc
	}
	return limit, cur, nil
}

// timeParam parses an RFC 3339 query parameter.
func timeParam(c echo.Context, name string) (*time.Time, error) {
	s := c.QueryParam(name)
	if s == "" {
		return nil, nil
	}
	t, err := parseTimestamp(s)
	if err != nil {
		return nil, errValidation(domain.FieldError{Field: name, Code: "invalid_format", Message: name + " must be an RFC 3339 timestamp such as 2026-03-15T14:30:00Z"})
	}
	return &t, nil
}

// parseTimestamp reads an RFC 3339 instant (as_of, created_after) and
// returns it in UTC.
func parseTimestamp(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}

// listBody is the contract's list envelope.
type listBody[T any] struct {
	Data       []T     `json:"data"`
	HasMore    bool    `json:"has_more"`
	NextCursor *string `json:"next_cursor"`
}

func listResponse[T any](p projections.Page[T]) listBody[T] {
	out := listBody[T]{Data: p.Data, HasMore: p.HasMore}
	if out.Data == nil {
		out.Data = []T{}
	}
	if p.NextCursor != nil {
		s := p.NextCursor.Encode()
		out.NextCursor = &s
	}
	return out
}
