package commands_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/salesos/salesos/commands"
	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/eventstore"
	"github.com/salesos/salesos/eventstore/postgres"
	"github.com/salesos/salesos/eventstore/sqlite"
	"github.com/salesos/salesos/internal/testdb"
)

func newHandler(t *testing.T) *commands.Handler {
	t.Helper()
	db := testdb.New(t)
	var s eventstore.Store
	var err error
	if db.SQLite {
		s, err = sqlite.New(context.Background(), db.DB, db.Read, sqlite.Options{})
	} else {
		s, err = postgres.New(context.Background(), db.DB, postgres.Options{})
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &commands.Handler{Store: s}
}

// The command suite again on the SQLite event store.
func TestCommandsSuiteOnSQLite(t *testing.T) {
	testdb.RerunOn(t, "sqlite")
}

var orgA = commands.Meta{OrgID: "org_a", Actor: domain.Actor{Sub: "auth0|a", Type: domain.ActorUser}, RequestID: "req_a"}
var orgB = commands.Meta{OrgID: "org_b", Actor: domain.Actor{Sub: "auth0|b", Type: domain.ActorUser}, RequestID: "req_b"}

func ptr[T any](v T) *T { return &v }

func createLead(t *testing.T, h *commands.Handler) domain.Lead {
	t.Helper()
	res, err := h.CreateLead(context.Background(), orgA, domain.LeadInput{Name: "Ada Lovelace", Email: ptr("ada@example.com")})
	if err != nil {
		t.Fatal(err)
	}
	return res.Record
}

func TestCreateLeadAnswersWithTheAppendedState(t *testing.T) {
	t.Parallel()
	h := newHandler(t)
	res, err := h.CreateLead(context.Background(), orgA, domain.LeadInput{Name: "Ada"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Record.Version != 1 || res.Record.Status != domain.LeadStatusNew || res.Position == 0 || res.Record.OrgID != "org_a" {
		t.Fatalf("got %+v at %d", res.Record, res.Position)
	}
	if res.Record.CreatedAt.Nanosecond()%1000 != 0 {
		t.Fatalf("created_at %v is finer than the microseconds PostgreSQL keeps", res.Record.CreatedAt)
	}
}

// Two writers holding the same version race with If-Match: one wins, the
// other is told its precondition failed, and nothing is lost or doubled.
func TestIfMatchRaceOneWinsOneGets412(t *testing.T) {
	t.Parallel()
	h := newHandler(t)
	lead := createLead(t, h)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = h.UpdateLead(context.Background(), orgA, lead.ID,
				domain.LeadPatch{Title: domain.OptOf(fmt.Sprintf("title %d", i))}, ptr(int64(1)))
		}()
	}
	wg.Wait()
	ok, failed := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, commands.ErrPreconditionFailed):
			failed++
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if ok != 1 || failed != 1 {
		t.Fatalf("%d succeeded, %d failed the precondition; want 1 and 1", ok, failed)
	}
}

func TestStaleIfMatchIsPreconditionFailed(t *testing.T) {
	t.Parallel()
	h := newHandler(t)
	lead := createLead(t, h)
	if _, err := h.UpdateLead(context.Background(), orgA, lead.ID, domain.LeadPatch{Title: domain.OptOf("x")}, nil); err != nil {
		t.Fatal(err)
	}
	_, err := h.UpdateLead(context.Background(), orgA, lead.ID, domain.LeadPatch{Title: domain.OptOf("y")}, ptr(int64(1)))
	if !errors.Is(err, commands.ErrPreconditionFailed) {
		t.Fatalf("err = %v, want ErrPreconditionFailed", err)
	}
}

