package api_test

// Shared helpers of the black-box HTTP suite. Every test talks to a real
// server started by apptest.Start over a real socket, with real tokens.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/salesos/salesos/auth/authtest"
	"github.com/salesos/salesos/internal/apptest"
)

var orgSeq atomic.Int64

// newOrg returns an organization id unique within the test binary, so tests
// sharing a server never see each other's records.
func newOrg(name string) string {
	return fmt.Sprintf("org-%s-%d", name, orgSeq.Add(1))
}

// fullToken is a user token of org with every lead and deal scope. The plan
// is enterprise so that a rate limit never gets in the way of a test that
// writes many records.
func fullToken(t testing.TB, s *apptest.Server, org string) string {
	t.Helper()
	return s.Issuer.TokenWith(t, authtest.Claims{
		"org_id": org,
		"plan":   "enterprise",
		"scope":  strings.Join(apptest.AllScopes, " "),
	})
}

// hdr builds a header map from key/value pairs.
func hdr(kv ...string) map[string]string {
	if len(kv)%2 != 0 {
		panic("hdr: odd number of arguments")
	}
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// call is a shorthand for s.Do.
func call(t testing.TB, s *apptest.Server, method, path, token string, body any, headers ...string) *apptest.Response {
	t.Helper()
	return s.Do(t, apptest.Request{Method: method, Path: path, Token: token, Body: body, Header: hdr(headers...)})
}

// send is a goroutine-safe request (it never calls t.Fatal): body is nil,
// a string, []byte or a value marshalled to JSON.
func send(t testing.TB, s *apptest.Server, method, path, token string, body any, headers ...string) (*apptest.Response, error) {
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, s.URL+path, r)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	h := hdr(headers...)
	for k, v := range h {
		req.Header.Set(k, v)
	}
	return doRaw(t, s, req)
}

// doRaw sends a hand-built request and checks the exchange against the
// OpenAPI document like Server.Do does (t.Errorf only: safe in goroutines).
func doRaw(t testing.TB, s *apptest.Server, req *http.Request) (*apptest.Response, error) {
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		body = b
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := &apptest.Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
	apptest.CheckOpenAPI(t, req, body, out)
	return out, nil
}

// obj decodes a JSON object keeping numbers as json.Number, so amounts are
// compared digit for digit.
func obj(t testing.TB, raw []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, raw)
	}
	return m
}

// wantStatus fails the test unless r has the status.
func wantStatus(t testing.TB, r *apptest.Response, status int) map[string]any {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body: %s", r.Status, status, r.Body)
	}
	if status == http.StatusNoContent || len(r.Body) == 0 {
		return nil
	}
	return obj(t, r.Body)
}

// wantError checks a contract error body: the status, the code, exactly the
// keys code, message, details and request_id, details an array (empty unless
// validation_failed), and request_id equal to the X-Request-Id header. It
// returns the details.
func wantError(t testing.TB, r *apptest.Response, status int, code string) []map[string]any {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d (%s); body: %s", r.Status, status, code, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error Content-Type %q, want application/json", ct)
	}
	m := obj(t, r.Body)
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if strings.Join(keys, ",") != "code,details,message,request_id" {
		t.Errorf("error body keys %v, want exactly code, details, message, request_id; body: %s", keys, r.Body)
	}
	if m["code"] != code {
		t.Errorf("code %v, want %s; body: %s", m["code"], code, r.Body)
	}
	if msg, _ := m["message"].(string); msg == "" {
		t.Errorf("message is empty or not a string: %s", r.Body)
	}
	rid, _ := m["request_id"].(string)
	if rid == "" || rid != r.Header.Get("X-Request-Id") {
		t.Errorf("request_id %q, X-Request-Id header %q: want equal and non-empty", rid, r.Header.Get("X-Request-Id"))
	}
	arr, ok := m["details"].([]any)
	if !ok {
		t.Fatalf("details is not an array: %s", r.Body)
	}
	if code != "validation_failed" && len(arr) != 0 {
		t.Errorf("details of a %s error = %v, want []", code, arr)
	}
	if code == "validation_failed" && len(arr) == 0 {
		t.Errorf("validation_failed without details: %s", r.Body)
	}
	out := make([]map[string]any, 0, len(arr))
	for _, d := range arr {
		dm, ok := d.(map[string]any)
		if !ok {
			t.Fatalf("details element is not an object: %s", r.Body)
		}
		out = append(out, dm)
	}
	return out
}

