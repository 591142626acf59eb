package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/commands"
	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/envelope"
	"github.com/salesos/salesos/eventstore"
	"github.com/salesos/salesos/eventstore/postgres"
	"github.com/salesos/salesos/internal/testdb"
)

// appendRaw appends an event to stream bypassing the command handler (and
// so any validation): a copy of template's event with its data replaced.
func (f *fixture) appendRaw(t *testing.T, stream string, expected int64, typ string, template eventstore.RecordedEvent, data string) uint64 {
	t.Helper()
	var md map[string]any
	if err := json.Unmarshal(template.Metadata, &md); err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	md["event_id"] = id
	mdRaw, _ := json.Marshal(md)
	res, err := f.store.Append(ctxT(t), stream, expected, eventstore.EventData{ID: id, Type: typ, Data: []byte(data), Metadata: mdRaw})
	if err != nil {
		t.Fatalf("append %s to %s: %v", typ, stream, err)
	}
	return res.Position
}

// leadTemplate creates a lead through the command handler and returns its
// stored lead.created event, whose metadata raw appends reuse.
func (f *fixture) leadTemplate(t *testing.T, m commands.Meta) (string, eventstore.RecordedEvent) {
	t.Helper()
	res, err := f.cmd.CreateLead(ctxT(t), m, domain.LeadInput{Name: "Template"})
	if err != nil {
		t.Fatal(err)
	}
	evs, err := f.store.ReadStream(ctxT(t), envelope.LeadStream(res.Record.ID), 1, 1)
	if err != nil || len(evs) != 1 {
		t.Fatalf("read template: %v %d", err, len(evs))
	}
	return res.Record.ID, evs[0]
}

func leadData(t *testing.T, tmpl eventstore.RecordedEvent, name string) string {
	t.Helper()
	var d map[string]any
	if err := json.Unmarshal(tmpl.Data, &d); err != nil {
		t.Fatal(err)
	}
	d["name"] = name
	raw, _ := json.Marshal(d)
	return string(raw)
}

// poisonHistory writes, in this order: healthy leads of two organizations,
// a lead whose creation no projection can apply (a NUL in its name, which
// PostgreSQL refuses; on SQLite, which stores NUL, a name that is not a
// string, so that decoding fails), a later update of that same lead, and
// more healthy leads of both organizations. It returns the poison stream,
// the positions of its two events and the ids of the healthy leads.
func (f *fixture) poisonHistory(t *testing.T) (stream string, poison, later uint64, healthy []string) {
	t.Helper()
	other := commands.Meta{OrgID: "org_other", Actor: meta.Actor}
	id, tmpl := f.leadTemplate(t, meta)
	healthy = append(healthy, id)
	oid, _ := f.leadTemplate(t, other)
	healthy = append(healthy, oid)

	stream = envelope.LeadStream("lead_poison" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12])
	data := leadData(t, tmpl, "a\u0000b")
	if f.sqlite {
		data = strings.Replace(leadData(t, tmpl, "x"), `"name":"x"`, `"name":5`, 1)
	}
	poison = f.appendRaw(t, stream, eventstore.NoStream, tmpl.Type, tmpl, data)
	later = f.appendRaw(t, stream, 1, "lead.updated", tmpl, `{"changes":{"title":"CEO"}}`)
	for i := range 3 {
		m := meta
		if i%2 == 1 {
			m = other
		}
		res, err := f.cmd.CreateLead(ctxT(t), m, domain.LeadInput{Name: fmt.Sprintf("After %d", i)})
		if err != nil {
			t.Fatal(err)
		}
		healthy = append(healthy, res.Record.ID)
	}
	return stream, poison, later, healthy
}

// waitHead polls until every named projection's checkpoint reaches head.
func waitHead(t *testing.T, db *sqlx.DB, d driver.Driver, head uint64, names ...string) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		behind := map[string]uint64{}
		for _, n := range names {
			cp, err := Position(context.Background(), db, d, n)
			if err != nil || cp < head {
				behind[n] = cp
			}
		}
		if len(behind) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("projections behind head %d: %v", head, behind)
		}
		<-tick.C
	}
}