// Without If-Match, concurrent writers are retried on the fresh state: every
// change lands.
func TestConcurrentPatchesWithoutIfMatchAllLand(t *testing.T) {
	t.Parallel()
	h := newHandler(t)
	lead := createLead(t, h)
	const writers = 4
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cf := map[string]json.RawMessage{fmt.Sprintf("k%d", i): json.RawMessage(`true`)}
			if _, err := h.UpdateLead(context.Background(), orgA, lead.ID, domain.LeadPatch{CustomFields: domain.OptOf(cf)}, nil); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	res, err := h.UpdateLead(context.Background(), orgA, lead.ID, domain.LeadPatch{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Record.CustomFields) != writers || res.Record.Version != writers+1 {
		t.Fatalf("after %d concurrent patches: %d custom fields, version %d", writers, len(res.Record.CustomFields), res.Record.Version)
	}
}

func TestConvertTwiceIsAConflict(t *testing.T) {
	t.Parallel()
	h := newHandler(t)
	lead := createLead(t, h)
	conv, err := h.ConvertLead(context.Background(), orgA, lead.ID, domain.ConvertDealInput{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if conv.Lead.Status != domain.LeadStatusConverted || conv.Deal.LeadID == nil || *conv.Deal.LeadID != lead.ID {
		t.Fatalf("conversion: %+v", conv)
	}
	if _, err := h.ConvertLead(context.Background(), orgA, lead.ID, domain.ConvertDealInput{}, nil); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("second convert: %v, want ErrConflict", err)
	}
}

func TestOtherOrganizationsRecordsAreNotFound(t *testing.T) {
	t.Parallel()
	h := newHandler(t)
	lead := createLead(t, h)
	ctx := context.Background()
	checks := map[string]error{}
	_, checks["update"] = h.UpdateLead(ctx, orgB, lead.ID, domain.LeadPatch{Title: domain.OptOf("x")}, nil)
	_, checks["delete"] = h.DeleteLead(ctx, orgB, lead.ID, nil)
	_, checks["convert"] = h.ConvertLead(ctx, orgB, lead.ID, domain.ConvertDealInput{}, nil)
	_, checks["deal with foreign lead_id"] = h.CreateDeal(ctx, orgB, domain.DealInput{Name: "x", LeadID: &lead.ID})
	for name, err := range checks {
		var ve *domain.ValidationError
		if !errors.Is(err, domain.ErrNotFound) && !errors.As(err, &ve) {
			t.Errorf("%s: err = %v, want not found", name, err)
		}
	}
	// org A's lead is untouched.
	res, err := h.UpdateLead(ctx, orgA, lead.ID, domain.LeadPatch{}, nil)
	if err != nil || res.Record.Version != 1 {
		t.Fatalf("org A's lead changed: %+v %v", res.Record, err)
	}
}

func TestDeleteIsTerminal(t *testing.T) {
	t.Parallel()
	h := newHandler(t)
	lead := createLead(t, h)
	ctx := context.Background()
	if _, err := h.DeleteLead(ctx, orgA, lead.ID, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := h.DeleteLead(ctx, orgA, lead.ID, nil); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := h.UpdateLead(ctx, orgA, lead.ID, domain.LeadPatch{Title: domain.OptOf("x")}, nil); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("update after delete: %v", err)
	}
}

func TestInjectedClockAndIDs(t *testing.T) {
	t.Parallel()
	h := newHandler(t)
	at := time.Date(2026, 3, 15, 14, 30, 0, 0, time.UTC)
	n := 0
	h.Now = func() time.Time { return at }
	h.NewID = func(prefix string) string { n++; return fmt.Sprintf("%s_%d_%d", prefix, n, time.Now().UnixNano()) }
	res, err := h.CreateDeal(context.Background(), orgA, domain.DealInput{Name: "Big", Stage: ptr("won")})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Record.CreatedAt.Equal(at) || res.Record.ClosedAt == nil || !res.Record.ClosedAt.Equal(at) {
		t.Fatalf("deal times: created %v closed %v, want %v", res.Record.CreatedAt, res.Record.ClosedAt, at)
	}
}
