package webhooks

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/eventstore/sqlite"
	"github.com/salesos/salesos/internal/testdb"
)

// endpoint counts deliveries per webhook-id; hold, when set, blocks the
// first request until it is closed.
type endpoint struct {
	*httptest.Server
	mu    sync.Mutex
	seen  map[string]int
	total int
	hold  chan struct{}
}

func newEndpoint(t *testing.T, hold chan struct{}) *endpoint {
	e := &endpoint{seen: map[string]int{}, hold: hold}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.total++
		first := e.total == 1
		e.seen[r.Header.Get("webhook-id")]++
		e.mu.Unlock()
		if first && e.hold != nil {
			<-e.hold
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *endpoint) counts() (total int, ids map[string]int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ids = make(map[string]int, len(e.seen))
	for k, v := range e.seen {
		ids[k] = v
	}
	return e.total, ids
}

// seedDeliveries stores a webhook for url and n pending deliveries due now.
func seedDeliveries(t *testing.T, s *testdb.Schema, url string, n int) string {
	t.Helper()
	st := &Store{DB: s.DB, Driver: s.Driver, AllowPrivate: true}
	w, err := st.Create(context.Background(), "org_d", CreateInput{URL: url, Events: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := s.DB.Beginx()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	now := dbNow()
	for i := 1; i <= n; i++ {
		if _, err := tx.Exec(`INSERT INTO webhook_deliveries (id, webhook_id, org_id, event_id, event_type, payload, status, next_attempt_at, created_at, updated_at)
			VALUES ($1, $2, 'org_d', $3, 'lead.created', $4, 'pending', $5, $5, $5)`,
			fmt.Sprintf("dlv_%s_%d", w.ID, i), w.ID, fmt.Sprintf("evt_%s_%d", w.ID, i), fmt.Sprintf(`{"n":%d}`, i), now); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return w.ID
}

func runDispatcher(d *Dispatcher) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	return func() { cancel(); <-done }
}

func statusCount(t *testing.T, s *testdb.Schema, status string) int {
	t.Helper()
	var n int
	if err := s.DB.Get(&n, `SELECT count(*) FROM webhook_deliveries WHERE status = $1`, status); err != nil {
		t.Fatal(err)
	}
	return n
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// Two dispatchers side by side: in the normal path every delivery goes out
// exactly once.
func TestTwoDispatchersNeverSendTwice(t *testing.T) {
	t.Parallel()
	s := testdb.New(t)
	ep := newEndpoint(t, nil)
	const n = 300
	seedDeliveries(t, s, ep.URL, n)
	sender := NewSender(SenderConfig{AllowPrivate: true})
	// On SQLite the second dispatcher has its own writer on the same file,
	// as another process would: only the file's write lock keeps them apart.
	other := s.DB
	if s.SQLite {
		db, err := sqlite.OpenDB(context.Background(), s.Name, sqlite.DBOptions{Synchronous: "NORMAL"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		other = db.Write
	}
	a := NewDispatcher(s.DB, s.Driver, DispatcherConfig{Sender: sender, Concurrency: 8, PollInterval: 5 * time.Millisecond})
	b := NewDispatcher(other, s.Driver, DispatcherConfig{Sender: sender, Concurrency: 8, PollInterval: 5 * time.Millisecond})
	stopA, stopB := runDispatcher(a), runDispatcher(b)
	eventually(t, "every delivery delivered", func() bool { return statusCount(t, s, StatusDelivered) == n })
	stopA()
	stopB()
	total, ids := ep.counts()
	if total != n || len(ids) != n {
		t.Fatalf("%d requests for %d distinct events, want %d and %d", total, len(ids), n, n)
	}
	var attempts int
	if err := s.DB.Get(&attempts, `SELECT count(*) FROM webhook_attempts`); err != nil || attempts != n {
		t.Fatalf("%d attempts recorded (%v), want %d", attempts, err, n)
	}
}

// otherProcess is a second handle on the test's database, as another
// instance of the server would have: a pool of its own on PostgreSQL, a
// writer of its own on the SQLite file. close ends it, like a crash.
func otherProcess(t *testing.T, s *testdb.Schema) (db *sqlx.DB, close func()) {
	t.Helper()
	if s.SQLite {
		h, err := sqlite.OpenDB(context.Background(), s.Name, sqlite.DBOptions{Synchronous: "NORMAL"})
		if err != nil {
			t.Fatal(err)
		}
		var once sync.Once
		close = func() { once.Do(func() { h.Close() }) }
		t.Cleanup(close)
		return h.Write, close
	}
	db, err := sqlx.Open("pgx", s.URL)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	close = func() { once.Do(func() { db.Close() }) }
	t.Cleanup(close)
	return db, close
}

// A dispatcher's process dies mid-attempt: its lease stops being renewed,
// and another dispatcher sends the delivery once the lease has run out
// (within Lease, not a timeout later), with the same webhook-id.
func TestDeliveryOfACrashedDispatcherIsTakenOverWithinTheLease(t *testing.T) {
	t.Parallel()
	s := testdb.New(t)
	hold := make(chan struct{})
	defer close(hold)
	ep := newEndpoint(t, hold)
	seedDeliveries(t, s, ep.URL, 1)
	sender := NewSender(SenderConfig{AllowPrivate: true, Timeout: time.Minute})
	deadDB, crash := otherProcess(t, s)
	dead := NewDispatcher(deadDB, s.Driver, DispatcherConfig{Sender: sender, Lease: 500 * time.Millisecond, PollInterval: 5 * time.Millisecond, Owner: "dead", Logger: quietLogger()})
	deadCtx, kill := context.WithCancel(context.Background())
	deadDone := make(chan struct{})
	go func() { defer close(deadDone); _ = dead.Run(deadCtx) }()
	eventually(t, "the first attempt to reach the endpoint", func() bool { total, _ := ep.counts(); return total == 1 })
	crash() // the process is gone: no renewals, no recording
	kill()

	heir := NewDispatcher(s.DB, s.Driver, DispatcherConfig{Sender: sender, Lease: 500 * time.Millisecond, PollInterval: 5 * time.Millisecond, Owner: "heir"})
	stop := runDispatcher(heir)
	defer stop()
	eventually(t, "the delivery taken over", func() bool { return statusCount(t, s, StatusDelivered) == 1 })
	total, ids := ep.counts()
	if total != 2 || len(ids) != 1 {
		t.Fatalf("%d requests for %d ids; want the same webhook-id twice", total, len(ids))
	}
	dead.Interrupt()
	<-deadDone
}

// An attempt that runs longer than the lease keeps its delivery: the lease
// is renewed while the attempt runs, so a second dispatcher never sends
// the same delivery beside it.
func TestLeaseIsRenewedWhileTheAttemptRuns(t *testing.T) {
	t.Parallel()
	s := testdb.New(t)
	hold := make(chan struct{})
	ep := newEndpoint(t, hold)
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	t.Cleanup(release) // before the endpoint's Close, which waits for the held request
	seedDeliveries(t, s, ep.URL, 1)
	sender := NewSender(SenderConfig{AllowPrivate: true, Timeout: time.Minute})
	// Long enough that a renewal delayed by a loaded machine does not
	// cut the attempt short (the cutoff is at four fifths of it).
	const lease = time.Second
	otherDB, _ := otherProcess(t, s)
	a := NewDispatcher(s.DB, s.Driver, DispatcherConfig{Sender: sender, Lease: lease, PollInterval: 5 * time.Millisecond, Owner: "a"})
	b := NewDispatcher(otherDB, s.Driver, DispatcherConfig{Sender: sender, Lease: lease, PollInterval: 5 * time.Millisecond, Owner: "b"})
	stopA := runDispatcher(a)
	defer stopA()
	eventually(t, "the first attempt to reach the endpoint", func() bool { total, _ := ep.counts(); return total == 1 })
	stopB := runDispatcher(b)
	defer stopB()
	var first time.Time
	if err := s.DB.Get(&first, `SELECT lease_expires_at FROM webhook_deliveries`); err != nil {
		t.Fatal(err)
	}
	// Several leases' worth of renewals, with b looking for work all along.
	eventually(t, "the lease renewed several times over", func() bool {
		var now time.Time
		_ = s.DB.Get(&now, `SELECT lease_expires_at FROM webhook_deliveries WHERE lease_owner = 'a'`)
		return now.Sub(first) > 4*lease
	})
	if total, _ := ep.counts(); total != 1 {
		t.Fatalf("%d requests while the first attempt was still running; want 1", total)
	}
	release()
	eventually(t, "the delivery delivered", func() bool { return statusCount(t, s, StatusDelivered) == 1 })
	if total, _ := ep.counts(); total != 1 {
		t.Fatalf("%d requests in all; want 1", total)
	}
}

// An outcome that arrives after another dispatcher took the delivery over
// is logged, but it neither changes the delivery nor moves the webhook's
// count of consecutive failures.
func TestOutcomeAfterTheLeaseWasLostDoesNotCount(t *testing.T) {
	t.Parallel()
	s := testdb.New(t)
	hook := seedDeliveries(t, s, "http://127.0.0.1:9/", 1)
	ctx := context.Background()
	a := NewDispatcher(s.DB, s.Driver, DispatcherConfig{Owner: "a", Lease: time.Second})
	b := NewDispatcher(s.DB, s.Driver, DispatcherConfig{Owner: "b", Lease: time.Second})
	got, err := a.claim(ctx, 1)
	if err != nil || len(got) != 1 {
		t.Fatalf("a claims: %v %v", got, err)
	}
	if _, err := s.DB.Exec(`UPDATE webhook_deliveries SET lease_expires_at = $1`, dbNow().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if taken, err := b.claim(ctx, 1); err != nil || len(taken) != 1 {
		t.Fatalf("b takes over: %v %v", taken, err)
	}
	late := result{d: got[0], at: time.Now(), attempt: Attempt{StatusCode: 500}, outcome: Failed}
	if err := a.recordBatch([]result{late}); err != nil {
		t.Fatal(err)
	}
	var failures, attempts, logged int
	var owner string
	if err := s.DB.QueryRow(`SELECT consecutive_failures FROM webhooks WHERE id = $1`, hook).Scan(&failures); err != nil {
		t.Fatal(err)
	}
	if err := s.DB.QueryRow(`SELECT attempts, lease_owner FROM webhook_deliveries`).Scan(&attempts, &owner); err != nil {
		t.Fatal(err)
	}
	if err := s.DB.Get(&logged, `SELECT count(*) FROM webhook_attempts`); err != nil {
		t.Fatal(err)
	}
	if failures != 0 || attempts != 0 || owner != "b" || logged != 1 {
		t.Fatalf("after the late outcome: failures %d, attempts %d, owner %q, logged %d; want 0, 0, b, 1", failures, attempts, owner, logged)
	}
}

// slowEndpoint answers only once released, and reports the most requests
// it ever had open at once.
type slowEndpoint struct {
	*httptest.Server
	mu           sync.Mutex
	open, most   int
	release      chan struct{}
	releaseOnce  sync.Once
	requestsSeen int
}

func newSlowEndpoint(t *testing.T) *slowEndpoint {
	e := &slowEndpoint{release: make(chan struct{})}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.open++
		e.requestsSeen++
		e.most = max(e.most, e.open)
		e.mu.Unlock()
		select {
		case <-e.release:
		case <-r.Context().Done():
		}
		e.mu.Lock()
		e.open--
		e.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(func() { e.Release(); e.Close() })
	return e
}

func (e *slowEndpoint) Release() { e.releaseOnce.Do(func() { close(e.release) }) }

func (e *slowEndpoint) mostOpen() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.most
}

func deliveredOf(t *testing.T, s *testdb.Schema, webhookID string) int {
	t.Helper()
	var n int
	if err := s.DB.Get(&n, `SELECT count(*) FROM webhook_deliveries WHERE webhook_id = $1 AND status = 'delivered'`, webhookID); err != nil {
		t.Fatal(err)
	}
	return n
}

// A slow endpoint with a large backlog, older than everyone else's, holds
// only its own share of the dispatcher's slots: a healthy endpoint's
// deliveries go out while the slow one's attempts are all still open.
func TestSlowEndpointDoesNotDelayOthers(t *testing.T) {
	t.Parallel()
	s := testdb.New(t)
	slow := newSlowEndpoint(t)
	healthy := newEndpoint(t, nil)
	seedDeliveries(t, s, slow.URL, 100)
	fast := seedDeliveries(t, s, healthy.URL, 50)
	d := NewDispatcher(s.DB, s.Driver, DispatcherConfig{
		Sender:      NewSender(SenderConfig{AllowPrivate: true, Timeout: time.Minute}),
		Concurrency: 16, PerEndpoint: 4, PollInterval: 5 * time.Millisecond,
	})
	stop := runDispatcher(d)
	defer stop()
	eventually(t, "every delivery of the healthy endpoint", func() bool { return deliveredOf(t, s, fast) == 50 })
	if most := slow.mostOpen(); most > 4 {
		t.Fatalf("the slow endpoint had %d attempts open at once; its limit is 4", most)
	}
	slow.Release()
}

// hostile endpoints fail in the ways real ones do.
func hostileEndpoint(t *testing.T, kind string) string {
	t.Helper()
	switch kind {
	case "reset":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetLinger(0) // close with RST
				}
				c.Close()
			}
		}()
		return "http://" + ln.Addr().String() + "/"
	case "hang":
		done := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-done:
			}
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(done) }) // runs first
		return srv.URL
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) }))
	t.Cleanup(srv.Close)
	return srv.URL
}

