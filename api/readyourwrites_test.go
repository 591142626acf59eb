package api_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/salesos/salesos/internal/apptest"
)

// GET of one lead or deal reflects every acknowledged write, without a
// consistency token, even while its projection is behind. On PostgreSQL
// (and with EventStoreDB as the event store) the test holds the leads and
// deals projections still, by locking their checkpoints, so every read
// below comes after a write the query tables have not seen; on SQLite the
// projections run, and the reads race them.
func TestSingleRecordReadsReflectEveryWrite(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	tok := fullToken(t, s, newOrg("ryw"))
	_, ctoken := createLead(t, s, tok, map[string]any{"name": "warm-up"})
	_, ctoken2 := createDeal(t, s, tok, map[string]any{"name": "warm-up"})
	// Both projections have run once, so their checkpoints exist.
	wantStatus(t, call(t, s, http.MethodGet, "/v1/leads", tok, nil, "X-Consistency-Token", ctoken), http.StatusOK)
	wantStatus(t, call(t, s, http.MethodGet, "/v1/deals", tok, nil, "X-Consistency-Token", ctoken2), http.StatusOK)
	if !s.Schema.SQLite {
		tx, err := s.Schema.DB.BeginTxx(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		var n int
		if err := tx.Get(&n, `SELECT count(*) FROM (SELECT name FROM projection_checkpoints WHERE name IN ('leads', 'deals') FOR UPDATE) x`); err != nil || n != 2 {
			t.Fatalf("locking the checkpoints: %d rows, %v", n, err)
		}
	}
	for _, kind := range []string{"leads", "deals"} {
		for round := range 20 {
			created := wantStatus(t, call(t, s, http.MethodPost, "/v1/"+kind, tok, map[string]any{"name": "before"}), http.StatusCreated)
			path := "/v1/" + kind + "/" + created["id"].(string)

			r := call(t, s, http.MethodGet, path, tok, nil)
			if got := wantStatus(t, r, http.StatusOK); got["name"] != "before" {
				t.Fatalf("%s round %d: GET right after POST shows %v", kind, round, got["name"])
			}
			patched := call(t, s, http.MethodPatch, path, tok, map[string]any{"name": fmt.Sprintf("after %d", round)})
			wantStatus(t, patched, http.StatusOK)
			r = call(t, s, http.MethodGet, path, tok, nil)
			got := wantStatus(t, r, http.StatusOK)
			if got["name"] != fmt.Sprintf("after %d", round) || r.Header.Get("ETag") != patched.Header.Get("ETag") {
				t.Fatalf("%s round %d: GET right after PATCH shows %v with ETag %s, want the patch's ETag %s",
					kind, round, got["name"], r.Header.Get("ETag"), patched.Header.Get("ETag"))
			}
			wantStatus(t, call(t, s, http.MethodDelete, path, tok, nil, "If-Match", patched.Header.Get("ETag")), http.StatusNoContent)
			wantError(t, call(t, s, http.MethodGet, path, tok, nil), http.StatusNotFound, "not_found")
		}
	}
	// Another organization's record stays invisible through the stream too.
	other := fullToken(t, s, newOrg("ryw-other"))
	lead, _ := createLead(t, s, tok, map[string]any{"name": "mine"})
	wantError(t, call(t, s, http.MethodGet, "/v1/leads/"+lead["id"].(string), other, nil), http.StatusNotFound, "not_found")
}
