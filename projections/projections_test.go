package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/commands"
	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/eventstore"
	"github.com/salesos/salesos/eventstore/postgres"
	"github.com/salesos/salesos/eventstore/sqlite"
	"github.com/salesos/salesos/internal/testdb"
)

// fixture is one test's database on the binary's backend (testdb.New): on
// PostgreSQL db and read are the same pool; on SQLite db is the file's
// single writer and read its read-only pool, as the app wires them.
type fixture struct {
	db     *sqlx.DB
	read   *sqlx.DB
	store  eventstore.Store
	cmd    *commands.Handler
	sqlite bool
	d      driver.Driver
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	s := testdb.New(t)
	var store eventstore.Store
	var err error
	if s.SQLite {
		store, err = sqlite.New(context.Background(), s.DB, s.Read, sqlite.Options{PollInterval: 50 * time.Millisecond})
	} else {
		store, err = postgres.New(context.Background(), s.DB, postgres.Options{PollInterval: 50 * time.Millisecond})
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &fixture{db: s.DB, read: s.Read, store: store, cmd: &commands.Handler{Store: store}, sqlite: s.SQLite, d: s.Driver}
}

// runner is NewRunner on the fixture's handles.
func (f *fixture) runner(cfg Config, ps ...Projection) *Runner {
	cfg.Read = f.read
	return NewRunner(f.db, f.d, f.store, cfg, ps...)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var meta = commands.Meta{OrgID: "org_p", Actor: domain.Actor{Sub: "auth0|p", Type: domain.ActorUser}}

// writeHistory makes a realistic mix of events: leads created, patched,
// converted (which creates deals), deals won and lost, some deleted.
func (f *fixture) writeHistory(t *testing.T, n int) uint64 {
	t.Helper()
	ctx := ctxT(t)
	var last uint64
	for i := range n {
		res, err := f.cmd.CreateLead(ctx, meta, domain.LeadInput{Name: fmt.Sprintf("Lead %d", i), Company: ptr(fmt.Sprintf("Co %d", i%7))})
		if err != nil {
			t.Fatal(err)
		}
		last = max(last, res.Position)
		id := res.Record.ID
		if i%2 == 0 {
			r, err := f.cmd.UpdateLead(ctx, meta, id, domain.LeadPatch{Status: domain.OptOf("contacted"), Title: domain.OptOf("CTO")}, nil)
			if err != nil {
				t.Fatal(err)
			}
			last = max(last, r.Position)
		}
		if i%3 == 0 {
			amount, _ := domain.ParseAmount(fmt.Sprintf("%d.25", i*100))
			conv, err := f.cmd.ConvertLead(ctx, meta, id, domain.ConvertDealInput{Amount: &amount, Currency: ptr("EUR")}, nil)
			if err != nil {
				t.Fatal(err)
			}
			last = max(last, conv.Position)
			stage := "won"
			patch := domain.DealPatch{Stage: domain.OptOf(stage)}
			if i%2 == 1 {
				patch = domain.DealPatch{Stage: domain.OptOf("lost"), LostReason: domain.OptOf("budget")}
			}
			r, err := f.cmd.UpdateDeal(ctx, meta, conv.Deal.ID, patch, nil)
			if err != nil {
				t.Fatal(err)
			}
			last = max(last, r.Position)
		}
		if i%5 == 4 {
			r, err := f.cmd.DeleteLead(ctx, meta, id, nil)
			if err != nil {
				t.Fatal(err)
			}
			last = max(last, r.Position)
		}
	}
	return last
}

func ptr[T any](v T) *T { return &v }

// snapshot dumps both query tables, every column of every row, in a form
// that compares equal when the rows are equal (times in UTC, JSON
// documents normalized).
func snapshot(t *testing.T, db *sqlx.DB, d driver.Driver) string {
	t.Helper()
	var ids struct{ leads, deals []string }
	if err := db.Select(&ids.leads, `SELECT id FROM leads ORDER BY id`); err != nil {
		t.Fatal(err)
	}
	if err := db.Select(&ids.deals, `SELECT id FROM deals ORDER BY id`); err != nil {
		t.Fatal(err)
	}
	leads, err := d.LoadLeads(ctxT(t), db, ids.leads)
	if err != nil {
		t.Fatal(err)
	}
	deals, err := d.LoadDeals(ctxT(t), db, ids.deals)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(leads, func(a, b driver.LeadRow) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(deals, func(a, b driver.DealRow) int { return strings.Compare(a.ID, b.ID) })
	for i := range leads {
		r := &leads[i]
		r.CustomFields = normJSON(t, r.CustomFields)
		r.CreatedAt, r.UpdatedAt, r.DeletedAt = r.CreatedAt.UTC(), r.UpdatedAt.UTC(), utcPtr(r.DeletedAt)
	}
	for i := range deals {
		r := &deals[i]
		r.CustomFields = normJSON(t, r.CustomFields)
		r.CreatedAt, r.UpdatedAt, r.ClosedAt, r.DeletedAt = r.CreatedAt.UTC(), r.UpdatedAt.UTC(), utcPtr(r.ClosedAt), utcPtr(r.DeletedAt)
	}
	l, err := json.Marshal(leads)
	if err != nil {
		t.Fatal(err)
	}
	dj, err := json.Marshal(deals)
	if err != nil {
		t.Fatal(err)
	}
	return string(l) + "\n" + string(dj)
}

func normJSON(t *testing.T, raw driver.JSONDoc) driver.JSONDoc {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func runRunner(t *testing.T, r *Runner) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

func waitAll(t *testing.T, r *Runner, pos uint64) {
	t.Helper()
	for _, name := range []string{LeadsName, DealsName} {
		if err := r.WaitFor(ctxT(t), name, pos); err != nil {
			t.Fatalf("%s did not reach %d: %v", name, pos, err)
		}
	}
}

// The query tables hold exactly the state folded from each stream.
func TestProjectedRowsEqualFoldedStreams(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	last := f.writeHistory(t, 12)
	r := f.runner(Config{BatchSize: 5}, Leads{Driver: f.d}, Deals{Driver: f.d})
	stop := runRunner(t, r)
	defer stop()
	waitAll(t, r, last)

	q := Queries{DB: f.read, Driver: f.d}
	page, err := q.ListLeads(ctxT(t), meta.OrgID, LeadFilter{Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 12-2 { // two of twelve were deleted
		t.Fatalf("%d live leads, want 10", len(page.Data))
	}
	for _, l := range page.Data {
		folded, err := LeadAsOf(ctxT(t), f.store, meta.OrgID, l.ID, time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		a, _ := json.Marshal(l)
		b, _ := json.Marshal(folded)
		if string(a) != string(b) {
			t.Errorf("lead %s:\n table %s\n fold  %s", l.ID, a, b)
		}
	}
	deals, err := q.ListDeals(ctxT(t), meta.OrgID, DealFilter{Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	if len(deals.Data) != 4 {
		t.Fatalf("%d deals, want 4", len(deals.Data))
	}
	for _, d := range deals.Data {
		folded, err := DealAsOf(ctxT(t), f.store, meta.OrgID, d.ID, time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		a, _ := json.Marshal(d)
		b, _ := json.Marshal(folded)
		if string(a) != string(b) {
			t.Errorf("deal %s:\n table %s\n fold  %s", d.ID, a, b)
		}
	}
}

// Kill the runner between batches, start a new one: the result is the same
// as a rebuild from scratch.
func TestCrashBetweenBatchesThenRestartEqualsRebuild(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	last := f.writeHistory(t, 15)

	r1 := f.runner(Config{BatchSize: 4}, Leads{Driver: f.d}, Deals{Driver: f.d})
	ctx, kill := context.WithCancel(context.Background())
	var batches atomic.Int32
	r1.applyHook = func(string, uint64) {
		if batches.Add(1) == 3 {
			kill() // dies mid-way, with later batches not applied
		}
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = r1.Run(ctx) }()
	<-done
	if cp, _ := Position(ctxT(t), f.db, f.d, LeadsName); cp >= last {
		t.Fatalf("the first runner got to %d of %d before dying: the test needs it to stop mid-way", cp, last)
	}

	r2 := f.runner(Config{BatchSize: 4}, Leads{Driver: f.d}, Deals{Driver: f.d})
	stop := runRunner(t, r2)
	waitAll(t, r2, last)
	stop()
	afterCrash := snapshot(t, f.db, f.d)
	if rebuilt := f.rebuiltSnapshot(t); rebuilt != afterCrash {
		t.Fatalf("restart after a crash differs from a rebuild:\n crash   %s\n rebuild %s", afterCrash, rebuilt)
	}
}

// rebuiltSnapshot rebuilds both projections from the events, as `salesos
// projections rebuild` does, and returns the tables' snapshot: what any
// sequence of batches, crashes and retries must end with.
func (f *fixture) rebuiltSnapshot(t *testing.T) string {
	t.Helper()
	for _, p := range []Projection{Leads{Driver: f.d}, Deals{Driver: f.d}} {
		if err := Rebuild(ctxT(t), f.db, f.d, p); err != nil {
			t.Fatal(err)
		}
		if _, err := CatchUp(ctxT(t), f.db, f.d, f.store, p, 1000); err != nil {
			t.Fatal(err)
		}
	}
	return snapshot(t, f.db, f.d)
}

// A batch delivered again (Watermill redelivery after a lost ack) changes
// nothing, and even replaying everything over existing rows (a lost
// checkpoint) cannot move a row back to an older version.
func TestRedeliveryIsIdempotent(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.writeHistory(t, 6)
	all, err := f.store.ReadAll(ctxT(t), 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []Projection{Leads{Driver: f.d}, Deals{Driver: f.d}} {
		for range 2 {
			if _, err := applyBatch(ctxT(t), f.db, f.d, p, 0, all, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	once := snapshot(t, f.db, f.d)
	if _, err := f.db.Exec(`UPDATE projection_checkpoints SET position = 0`); err != nil {
		t.Fatal(err)
	}
	for _, p := range []Projection{Leads{Driver: f.d}, Deals{Driver: f.d}} {
		half := all[:len(all)/2]
		if _, err := applyBatch(ctxT(t), f.db, f.d, p, 0, half, nil); err != nil {
			t.Fatal(err)
		}
	}
	if again := snapshot(t, f.db, f.d); again != once {
		t.Fatalf("re-applying old events changed the tables:\n before %s\n after  %s", once, again)
	}
}

// failOnce fails (and once panics) on chosen batches, then succeeds.
type failOnce struct {
	Projection
	mu    sync.Mutex
	calls int
}

func (f *failOnce) Apply(ctx context.Context, tx *sqlx.Tx, evs []eventstore.RecordedEvent) error {
	f.mu.Lock()
	f.calls++
	n := f.calls
	f.mu.Unlock()
	if err := f.Projection.Apply(ctx, tx, evs); err != nil {
		return err
	}
	switch n {
	case 2:
		return errors.New("injected failure after writing: the transaction must roll back")
	case 4:
		panic("injected panic")
	}
	return nil
}

// Errors and panics inside a batch roll it back and it is retried by the
// router's middleware; the end state is exact.
func TestFailingBatchesAreRetriedNotSkipped(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	last := f.writeHistory(t, 10)
	r := f.runner(Config{BatchSize: 3}, &failOnce{Projection: Leads{Driver: f.d}}, Deals{Driver: f.d})
	stop := runRunner(t, r)
	waitAll(t, r, last)
	stop()
	got := snapshot(t, f.db, f.d)
	if want := f.rebuiltSnapshot(t); got != want {
		t.Fatalf("after retried failures:\n got  %s\n want %s", got, want)
	}
}

// Two instances: one leads, the other stands by and takes over when the
// first stops.
func TestOneActiveRunnerPerProjection(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if f.sqlite {
		t.Skip("SQLite has no leader lock (see acquireLeader); TestConcurrentRunnersStayExact covers several runners there")
	}
	var mu sync.Mutex
	appliedBy := map[string]int{}
	mk := func(name string) *Runner {
		r := f.runner(Config{BatchSize: 2, LeaderRetry: 20 * time.Millisecond}, Leads{Driver: f.d}, Deals{Driver: f.d})
		r.applyHook = func(string, uint64) { mu.Lock(); appliedBy[name]++; mu.Unlock() }
		return r
	}
	a, b := mk("a"), mk("b")
	stopA := runRunner(t, a)
	// Let A take the leadership before B starts.
	first := f.writeHistory(t, 2)
	waitAll(t, a, first)
	stopB := runRunner(t, b)
	defer stopB()
	second := f.writeHistory(t, 3)
	waitAll(t, a, second)
	mu.Lock()
	if appliedBy["b"] != 0 {
		t.Fatalf("standby applied %d batches while the leader ran", appliedBy["b"])
	}
	mu.Unlock()
	stopA()
	third := f.writeHistory(t, 2)
	waitAll(t, b, third)
	mu.Lock()
	defer mu.Unlock()
	if appliedBy["b"] == 0 {
		t.Fatal("standby never took over")
	}
}

// Several appliers at once (two runners, without leadership on SQLite, and
// a CatchUp beside them) while events are written: the tables end exactly
// as a rebuild makes them.
func TestConcurrentRunnersStayExact(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a := f.runner(Config{BatchSize: 2, LeaderRetry: 20 * time.Millisecond}, Leads{Driver: f.d}, Deals{Driver: f.d})
	// b reads its checkpoints through the write handle (no Config.Read).
	b := NewRunner(f.db, f.d, f.store, Config{BatchSize: 3, LeaderRetry: 20 * time.Millisecond}, Leads{Driver: f.d}, Deals{Driver: f.d})
	stopA, stopB := runRunner(t, a), runRunner(t, b)
	first := f.writeHistory(t, 4)
	errs := make(chan error, 2)
	for _, p := range []Projection{Leads{Driver: f.d}, Deals{Driver: f.d}} {
		go func() {
			_, err := CatchUp(ctxT(t), f.db, f.d, f.store, p, 2)
			errs <- err
		}()
	}
	last := max(first, f.writeHistory(t, 4))
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	waitAll(t, a, last)
	waitAll(t, b, last)
	stopA()
	stopB()
	got := snapshot(t, f.db, f.d)
	if want := f.rebuiltSnapshot(t); got != want {
		t.Fatalf("with concurrent appliers:\n got  %s\n want %s", got, want)
	}
}

// A rebuild under a running instance: it notices the new generation and
// replays into the emptied tables.
func TestRebuildWhileRunning(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	last := f.writeHistory(t, 8)
	r := f.runner(Config{BatchSize: 5, LeaderRetry: 50 * time.Millisecond}, Leads{Driver: f.d}, Deals{Driver: f.d})
	stop := runRunner(t, r)
	defer stop()
	waitAll(t, r, last)
	before := snapshot(t, f.db, f.d)
	if err := Rebuild(ctxT(t), f.db, f.d, Leads{Driver: f.d}); err != nil {
		t.Fatal(err)
	}
	// Poll with a deadline until the running instance has replayed.
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for snapshot(t, f.db, f.d) != before {
		if time.Now().After(deadline) {
			t.Fatalf("tables not rebuilt by the running instance:\n want %s\n got  %s", before, snapshot(t, f.db, f.d))
		}
		<-tick.C
	}
}

func TestCursorRoundTripAndGarbage(t *testing.T) {
	t.Parallel()
	c := Cursor{CreatedAt: time.Date(2026, 3, 15, 14, 30, 0, 123456000, time.UTC), ID: "lead_x|y"}
	got, err := DecodeCursor(c.Encode())
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for _, bad := range []string{"", "!!!", "bm9waXBl", "MTIz"} {
		if _, err := DecodeCursor(bad); !errors.Is(err, ErrBadCursor) {
			t.Errorf("DecodeCursor(%q) = %v", bad, err)
		}
	}
}
