package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/salesos/salesos/commands"
	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/envelope"
	"github.com/salesos/salesos/eventstore"
	"github.com/salesos/salesos/eventstore/postgres"
	"github.com/salesos/salesos/eventstore/sqlite"
	"github.com/salesos/salesos/internal/testdb"
)

// `projections rebuild` with a poison event in the log finishes (exit 0)
// and parks it; `projections parked` lists it; `projections retry` tries
// it again and, as the cause is still there, fails and keeps it parked.
func TestRebuildParkedAndRetryCommands(t *testing.T) {
	s := testdb.New(t)
	ctx := context.Background()
	var store eventstore.Store
	var err error
	if s.SQLite {
		store, err = sqlite.New(ctx, s.DB, s.Read, sqlite.Options{})
	} else {
		store, err = postgres.New(ctx, s.DB, postgres.Options{})
	}
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	m := commands.Meta{OrgID: "org_cli", Actor: domain.Actor{Sub: "auth0|cli", Type: domain.ActorUser}}
	cmd := &commands.Handler{Store: store}
	healthy, err := cmd.CreateLead(ctx, m, domain.LeadInput{Name: "Healthy"})
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := store.ReadStream(ctx, envelope.LeadStream(healthy.Record.ID), 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	var md map[string]any
	_ = json.Unmarshal(tmpl[0].Metadata, &md)
	id := uuid.NewString()
	md["event_id"] = id
	mdRaw, _ := json.Marshal(md)
	poison, err := store.Append(ctx, envelope.LeadStream("lead_clipoison"), eventstore.NoStream,
		eventstore.EventData{ID: id, Type: "lead.created", Data: []byte(`{"name":5}`), Metadata: mdRaw})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.CreateLead(ctx, m, domain.LeadInput{Name: "Later"}); err != nil {
		t.Fatal(err)
	}

	t.Setenv("SALESOS_DATABASE_URL", s.URL)
	t.Setenv("SALESOS_ENV", "development")
	t.Setenv("SALESOS_DATA_DIR", t.TempDir())
	t.Setenv("SALESOS_LOG_LEVEL", "error")
	var out, errOut bytes.Buffer
	if err := run([]string{"projections", "rebuild"}, &out, &errOut); err != nil {
		t.Fatalf("rebuild with a poison event: %v\n%s", err, out.String())
	}
	var n int
	if err := s.Read.Get(&n, `SELECT count(*) FROM leads`); err != nil || n != 2 {
		t.Fatalf("%d leads after the rebuild (%v), want the 2 healthy ones", n, err)
	}
	out.Reset()
	if err := run([]string{"projections", "parked"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "PROJECTION") || !strings.Contains(lines[1], "lead-lead_clipoison") ||
		!strings.Contains(lines[1], "lead.created") || !strings.HasPrefix(lines[1], "leads ") {
		t.Fatalf("parked:\n%s", out.String())
	}
	out.Reset()
	err = run([]string{"projections", "retry", "leads", "--position", strconv.FormatUint(poison.Position, 10)}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "1 event(s) still parked") || !strings.Contains(out.String(), "leads: 0 re-applied, 1 still parked") {
		t.Fatalf("retry of a still poisonous event: %v\n%s", err, out.String())
	}
	var attempts int
	if err := s.Read.Get(&attempts, `SELECT attempts FROM projection_parked_events WHERE projection = 'leads'`); err != nil || attempts != 2 {
		t.Fatalf("attempts %d %v, want 2", attempts, err)
	}
	if err := run([]string{"projections", "retry", "--position", "999999"}, &out, &errOut); err == nil {
		t.Fatal("retry of a position nothing parked succeeded")
	}
}

// The commands again on the embedded default, SQLite.
func TestCommandsOnSQLite(t *testing.T) {
	testdb.RerunOn(t, "sqlite")
}