func projectedLeads(t *testing.T, db *sqlx.DB) map[string]bool {
	t.Helper()
	var ids []string
	if err := db.Select(&ids, `SELECT id FROM leads`); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, id := range ids {
		out[id] = true
	}
	return out
}

// One event no projection can apply must not stop the projection: every
// other stream, of every organization, reaches the read model, and the
// checkpoint reaches the head.
func TestPoisonEventDoesNotStopTheProjection(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	stream, poison, later, healthy := f.poisonHistory(t)
	head, err := f.store.Head(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	r := f.runner(Config{BatchSize: 100, MaxRetries: 1}, Leads{Driver: f.d}, Deals{Driver: f.d})
	stop := runRunner(t, r)
	defer stop()
	waitHead(t, f.read, f.d, head, LeadsName, DealsName)
	got := projectedLeads(t, f.read)
	for _, id := range healthy {
		if !got[id] {
			t.Errorf("healthy lead %s missing from the read model", id)
		}
	}
	checkParked(t, f.read, stream, poison, later)
	hs, err := r.Health(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		want := StateRunning
		if h.Name == LeadsName {
			want = StateParked
		}
		if h.State != want || h.Lag != 0 || (h.Name == LeadsName) != (h.Parked == 2) {
			t.Errorf("health of %s: %+v, want state %s", h.Name, h, want)
		}
	}
	if _, degraded := Summary(hs); !strings.Contains(degraded, "leads has 2 parked") {
		t.Errorf("summary %q does not name the parked projection", degraded)
	}
}

// checkParked: exactly the poison event (tried, with the database's
// error) and the later event of its stream (held back) are parked.
func checkParked(t *testing.T, db *sqlx.DB, stream string, poison, later uint64) {
	t.Helper()
	parked, err := ListParked(ctxT(t), db, LeadsName)
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 2 || parked[0].Position != poison || parked[1].Position != later {
		t.Fatalf("parked %+v, want positions %d and %d", parked, poison, later)
	}
	p, l := parked[0], parked[1]
	if p.StreamID != stream || p.Attempts != 1 || p.EventType != "lead.created" || p.Error == "" || p.EventID == "" ||
		p.FirstAttemptAt.IsZero() || p.LastAttemptAt.Before(p.FirstAttemptAt) {
		t.Errorf("poison event parked as %+v", p)
	}
	if l.StreamID != stream || l.Attempts != 0 || !strings.Contains(l.Error, "held back") || l.EventType != "lead.updated" {
		t.Errorf("later event parked as %+v", l)
	}
	if others, _ := ListParked(ctxT(t), db, DealsName); len(others) != 0 {
		t.Errorf("deals parked %+v", others)
	}
}

// A rebuild (CatchUp, the Preparer path) with a poison event in the log
// finishes, parking it, instead of failing with empty tables.
func TestRebuildParksPoisonEvents(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	stream, poison, later, healthy := f.poisonHistory(t)
	for _, p := range []Projection{Leads{Driver: f.d}, Deals{Driver: f.d}} {
		if err := Rebuild(ctxT(t), f.db, f.d, p); err != nil {
			t.Fatal(err)
		}
		if _, err := CatchUp(ctxT(t), f.db, f.d, f.store, p, 2); err != nil {
			t.Fatalf("rebuild %s: %v", p.Name(), err)
		}
	}
	got := projectedLeads(t, f.read)
	for _, id := range healthy {
		if !got[id] {
			t.Errorf("healthy lead %s missing after the rebuild", id)
		}
	}
	checkParked(t, f.read, stream, poison, later)
	// A second rebuild starts the parked set afresh, it does not pile up.
	if err := Rebuild(ctxT(t), f.db, f.d, Leads{Driver: f.d}); err != nil {
		t.Fatal(err)
	}
	if _, err := CatchUp(ctxT(t), f.db, f.d, f.store, Leads{Driver: f.d}, 1000); err != nil {
		t.Fatal(err)
	}
	checkParked(t, f.read, stream, poison, later)
}

// refuse is a projection that fails, as a database would refuse a value,
// on every event of one stream while told to.
type refuse struct {
	Projection
	stream atomic.Pointer[string]
	// transientLeft, when positive, fails that many batches with a
	// connection error first.
	transientLeft atomic.Int32
}

func (p *refuse) Apply(ctx context.Context, tx *sqlx.Tx, evs []eventstore.RecordedEvent) error {
	if p.transientLeft.Add(-1) >= 0 {
		return fmt.Errorf("upsert: %w", &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"})
	}
	if s := p.stream.Load(); s != nil {
		for _, e := range evs {
			if e.StreamID == *s {
				return fmt.Errorf("upsert leads: refused value in %s", e.ID)
			}
		}
	}
	return p.Projection.Apply(ctx, tx, evs)
}

// Retry re-applies a stream's parked events in order once the cause is
// gone; while it persists, attempts grow and the stream stays held back,
// later events included.
func TestRetryParkedEvents(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a, err := f.cmd.CreateLead(ctxT(t), meta, domain.LeadInput{Name: "A"})
	if err != nil {
		t.Fatal(err)
	}
	stream := envelope.LeadStream(a.Record.ID)
	p := &refuse{Projection: Leads{Driver: f.d}}
	p.stream.Store(&stream)
	r := f.runner(Config{BatchSize: 10}, p)
	stop := runRunner(t, r)
	defer stop()
	upd, err := f.cmd.UpdateLead(ctxT(t), meta, a.Record.ID, domain.LeadPatch{Title: domain.OptOf("CTO")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.cmd.CreateLead(ctxT(t), meta, domain.LeadInput{Name: "B"})
	if err != nil {
		t.Fatal(err)
	}
	waitHead(t, f.read, f.d, b.Position, LeadsName)
	if err := r.WaitFor(ctxT(t), LeadsName, b.Position); err != nil {
		t.Fatal(err)
	}
	got := projectedLeads(t, f.read)
	if got[a.Record.ID] || !got[b.Record.ID] {
		t.Fatalf("read model %v: want B and not A", got)
	}
	parked, err := ListParked(ctxT(t), f.read, LeadsName)
	if err != nil || len(parked) != 2 || parked[0].Position != a.Position || parked[1].Position != upd.Position {
		t.Fatalf("parked %+v %v", parked, err)
	}

	// Still refused: nothing applied, one attempt more, still parked.
	res, err := RetryParked(ctxT(t), f.db, f.d, f.store, p, 0)
	if err != nil || res.Applied != 0 || res.StillParked != 2 {
		t.Fatalf("retry while refused: %+v %v", res, err)
	}
	if parked, _ := ListParked(ctxT(t), f.read, LeadsName); len(parked) != 2 || parked[0].Attempts != 2 {
		t.Fatalf("after a failed retry: %+v", parked)
	}
	if _, err := RetryParked(ctxT(t), f.db, f.d, f.store, p, 999999); !errors.Is(err, ErrNotParked) {
		t.Fatalf("retry of a position that is not parked: %v", err)
	}

	p.stream.Store(nil)
	res, err = RetryParked(ctxT(t), f.db, f.d, f.store, p, upd.Position) // selects A's stream
	if err != nil || res.Applied != 2 || res.StillParked != 0 {
		t.Fatalf("retry: %+v %v", res, err)
	}
	if parked, _ := ListParked(ctxT(t), f.read, LeadsName); len(parked) != 0 {
		t.Fatalf("still parked after a successful retry: %+v", parked)
	}
	// The stream flows again: a new event of A is applied, not held back.
	again, err := f.cmd.UpdateLead(ctxT(t), meta, a.Record.ID, domain.LeadPatch{Title: domain.OptOf("CEO")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WaitFor(ctxT(t), LeadsName, again.Position); err != nil {
		t.Fatal(err)
	}
	lead, err := (Queries{DB: f.read, Driver: f.d}).GetLead(ctxT(t), meta.OrgID, a.Record.ID)
	if err != nil || lead.Version != 3 || lead.Title == nil || *lead.Title != "CEO" {
		t.Fatalf("lead A after retry: %+v %v", lead, err)
	}
}

// A transient error (a lost connection) parks nothing: the batch is
// retried until it applies.
func TestTransientErrorsAreRetriedNotParked(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	last := f.writeHistory(t, 4)
	p := &refuse{Projection: Leads{Driver: f.d}}
	p.transientLeft.Store(4)
	r := f.runner(Config{BatchSize: 3, MaxRetries: 1, MaxBackoff: 200 * time.Millisecond}, p)
	stop := runRunner(t, r)
	defer stop()
	waitHead(t, f.read, f.d, last, LeadsName)
	if parked, err := ListParked(ctxT(t), f.read, ""); err != nil || len(parked) != 0 {
		t.Fatalf("transient errors parked %+v %v", parked, err)
	}
	hs, err := r.Health(ctxT(t))
	if err != nil || len(hs) != 1 || hs[0].Errors < 4 || !strings.Contains(hs[0].LastError, "terminating connection") {
		t.Fatalf("health after transient errors: %+v %v", hs, err)
	}
}

// killConnections ends every server session of pool's application_name,
// as a PostgreSQL restart does to a running server.
func killConnections(ctx context.Context, admin *sqlx.DB, app string) (int, error) {
	var n int
	err := admin.GetContext(ctx, &n, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = $1`, app)
	return n, err
}

// Every projection resumes by itself after its connections are killed,
// again and again, while events are written: each reaches the head without
// a restart of the runner.
func TestProjectionsResumeAfterConnectionsAreKilled(t *testing.T) {
	t.Parallel()
	if testdb.Backend() != "postgres" {
		t.Skip("kills PostgreSQL sessions")
	}
	s := testdb.New(t)
	app := "salesos_test_" + s.Name
	victimURL := s.URL + "&application_name=" + app
	victim, err := sqlx.Open("pgx", victimURL)
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	victimStore, err := postgres.New(context.Background(), victim, postgres.Options{PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer victimStore.Close()
	// Writes go through connections that are never killed.
	writer, err := postgres.New(context.Background(), s.DB, postgres.Options{PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	cmd := &commands.Handler{Store: writer}

	r := NewRunner(victim, s.Driver, victimStore, Config{BatchSize: 3, LeaderRetry: 50 * time.Millisecond, MaxRetries: 1}, Leads{Driver: s.Driver}, Deals{Driver: s.Driver})
	stop := runRunner(t, r)
	defer stop()

	var kills atomic.Int64
	for round := range 15 {
		for i := range 4 {
			res, err := cmd.CreateLead(ctxT(t), meta, domain.LeadInput{Name: fmt.Sprintf("L %d.%d", round, i)})
			if err != nil {
				t.Fatal(err)
			}
			if i%2 == 0 {
				if _, err := cmd.ConvertLead(ctxT(t), meta, res.Record.ID, domain.ConvertDealInput{}, nil); err != nil {
					t.Fatal(err)
				}
			}
		}
		n, err := killConnections(ctxT(t), s.DB, app)
		if err != nil {
			t.Fatal(err)
		}
		kills.Add(int64(n))
	}
	if kills.Load() == 0 {
		t.Fatal("no connection of the runner was killed: the filter is wrong")
	}
	head, err := writer.Head(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	waitHead(t, s.DB, s.Driver, head, LeadsName, DealsName)
	hs, err := r.Health(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	var errs uint64
	for _, h := range hs {
		errs += h.Errors
		if h.Lag != 0 || h.Stalled {
			t.Errorf("health of %s at the head: %+v", h.Name, h)
		}
	}
	if errs == 0 {
		t.Error("the killed connections were not counted as errors of any projection")
	}
}

// A projection that keeps failing while events wait is reported stalled
// once it has made no progress for StallAfter, with its last error.
func TestHealthReportsAStalledProjection(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	p := &refuse{Projection: Leads{Driver: f.d}}
	p.transientLeft.Store(1 << 30)
	r := f.runner(Config{BatchSize: 10, MaxRetries: 1, MaxBackoff: 50 * time.Millisecond, StallAfter: 100 * time.Millisecond}, p)
	stop := runRunner(t, r)
	defer stop()
	f.writeHistory(t, 1)
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		hs, err := r.Health(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if stalled, _ := Summary(hs); strings.Contains(stalled, "leads stalled") && strings.Contains(stalled, "terminating connection") {
			if hs[0].State != StateRetrying || hs[0].Errors == 0 {
				t.Fatalf("stalled projection: %+v", hs[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never reported stalled: %+v", hs)
		}
		<-tick.C
	}
	p.transientLeft.Store(0)
	head, _ := f.store.Head(ctxT(t))
	waitHead(t, f.read, f.d, head, LeadsName)
	hs, err := r.Health(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if stalled, _ := Summary(hs); stalled != "" || hs[0].State != StateRunning {
		t.Fatalf("after recovering: %q %+v", stalled, hs[0])
	}
}

// Which errors are passing problems (retry) and which are the events'
// fault (park).
func TestTransientClassification(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&pgconn.PgError{Code: "22021", Message: `invalid byte sequence for encoding "UTF8": 0x00`}, false},
		{&pgconn.PgError{Code: "22P05", Message: "unsupported Unicode escape sequence"}, false},
		{&pgconn.PgError{Code: "23505"}, false},
		{&pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}, true},
		{&pgconn.PgError{Code: "08006"}, true},
		{&pgconn.PgError{Code: "40001"}, true},
		{&pgconn.PgError{Code: "53300"}, true},
		{fmt.Errorf("read checkpoint: %w", context.Canceled), true},
		{fmt.Errorf("x: %w", &net.OpError{Op: "dial", Err: errors.New("connection refused")}), true},
		{Transient(errors.New("event store unavailable")), true},
		{errors.New("event 1 (lead.created): json: cannot unmarshal number into Go struct field"), false},
		{fmt.Errorf("panic: %v", "boom"), false},
	} {
		if got := transient(c.err); got != c.want {
			t.Errorf("transient(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// The deals projection parks a deal whose custom fields hold an escaped
// NUL (jsonb refuses it: "unsupported Unicode escape sequence") and goes on
// with the deals after it.
func TestPoisonCustomFieldsOfADealAreParked(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if f.sqlite {
		t.Skip("SQLite stores the escape as text; the decode poison of the other tests covers it")
	}
	d, err := f.cmd.CreateDeal(ctxT(t), meta, domain.DealInput{Name: "Template", CustomFields: map[string]json.RawMessage{"k": json.RawMessage(`"v"`)}})
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := f.store.ReadStream(ctxT(t), envelope.DealStream(d.Record.ID), 1, 1)
	if err != nil || len(tmpl) != 1 {
		t.Fatalf("read template: %v", err)
	}
	data := strings.Replace(string(tmpl[0].Data), `"v"`, `"a\u0000b"`, 1)
	if data == string(tmpl[0].Data) {
		t.Fatalf("no custom field to poison in %s", data)
	}
	stream := envelope.DealStream("deal_poison" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12])
	poison := f.appendRaw(t, stream, eventstore.NoStream, tmpl[0].Type, tmpl[0], data)
	after, err := f.cmd.CreateDeal(ctxT(t), meta, domain.DealInput{Name: "After"})
	if err != nil {
		t.Fatal(err)
	}
	r := f.runner(Config{BatchSize: 50}, Deals{Driver: f.d})
	stop := runRunner(t, r)
	defer stop()
	waitHead(t, f.read, f.d, after.Position, DealsName)
	parked, err := ListParked(ctxT(t), f.read, DealsName)
	if err != nil || len(parked) != 1 || parked[0].Position != poison || !strings.Contains(parked[0].Error, "Unicode escape") {
		t.Fatalf("parked %+v %v", parked, err)
	}
	var n int
	if err := f.read.Get(&n, `SELECT count(*) FROM deals WHERE id IN ($1, $2)`, d.Record.ID, after.Record.ID); err != nil || n != 2 {
		t.Fatalf("%d healthy deals projected (%v), want 2", n, err)
	}
}