func attemptsOf(t *testing.T, s *testdb.Schema, webhookID string) int {
	t.Helper()
	var n int
	if err := s.DB.Get(&n, `SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id WHERE d.webhook_id = $1`, webhookID); err != nil {
		t.Fatal(err)
	}
	return n
}

// quiet reports whether the webhook is switched off and no attempt of it
// is in flight any more.
func switchedOffAndQuiet(t *testing.T, s *testdb.Schema, webhookID string) bool {
	t.Helper()
	var active bool
	var leased int
	if err := s.DB.QueryRow(`SELECT active FROM webhooks WHERE id = $1`, webhookID).Scan(&active); err != nil {
		t.Fatal(err)
	}
	if err := s.DB.Get(&leased, `SELECT count(*) FROM webhook_deliveries WHERE webhook_id = $1 AND lease_owner IS NOT NULL`, webhookID); err != nil {
		t.Fatal(err)
	}
	return !active && leased == 0
}

// Exactly DeactivateAfter failed attempts switch a webhook off, whatever
// the way it fails, the backlog (40 deliveries due at once), the number of
// dispatchers, and again right after a reactivation.
func TestDeactivationIsExact(t *testing.T) {
	t.Parallel()
	cases := []struct {
		kind        string
		dispatchers int
	}{
		{"500", 1}, {"reset", 1}, {"hang", 1}, {"500", 2}, {"reset", 2},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s/%d dispatchers", tc.kind, tc.dispatchers), func(t *testing.T) {
			t.Parallel()
			s := testdb.New(t)
			hook := seedDeliveries(t, s, hostileEndpoint(t, tc.kind), 40)
			cfg := DispatcherConfig{
				Sender:          NewSender(SenderConfig{AllowPrivate: true, Timeout: 200 * time.Millisecond}),
				Schedule:        []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond, time.Millisecond, time.Millisecond},
				DeactivateAfter: 10, Concurrency: 64, PerEndpoint: 8, PollInterval: 5 * time.Millisecond,
			}
			for i := range tc.dispatchers {
				db := s.DB
				if i > 0 {
					db, _ = otherProcess(t, s)
				}
				defer runDispatcher(NewDispatcher(db, s.Driver, cfg))()
			}
			eventually(t, "the webhook switched off", func() bool { return switchedOffAndQuiet(t, s, hook) })
			if n := attemptsOf(t, s, hook); n != 10 {
				t.Fatalf("switched off after %d failed attempts, want exactly 10", n)
			}
			st := &Store{DB: s.DB, Driver: s.Driver, AllowPrivate: true}
			if _, err := st.Update(context.Background(), "org_d", hook, Patch{Active: domain.Opt[bool]{Set: true, Value: true}}); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the webhook switched off again", func() bool { return switchedOffAndQuiet(t, s, hook) })
			if n := attemptsOf(t, s, hook); n != 20 {
				t.Fatalf("switched off again after %d more failed attempts, want exactly 10", n-10)
			}
		})
	}
}

