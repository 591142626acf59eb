package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/salesos/salesos/domain"
)

// CodeInvalidCharacters is the detail code of a body string that holds NUL
// or is not valid UTF-8.
const CodeInvalidCharacters = "invalid_characters"

// Headers whose values are stored or decide a write. X-Request-Id is kept
// too, but an unsafe one is replaced rather than refused (see
// requestIDMiddleware), as the contract says.
var checkedHeaders = []string{HeaderIdempotencyKey, "If-Match"}

// maxCharacterDetails bounds the details of one answer: a body of a
// million bad strings must not produce a response as large.
const maxCharacterDetails = 20

// refuseUnstorable is the one place where the API refuses strings that no
// supported database can store: NUL (PostgreSQL text cannot hold it, and
// its jsonb refuses \u0000) and text that is not valid UTF-8. Letting one
// through is not a local problem: the event is appended, and then every
// projection batch containing it fails, for every organization.
//
// It runs for every /v1 route after authentication, before any handler:
// the path (so every path id), every query parameter name and value, the
// headers we keep, and every string of a JSON body, keys included, at any
// depth. Path and query problems are 400 bad_request; body problems are
// 422 validation_failed naming the field. The body is read here, once, and
// handed on buffered; reading it is bounded by MaxBodyBytes and by the
// body read timeout.
//
// Strings decoded from values that pass here (cursors, tokens) are checked
// by their decoders.
func (s *Server) refuseUnstorable(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if problem := unstorable(r.URL.Path); problem != "" {
			return errBadRequest("the path " + problem)
		}
		// Parse the raw query ourselves: url.Values drops nothing we
		// need to see, and a malformed escape ("%zz") is dropped by every
		// reader alike, so it cannot reach a handler.
		q, _ := url.ParseQuery(r.URL.RawQuery)
		for name, values := range q {
			if problem := unstorable(name); problem != "" {
				return errBadRequest("a query parameter name " + problem)
			}
			for _, v := range values {
				if problem := unstorable(v); problem != "" {
					return errBadRequest(fmt.Sprintf("the query parameter %s %s", strconv.Quote(name), problem))
				}
			}
		}
		for _, h := range checkedHeaders {
			for _, v := range r.Header.Values(h) {
				if problem := unstorable(v); problem != "" {
					return errBadRequest("the header " + h + " " + problem)
				}
			}
		}
		if !hasBody(r) {
			return next(c)
		}
		body, err := readBody(c)
		if err != nil {
			return err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if details := bodyCharacterProblems(body); len(details) > 0 {
			return errValidation(details...)
		}
		return next(c)
	}
}

func hasBody(r *http.Request) bool {
	return r.ContentLength > 0 || (r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody)
}

// readBody reads the whole request body, mapping the ways that can fail to
// the contract: over the limit is 413, too slow is 408, anything else 400.
func readBody(c echo.Context) ([]byte, error) {
	body, err := io.ReadAll(c.Request().Body)
	if err == nil {
		return body, nil
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, errPayloadTooLarge()
	case errors.Is(err, errBodyTimeout):
		// The connection cannot carry another request: what is left of
		// this body is still on it.
		c.Response().Header().Set(echo.HeaderConnection, "close")
		return nil, errRequestTimeout()
	}
	return nil, errBadRequest("the request body could not be read")
}

// unstorable describes what makes s unstorable, or returns "".
func unstorable(s string) string {
	switch {
	case strings.IndexByte(s, 0) >= 0:
		return "contains the NUL character (U+0000), which cannot be stored"
	case !utf8.ValidString(s):
		return "is not valid UTF-8"
	}
	return ""
}

// bodyCharacterProblems scans a JSON body for strings (keys and values)
// that hold NUL or are not valid UTF-8, and names each by its path
// ("custom_fields.tier", "events[0]").
//
// It has to look at the raw bytes: encoding/json quietly replaces invalid
// UTF-8 and unpaired surrogate escapes (\ud800) with U+FFFD, so after
// decoding they can no longer be seen, and it decodes \u0000 into a NUL
// that looks like any other character. A body that is not a JSON object,
// or not valid JSON, is left to decodeJSON, which answers 400.
func bodyCharacterProblems(body []byte) []domain.FieldError {
	sc := &charScanner{b: body}
	sc.skipSpace()
	if sc.i >= len(sc.b) || sc.b[sc.i] != '{' {
		return nil
	}
	if !sc.value("", 0) {
		return nil // malformed: decodeJSON says so
	}
	return sc.details
}

// maxScanDepth matches encoding/json's nesting limit; deeper documents are
// refused by the decoder anyway.
const maxScanDepth = 10000

type charScanner struct {
	b       []byte
	i       int
	details []domain.FieldError
}

func (sc *charScanner) skipSpace() {
	for sc.i < len(sc.b) {
		switch sc.b[sc.i] {
		case ' ', '\t', '\n', '\r':
			sc.i++
		default:
			return
		}
	}
}

func (sc *charScanner) report(field, message string) {
	if len(sc.details) < maxCharacterDetails {
		sc.details = append(sc.details, domain.FieldError{Field: field, Code: CodeInvalidCharacters, Message: message})
	}
}

