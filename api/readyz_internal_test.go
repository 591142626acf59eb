package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// /readyz turns each check's answer into the status a load balancer acts
// on: a degraded report keeps the instance in service and says why, any
// other failure of a required check takes it out, naming the check and the
// reason, and an optional check only degrades.
func TestReadyzReports(t *testing.T) {
	t.Parallel()
	ok := func(context.Context) error { return nil }
	cases := []struct {
		name       string
		check      Check
		wantStatus int
		wantBody   []string
	}{
		{"all fine", Check{Name: "projections", Run: ok}, 200, []string{`"status":"ok"`, `"projections":"ok"`}},
		{"parked events degrade", Check{Name: "projections", Run: func(context.Context) error {
			return &CheckReport{Degraded: true, Reason: "leads has 2 parked event(s)"}
		}}, 200, []string{`"status":"degraded"`, `"projections":"degraded"`, `"reasons":{"projections":"leads has 2 parked event(s)"}`}},
		{"a stalled projection takes the instance out", Check{Name: "projections", Run: func(context.Context) error {
			return &CheckReport{Reason: "deals stalled 40s behind the head"}
		}}, 503, []string{`"code":"unavailable"`, `projections: deals stalled 40s behind the head`}},
		{"a failing optional check degrades", Check{Name: "redis", Optional: true, Run: func(context.Context) error {
			return errors.New("connection refused")
		}}, 200, []string{`"status":"degraded"`, `"redis":"unavailable"`}},
		{"a failing required check is 503", Check{Name: "database", Run: func(context.Context) error {
			return errors.New("connection refused")
		}}, 503, []string{`not ready: database`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Deps{Checks: []Check{{Name: "event_store", Run: ok}, tc.check}})
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.wantStatus, rec.Body)
			}
			if !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("body is not JSON: %s", rec.Body)
			}
			for _, w := range tc.wantBody {
				if !strings.Contains(rec.Body.String(), w) {
					t.Errorf("body %s lacks %s", rec.Body, w)
				}
			}
			if tc.wantStatus == 503 && rec.Header().Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
		})
	}
}