// A failing webhook with a backlog is probed, not flooded: after each
// failure its next attempt, of whichever delivery, waits the first step of
// the schedule, although forty deliveries are due all along. The gaps are
// read from the attempts' own timestamps (a lower bound the run cannot
// make flaky by being slow).
func TestFailingWebhookIsProbedOncePerFirstRetryStep(t *testing.T) {
	t.Parallel()
	s := testdb.New(t)
	hook := seedDeliveries(t, s, hostileEndpoint(t, "500"), 40)
	step := 50 * time.Millisecond
	cfg := DispatcherConfig{
		Sender:          NewSender(SenderConfig{AllowPrivate: true, Timeout: 200 * time.Millisecond}),
		Schedule:        []time.Duration{step, step, step, step, step},
		DeactivateAfter: 6, Concurrency: 64, PerEndpoint: 2, PollInterval: 5 * time.Millisecond,
	}
	defer runDispatcher(NewDispatcher(s.DB, s.Driver, cfg))()
	db, _ := otherProcess(t, s)
	defer runDispatcher(NewDispatcher(db, s.Driver, cfg))()
	eventually(t, "the webhook switched off", func() bool { return switchedOffAndQuiet(t, s, hook) })
	var at []time.Time
	if err := s.DB.Select(&at, `SELECT a.attempted_at FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
		WHERE d.webhook_id = $1 ORDER BY a.attempted_at`, hook); err != nil {
		t.Fatal(err)
	}
	if len(at) != 6 {
		t.Fatalf("%d attempts, want exactly 6", len(at))
	}
	// The first two went out together, while the webhook looked healthy.
	for i := 2; i < len(at); i++ {
		// attempted_at is when the attempt started; the wait runs from the
		// end of the one before, so the gap is at least the step.
		if gap := at[i].Sub(at[i-1]); gap < step {
			t.Errorf("attempt %d started %v after the one before, want at least %v", i+1, gap, step)
		}
	}
}