// wantValidation checks a 422 validation_failed naming field with code
// (code "" means any code).
func wantValidation(t testing.TB, r *apptest.Response, field, code string) {
	t.Helper()
	details := wantError(t, r, http.StatusUnprocessableEntity, "validation_failed")
	for _, d := range details {
		if d["field"] == field && (code == "" || d["code"] == code) {
			if msg, _ := d["message"].(string); msg == "" {
				t.Errorf("detail for %s has no message: %v", field, d)
			}
			return
		}
	}
	t.Errorf("details %v do not name field %q with code %q", details, field, code)
}

// token returns the X-Consistency-Token of a write, failing if absent.
func consistencyToken(t testing.TB, r *apptest.Response) string {
	t.Helper()
	tok := r.Header.Get("X-Consistency-Token")
	if tok == "" {
		t.Fatalf("write answered %d without X-Consistency-Token", r.Status)
	}
	return tok
}

// createLead posts a lead and returns its body and consistency token.
func createLead(t testing.TB, s *apptest.Server, tok string, body any) (map[string]any, string) {
	t.Helper()
	r := call(t, s, http.MethodPost, "/v1/leads", tok, body)
	m := wantStatus(t, r, http.StatusCreated)
	return m, consistencyToken(t, r)
}

// createDeal posts a deal and returns its body and consistency token.
func createDeal(t testing.TB, s *apptest.Server, tok string, body any) (map[string]any, string) {
	t.Helper()
	r := call(t, s, http.MethodPost, "/v1/deals", tok, body)
	m := wantStatus(t, r, http.StatusCreated)
	return m, consistencyToken(t, r)
}

// listAll walks every page of path (which must hold a query string or
// none), returning the ids in order.
func listAll(t testing.TB, s *apptest.Server, tok, path string, limit int, ctoken string) []string {
	t.Helper()
	var ids []string
	cursor := ""
	for page := 0; ; page++ {
		if page > 1000 {
			t.Fatal("pagination does not end")
		}
		q := url.Values{}
		q.Set("limit", fmt.Sprint(limit))
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		r := call(t, s, http.MethodGet, path+sep+q.Encode(), tok, nil, "X-Consistency-Token", ctoken)
		m := wantStatus(t, r, http.StatusOK)
		data := listData(t, m)
		if len(data) > limit {
			t.Fatalf("page of %d items for limit %d", len(data), limit)
		}
		for _, d := range data {
			ids = append(ids, d["id"].(string))
		}
		if m["has_more"] != true {
			if m["next_cursor"] != nil {
				t.Fatalf("last page has next_cursor %v", m["next_cursor"])
			}
			return ids
		}
		next, _ := m["next_cursor"].(string)
		if next == "" {
			t.Fatalf("has_more without next_cursor: %s", r.Body)
		}
		cursor = next
	}
}

// listData checks the list envelope and returns its data.
func listData(t testing.TB, m map[string]any) []map[string]any {
	t.Helper()
	if len(m) != 3 {
		t.Errorf("list envelope keys %v, want data, has_more, next_cursor", m)
	}
	if _, ok := m["has_more"].(bool); !ok {
		t.Fatalf("has_more is not a boolean: %v", m)
	}
	if nc, ok := m["next_cursor"]; !ok {
		t.Fatalf("next_cursor missing: %v", m)
	} else if _, isStr := nc.(string); nc != nil && !isStr {
		t.Fatalf("next_cursor is neither string nor null: %v", nc)
	}
	arr, ok := m["data"].([]any)
	if !ok {
		t.Fatalf("data is not an array: %v", m)
	}
	out := make([]map[string]any, len(arr))
	for i, a := range arr {
		out[i] = a.(map[string]any)
	}
	return out
}

// ids returns the ids of list items.
func ids(items []map[string]any) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it["id"].(string)
	}
	return out
}

// wantUTC checks an RFC 3339 timestamp in UTC with a Z and returns it.
func wantUTC(t testing.TB, field string, v any) time.Time {
	t.Helper()
	s, ok := v.(string)
	if !ok {
		t.Fatalf("%s = %v, want an RFC 3339 string", field, v)
	}
	if !strings.HasSuffix(s, "Z") {
		t.Errorf("%s = %q, want UTC with a Z", field, s)
	}
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("%s = %q: %v", field, s, err)
	}
	return ts
}

// jsonEq compares two values as JSON.
func jsonEq(t testing.TB, what string, got any, want string) {
	t.Helper()
	gb, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var g, w any
	if err := json.Unmarshal(gb, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want %q: %v", want, err)
	}
	gn, _ := json.Marshal(g)
	wn, _ := json.Marshal(w)
	if !bytes.Equal(gn, wn) {
		t.Errorf("%s = %s, want %s", what, gn, wn)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