// value scans one JSON value at path; false means the document is
// malformed.
func (sc *charScanner) value(path string, depth int) bool {
	if depth > maxScanDepth {
		return false
	}
	sc.skipSpace()
	if sc.i >= len(sc.b) {
		return false
	}
	switch sc.b[sc.i] {
	case '{':
		return sc.object(path, depth)
	case '[':
		return sc.array(path, depth)
	case '"':
		_, problem, ok := sc.str()
		if !ok {
			return false
		}
		if problem != "" {
			sc.report(path, fieldLabel(path)+" "+problem)
		}
		return true
	}
	// A number, true, false or null: no strings inside. Its syntax is
	// checked by the decoder.
	for sc.i < len(sc.b) {
		switch sc.b[sc.i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return true
		}
		sc.i++
	}
	return true
}

func (sc *charScanner) object(path string, depth int) bool {
	sc.i++ // '{'
	sc.skipSpace()
	if sc.i < len(sc.b) && sc.b[sc.i] == '}' {
		sc.i++
		return true
	}
	for {
		sc.skipSpace()
		if sc.i >= len(sc.b) || sc.b[sc.i] != '"' {
			return false
		}
		raw, problem, ok := sc.str()
		if !ok {
			return false
		}
		child := joinPath(path, keyName(raw))
		if problem != "" {
			sc.report(child, "the key "+strconv.Quote(keyName(raw))+" "+problem)
		}
		sc.skipSpace()
		if sc.i >= len(sc.b) || sc.b[sc.i] != ':' {
			return false
		}
		sc.i++
		if !sc.value(child, depth+1) {
			return false
		}
		sc.skipSpace()
		if sc.i >= len(sc.b) {
			return false
		}
		switch sc.b[sc.i] {
		case ',':
			sc.i++
		case '}':
			sc.i++
			return true
		default:
			return false
		}
	}
}

func (sc *charScanner) array(path string, depth int) bool {
	sc.i++ // '['
	sc.skipSpace()
	if sc.i < len(sc.b) && sc.b[sc.i] == ']' {
		sc.i++
		return true
	}
	for n := 0; ; n++ {
		if !sc.value(path+"["+strconv.Itoa(n)+"]", depth+1) {
			return false
		}
		sc.skipSpace()
		if sc.i >= len(sc.b) {
			return false
		}
		switch sc.b[sc.i] {
		case ',':
			sc.i++
		case ']':
			sc.i++
			return true
		default:
			return false
		}
	}
}

// str scans a string token starting at its opening quote. It returns the
// raw token (quotes included), what is wrong with its content ("" if
// nothing), and false if the token is malformed.
func (sc *charScanner) str() (raw []byte, problem string, ok bool) {
	start := sc.i
	sc.i++ // opening quote
	var nul, invalid, surrogate bool
	for sc.i < len(sc.b) {
		c := sc.b[sc.i]
		switch {
		case c == '"':
			sc.i++
			switch {
			case nul:
				problem = "contains the NUL character (U+0000), which cannot be stored"
			case invalid:
				problem = "is not valid UTF-8"
			case surrogate:
				problem = "contains an unpaired UTF-16 surrogate escape, which is not a character"
			}
			return sc.b[start:sc.i], problem, true
		case c < 0x20:
			return nil, "", false // control characters must be escaped
		case c == '\\':
			if sc.i+1 >= len(sc.b) {
				return nil, "", false
			}
			switch sc.b[sc.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				sc.i += 2
			case 'u':
				r, ok := sc.hex4(sc.i + 2)
				if !ok {
					return nil, "", false
				}
				sc.i += 6
				switch {
				case r == 0:
					nul = true
				case r >= 0xD800 && r <= 0xDBFF:
					// A high surrogate is a character only with a low one
					// right after it.
					if lo, ok := sc.escapeAt(sc.i); ok && lo >= 0xDC00 && lo <= 0xDFFF {
						sc.i += 6
					} else {
						surrogate = true
					}
				case r >= 0xDC00 && r <= 0xDFFF:
					surrogate = true
				}
			default:
				return nil, "", false
			}
		case c < utf8.RuneSelf:
			sc.i++
		default:
			// DecodeRune also refuses overlong forms and encoded
			// surrogates, which PostgreSQL refuses too.
			r, size := utf8.DecodeRune(sc.b[sc.i:])
			if r == utf8.RuneError && size <= 1 {
				invalid = true
				size = 1
			}
			sc.i += size
		}
	}
	return nil, "", false // unterminated
}

// escapeAt reads a \uXXXX escape at i, if there is one.
func (sc *charScanner) escapeAt(i int) (rune, bool) {
	if i+1 >= len(sc.b) || sc.b[i] != '\\' || sc.b[i+1] != 'u' {
		return 0, false
	}
	return sc.hex4(i + 2)
}

func (sc *charScanner) hex4(i int) (rune, bool) {
	if i+4 > len(sc.b) {
		return 0, false
	}
	var r rune
	for _, c := range sc.b[i : i+4] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
}

// keyName is a key as a client would name it in a field path: decoded, with
// anything unprintable in our answer (NUL, invalid UTF-8) shown as U+FFFD.
func keyName(raw []byte) string {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		s = string(raw[1 : len(raw)-1])
	}
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", "\uFFFD"), "\uFFFD")
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func fieldLabel(path string) string {
	if path == "" {
		return "the value"
	}
	return path
}