// Deliveries made by the fan-out send the event feed's copy of the body.
// While the feed is being rebuilt (the row is gone for a moment) such a
// delivery waits: it is neither sent without a body nor failed.
func TestDeliveryBodyComesFromTheEventFeed(t *testing.T) {
	t.Parallel()
	s := testdb.New(t)
	var mu sync.Mutex
	bodies := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies[r.Header.Get("webhook-id")] = string(b)
		mu.Unlock()
	}))
	defer srv.Close()
	hook := seedDeliveries(t, s, srv.URL, 1) // evt_<hook>_1 carries its own body
	now := dbNow()
	if _, err := s.DB.Exec(`INSERT INTO webhook_deliveries (id, webhook_id, org_id, event_id, event_type, payload, status, next_attempt_at, created_at, updated_at)
		VALUES ('dlv_feed', $1, 'org_d', 'evt_feed', 'lead.created', '', 'pending', $2, $2, $2)`, hook, now); err != nil {
		t.Fatal(err)
	}
	stop := runDispatcher(NewDispatcher(s.DB, s.Driver, DispatcherConfig{
		Sender: NewSender(SenderConfig{AllowPrivate: true}), PollInterval: 5 * time.Millisecond,
	}))
	defer stop()
	own := "evt_" + hook + "_1"
	eventually(t, "the delivery with its own body sent", func() bool { mu.Lock(); defer mu.Unlock(); return bodies[own] != "" })
	// That claim ran with the other delivery due too: it waited.
	mu.Lock()
	_, early := bodies["evt_feed"]
	mu.Unlock()
	if early {
		t.Fatal("a delivery was sent while its body was missing from the feed")
	}
	if _, err := s.DB.Exec(`INSERT INTO event_feed (position, event_id, org_id, type, occurred_at, payload)
		VALUES (1, 'evt_feed', 'org_d', 'lead.created', $1, '{"from":"feed"}')`, now); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the feed-backed delivery sent", func() bool { mu.Lock(); defer mu.Unlock(); return bodies["evt_feed"] != "" })
	mu.Lock()
	defer mu.Unlock()
	if bodies["evt_feed"] != `{"from":"feed"}` || bodies[own] != `{"n":1}` {
		t.Fatalf("bodies = %v", bodies)
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// A dispatcher whose database is gone says so: every failed claim is
// counted by stage, and Health names the failing stage and its error, for
// /readyz, instead of the failure living only in the log.
func TestDispatcherReportsFailingClaims(t *testing.T) {
	t.Parallel()
	s := testdb.New(t)
	db, crash := otherProcess(t, s)
	crash() // every statement on db now fails
	var mu sync.Mutex
	errs := map[string]int{}
	d := NewDispatcher(db, s.Driver, DispatcherConfig{PollInterval: 5 * time.Millisecond, Logger: quietLogger(),
		OnError: func(stage string) { mu.Lock(); errs[stage]++; mu.Unlock() }})
	stop := runDispatcher(d)
	defer stop()
	eventually(t, "failed claims counted", func() bool { mu.Lock(); defer mu.Unlock(); return errs["claim"] >= 3 })
	stage, since, err := d.Health()
	if stage != "claim" || since.IsZero() || err == nil {
		t.Fatalf("Health() = %q, %v, %v; want the claim stage failing with its error", stage, since, err)
	}
}

func TestDispatcherHealthyAfterASuccess(t *testing.T) {
	t.Parallel()
	s := testdb.New(t)
	d := NewDispatcher(s.DB, s.Driver, DispatcherConfig{PollInterval: 5 * time.Millisecond})
	d.failed("claim", fmt.Errorf("boom"))
	if stage, _, _ := d.Health(); stage != "claim" {
		t.Fatalf("after a failure Health() stage = %q", stage)
	}
	stop := runDispatcher(d)
	defer stop()
	eventually(t, "a successful claim clears the failure", func() bool { stage, _, _ := d.Health(); return stage == "" })
}
