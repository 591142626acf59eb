package webhooks

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

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
	st := &Store{DB: s.DB, AllowPrivate: true}
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
			fmt.Sprintf("dlv_%d", i), w.ID, fmt.Sprintf("evt_%d", i), fmt.Sprintf(`{"n":%d}`, i), now); err != nil {
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
	a := NewDispatcher(s.DB, DispatcherConfig{Sender: sender, Concurrency: 8, PollInterval: 5 * time.Millisecond})
	b := NewDispatcher(other, DispatcherConfig{Sender: sender, Concurrency: 8, PollInterval: 5 * time.Millisecond})
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

// A dispatcher dies mid-delivery (its attempt never comes back and is never
// recorded). Once its lease expires another dispatcher sends the delivery
// again, with the same webhook-id.
func TestDeliveryOfADeadDispatcherIsTakenOver(t *testing.T) {
	t.Parallel()
	s := testdb.New(t)
	hold := make(chan struct{})
	ep := newEndpoint(t, hold)
	seedDeliveries(t, s, ep.URL, 1)
	sender := NewSender(SenderConfig{AllowPrivate: true, Timeout: time.Minute})
	dead := NewDispatcher(s.DB, DispatcherConfig{Sender: sender, Lease: 300 * time.Millisecond, PollInterval: 5 * time.Millisecond, Owner: "dead"})
	deadCtx, kill := context.WithCancel(context.Background())
	go func() { _ = dead.Run(deadCtx) }()
	eventually(t, "the first attempt to reach the endpoint", func() bool { total, _ := ep.counts(); return total == 1 })
	kill() // the process is gone; its request hangs and is never recorded

	heir := NewDispatcher(s.DB, DispatcherConfig{Sender: sender, PollInterval: 5 * time.Millisecond, Owner: "heir"})
	stop := runDispatcher(heir)
	defer stop()
	eventually(t, "the delivery taken over", func() bool { return statusCount(t, s, StatusDelivered) == 1 })
	total, ids := ep.counts()
	if total != 2 || len(ids) != 1 {
		t.Fatalf("%d requests for %d ids; want the same webhook-id twice", total, len(ids))
	}
	// The dead attempt finally returns: it is recorded in the log, but
	// cannot change a delivery whose lease it no longer holds.
	close(hold)
	var owner *string
	var status string
	eventually(t, "the late attempt recorded", func() bool {
		var n int
		_ = s.DB.Get(&n, `SELECT count(*) FROM webhook_attempts`)
		return n == 2
	})
	if err := s.DB.QueryRow(`SELECT status, lease_owner FROM webhook_deliveries`).Scan(&status, &owner); err != nil {
		t.Fatal(err)
	}
	if status != StatusDelivered || owner != nil {
		t.Fatalf("after the late attempt: status %s owner %v", status, owner)
	}
}
