package webhooks

// Tests of the SQL of Store, FanOut and Dispatcher straight on a database
// (testdb: PostgreSQL, or a SQLite file with SALESOS_TEST_BACKEND=sqlite),
// without a server. The API suite covers the same behaviour end to end.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/envelope"
	"github.com/salesos/salesos/eventstore"
	"github.com/salesos/salesos/internal/testdb"
)

func newStore(s *testdb.Schema) *Store { return &Store{DB: s.DB, Driver: s.Driver, AllowPrivate: true} }

func mustCreate(t *testing.T, st *Store, org, url string, events ...string) Webhook {
	t.Helper()
	w, err := st.Create(context.Background(), org, CreateInput{URL: url, Events: events})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// deliveryState is what the dispatcher keeps of a delivery.
type deliveryState struct {
	Status      string     `db:"status"`
	Attempts    int        `db:"attempts"`
	Next        *time.Time `db:"next_attempt_at"`
	LeaseOwner  *string    `db:"lease_owner"`
	DeliveredAt *time.Time `db:"delivered_at"`
}

func deliveryStates(t *testing.T, s *testdb.Schema, webhookID string) []deliveryState {
	t.Helper()
	var out []deliveryState
	if err := s.DB.Select(&out, `SELECT status, attempts, next_attempt_at, lease_owner, delivered_at
		FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY id`, webhookID); err != nil {
		t.Fatal(err)
	}
	return out
}

func addDelivery(t *testing.T, s *testdb.Schema, w Webhook, eventID string) string {
	t.Helper()
	id := "dlv_" + eventID
	now := dbNow()
	if _, err := s.DB.Exec(`INSERT INTO webhook_deliveries (id, webhook_id, org_id, event_id, event_type, payload, status, next_attempt_at, created_at, updated_at)
		SELECT $1, id, org_id, $2, 'lead.created', '{}', 'pending', $3, $3, $3 FROM webhooks WHERE id = $4`, id, eventID, now, w.ID); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestStoreWebhookLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testdb.New(t)
	st := newStore(s)

	created := mustCreate(t, st, "org_a", "https://example.com/a", "lead.*", "deal.won", "lead.*")
	if !slices.Equal(created.Events, []string{"lead.*", "deal.won"}) || !created.Active || created.Secret == "" || created.DeactivatedAt != nil {
		t.Fatalf("created: %+v", created)
	}
	got, err := st.Get(ctx, "org_a", created.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != created.ID || !slices.Equal(got.Events, created.Events) || !got.CreatedAt.Equal(created.CreatedAt) || !got.UpdatedAt.Equal(created.CreatedAt) || !got.Active {
		t.Fatalf("read back %+v\nwant %+v", got, created)
	}
	if _, err := st.Get(ctx, "org_b", created.ID); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("another org's webhook: %v", err)
	}

	// Pagination, newest first, across webhooks created in the same
	// microsecond or not.
	for i := range 4 {
		mustCreate(t, st, "org_a", fmt.Sprintf("https://example.com/%d", i), "*")
	}
	var seen []string
	p, err := st.List(ctx, "org_a", 2, nil)
	for ; err == nil; p, err = st.List(ctx, "org_a", 2, p.NextCursor) {
		for _, w := range p.Data {
			seen = append(seen, w.ID)
		}
		if !p.HasMore {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if distinct := slices.Compact(slices.Sorted(slices.Values(seen))); len(seen) != 5 || len(distinct) != 5 || seen[4] != created.ID {
		t.Fatalf("listed %v", seen)
	}

	// Deactivating pauses pending deliveries; reactivating makes them due
	// and resets the failure count.
	dlv := addDelivery(t, s, created, "evt_1")
	if _, err := s.DB.Exec(`UPDATE webhooks SET consecutive_failures = 4 WHERE id = $1`, created.ID); err != nil {
		t.Fatal(err)
	}
	off, err := st.Update(ctx, "org_a", created.ID, Patch{
		Active: domain.Opt[bool]{Set: true, Value: false},
		Events: domain.Opt[[]string]{Set: true, Value: []string{"deal.*"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if off.Active || off.DeactivatedAt == nil || off.DeactivationReason == nil || *off.DeactivationReason != "deactivated through the API" || !slices.Equal(off.Events, []string{"deal.*"}) {
		t.Fatalf("deactivated: %+v", off)
	}
	if d := deliveryStates(t, s, created.ID); d[0].Status != StatusPending || d[0].Next != nil {
		t.Fatalf("pending delivery of an inactive webhook: %+v", d[0])
	}
	// A retry while off stays paused.
	if r, err := st.Retry(ctx, "org_a", created.ID, dlv); err != nil || r.NextAttemptAt != nil || r.Status != StatusPending {
		t.Fatalf("retry while off: %+v %v", r, err)
	}
	before := time.Now()
	on, err := st.Update(ctx, "org_a", created.ID, Patch{Active: domain.Opt[bool]{Set: true, Value: true}})
	if err != nil {
		t.Fatal(err)
	}
	if !on.Active || on.ConsecutiveFailures != 0 || on.DeactivatedAt != nil || on.DeactivationReason != nil || !on.UpdatedAt.After(off.UpdatedAt) {
		t.Fatalf("reactivated: %+v", on)
	}
	if d := deliveryStates(t, s, created.ID); d[0].Next == nil || d[0].Next.Before(before.Add(-time.Second)) || d[0].Next.After(time.Now()) {
		t.Fatalf("resumed delivery: %+v", d[0])
	}

	rotated, err := st.RotateSecret(ctx, "org_a", created.ID)
	if err != nil || rotated.Secret == "" || rotated.Secret == created.Secret {
		t.Fatalf("rotate: %+v %v", rotated, err)
	}
	var secret string
	if err := s.DB.Get(&secret, `SELECT secret FROM webhooks WHERE id = $1`, created.ID); err != nil || secret != rotated.Secret {
		t.Fatalf("stored secret %q (%v)", secret, err)
	}

	if err := st.Delete(ctx, "org_a", created.ID); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, "org_a", created.ID); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := st.Get(ctx, "org_a", created.ID); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("deleted webhook: %v", err)
	}
	if d := deliveryStates(t, s, created.ID); d[0].Next != nil {
		t.Fatalf("pending delivery of a deleted webhook: %+v", d[0])
	}
}

// streams is an in-memory StreamReader for the fan-out.
type streams map[string][]eventstore.RecordedEvent

func (m streams) ReadStream(_ context.Context, stream string, from int64, limit int) ([]eventstore.RecordedEvent, error) {
	var out []eventstore.RecordedEvent
	for _, r := range m[stream] {
		if r.Version >= from && len(out) < limit {
			out = append(out, r)
		}
	}
	return out, nil
}

// history builds stored events and keeps them in streams.
type history struct {
	streams streams
	pos     uint64
}

func (h *history) add(t *testing.T, stream, org string, e domain.Event) eventstore.RecordedEvent {
	t.Helper()
	data, err := envelope.Encode(e, domain.Metadata{EventID: newID("evt"), OccurredAt: time.Now(), OrgID: org})
	if err != nil {
		t.Fatal(err)
	}
	h.pos++
	r := eventstore.RecordedEvent{ID: data.ID, StreamID: stream, Type: data.Type, Version: int64(len(h.streams[stream]) + 1),
		Position: h.pos, Data: data.Data, Metadata: data.Metadata, RecordedAt: time.Now()}
	h.streams[stream] = append(h.streams[stream], r)
	return r
}

// applyFanOut runs the fan-out on events in one transaction, as the
// projections' runner does.
func applyFanOut(t *testing.T, s *testdb.Schema, f FanOut, events ...eventstore.RecordedEvent) {
	t.Helper()
	tx, err := s.DB.Beginx()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if err := f.Apply(context.Background(), tx, events); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestFanOutAndEventFeed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testdb.New(t)
	st := newStore(s)
	leads := mustCreate(t, st, "org_a", "https://example.com/leads", "lead.*")
	won := mustCreate(t, st, "org_a", "https://example.com/won", "deal.created")
	off := mustCreate(t, st, "org_a", "https://example.com/off", "*")
	if _, err := st.Update(ctx, "org_a", off.ID, Patch{Active: domain.Opt[bool]{Set: true, Value: false}}); err != nil {
		t.Fatal(err)
	}
	other := mustCreate(t, st, "org_b", "https://example.com/b", "*")

	h := &history{streams: streams{}}
	f := FanOut{Streams: h.streams, Driver: s.Driver}
	lead := envelope.LeadStream("lead_1")
	first := []eventstore.RecordedEvent{
		h.add(t, lead, "org_a", domain.LeadCreated{ID: "lead_1", Name: "Ada", Status: domain.LeadStatusNew}),
		h.add(t, envelope.DealStream("deal_1"), "org_a", domain.DealCreated{ID: "deal_1", Name: "Big", Stage: domain.DealStageProposal}),
		h.add(t, envelope.LeadStream("lead_b"), "org_b", domain.LeadCreated{ID: "lead_b", Name: "Bea", Status: domain.LeadStatusNew}),
	}
	applyFanOut(t, s, f, first...)
	// A batch starting mid-stream reads the record's earlier events; a
	// batch applied twice adds nothing.
	update := h.add(t, lead, "org_a", domain.LeadUpdated{Name: domain.Opt[string]{Set: true, Value: "Ada L."}})
	applyFanOut(t, s, f, update)
	applyFanOut(t, s, f, update)

	count := func(w Webhook) int {
		var n int
		if err := s.DB.Get(&n, `SELECT count(*) FROM webhook_deliveries WHERE webhook_id = $1 AND status = 'pending' AND next_attempt_at IS NOT NULL`, w.ID); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if a, b, c, d := count(leads), count(won), count(off), count(other); a != 2 || b != 1 || c != 0 || d != 1 {
		t.Fatalf("deliveries per webhook: lead.* %d, deal.created %d, inactive %d, org_b %d", a, b, c, d)
	}

	feed := func(org string, after int64, limit int, patterns ...string) (types []string, last int64, more bool) {
		t.Helper()
		items, more, err := st.Feed(ctx, org, after, patterns, limit)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			var p Payload
			if err := json.Unmarshal([]byte(it.Payload), &p); err != nil {
				t.Fatal(err)
			}
			types = append(types, p.Type)
			last = it.Position
		}
		return types, last, more
	}
	if got, _, _ := feed("org_a", 0, 10); !slices.Equal(got, []string{"lead.created", "deal.created", "lead.updated"}) {
		t.Fatalf("feed: %v", got)
	}
	if got, _, _ := feed("org_a", 0, 10, "lead.*"); !slices.Equal(got, []string{"lead.created", "lead.updated"}) {
		t.Fatalf("lead.*: %v", got)
	}
	if got, _, _ := feed("org_a", 0, 10, "deal.created", "lead.updated"); !slices.Equal(got, []string{"deal.created", "lead.updated"}) {
		t.Fatalf("exact types: %v", got)
	}
	if got, _, _ := feed("org_a", 0, 10, "l%.*", "_ead.created", "lead"); len(got) != 0 {
		t.Fatalf("patterns matched as SQL patterns: %v", got)
	}
	if got, _, _ := feed("org_a", 0, 10, "deal.*", "*"); len(got) != 3 {
		t.Fatalf("*: %v", got)
	}
	got, last, more := feed("org_a", 0, 1)
	if !more || !slices.Equal(got, []string{"lead.created"}) {
		t.Fatalf("first page: %v %v", got, more)
	}
	if got, _, more = feed("org_a", last, 5); more || !slices.Equal(got, []string{"deal.created", "lead.updated"}) {
		t.Fatalf("after %d: %v %v", last, got, more)
	}
	if got, _, _ := feed("org_b", 0, 10); !slices.Equal(got, []string{"lead.created"}) {
		t.Fatalf("org_b: %v", got)
	}
	// The payload carries the record after the change.
	var p Payload
	var body string
	if err := s.DB.Get(&body, `SELECT payload FROM event_feed WHERE event_id = $1`, update.ID); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(body), &p); err != nil || p.Data.Object.(map[string]any)["name"] != "Ada L." || string(p.Data.Changes["name"].From) != `"Ada"` {
		t.Fatalf("payload %s (%v)", body, err)
	}

	// A rebuild empties the feed only.
	tx, err := s.DB.Beginx()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Reset(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := feed("org_a", 0, 10); len(got) != 0 || count(leads) != 2 {
		t.Fatalf("after reset: feed %v, %d deliveries", got, count(leads))
	}
}

// statusEndpoint answers every request with the status code it holds.
func statusEndpoint(t *testing.T, code *atomic.Int32) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(int(code.Load()))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func fastDispatcher(s *testdb.Schema, deactivateAfter int) *Dispatcher {
	return NewDispatcher(s.DB, s.Driver, DispatcherConfig{
		Sender:          NewSender(SenderConfig{AllowPrivate: true}),
		Schedule:        []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond, 4 * time.Millisecond, 5 * time.Millisecond},
		DeactivateAfter: deactivateAfter,
		PollInterval:    5 * time.Millisecond,
	})
}

// Six attempts, then failed; recover and retry re-queue it; success resets
// the failure count.
func TestDispatcherRetryScheduleRecoverAndRetry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testdb.New(t)
	st := newStore(s)
	var code atomic.Int32
	code.Store(http.StatusInternalServerError)
	ep := statusEndpoint(t, &code)
	w := mustCreate(t, st, "org_a", ep.URL, "*")
	since := time.Now().Add(-time.Minute)
	dlv := addDelivery(t, s, w, "evt_1")
	stop := runDispatcher(fastDispatcher(s, 10))
	eventually(t, "the delivery failed", func() bool { return deliveryStates(t, s, w.ID)[0].Status == StatusFailed })
	stop()
	d, err := st.GetDelivery(ctx, "org_a", w.ID, dlv)
	if err != nil {
		t.Fatal(err)
	}
	if d.Attempts != 6 || len(d.AttemptHistory) != 6 || d.NextAttemptAt != nil || d.DeliveredAt != nil || *d.LastStatusCode != 500 ||
		*d.LastError != "endpoint answered 500 Internal Server Error" || *d.AttemptHistory[5].StatusCode != 500 {
		t.Fatalf("failed delivery: %+v", d)
	}
	for i := 1; i < 6; i++ {
		if d.AttemptHistory[i].AttemptedAt.Before(d.AttemptHistory[i-1].AttemptedAt) {
			t.Fatalf("attempts out of order: %+v", d.AttemptHistory)
		}
	}
	if w, _ := st.Get(ctx, "org_a", w.ID); w.ConsecutiveFailures != 6 || !w.Active {
		t.Fatalf("webhook after 6 failures: %+v", w)
	}
	n, err := st.Recover(ctx, "org_a", w.ID, since)
	if err != nil || n != 1 {
		t.Fatalf("recover: %d %v", n, err)
	}
	if n, _ := st.Recover(ctx, "org_a", w.ID, since); n != 0 {
		t.Fatalf("recover again: %d", n)
	}
	if ds := deliveryStates(t, s, w.ID); ds[0].Status != StatusPending || ds[0].Next == nil || ds[0].Attempts != 6 {
		t.Fatalf("recovered: %+v", ds[0])
	}
	code.Store(http.StatusNoContent)
	stop = runDispatcher(fastDispatcher(s, 10))
	eventually(t, "delivered", func() bool { return deliveryStates(t, s, w.ID)[0].Status == StatusDelivered })
	stop()
	if ds := deliveryStates(t, s, w.ID); ds[0].Attempts != 7 || ds[0].DeliveredAt == nil || ds[0].Next != nil || ds[0].LeaseOwner != nil {
		t.Fatalf("delivered: %+v", ds[0])
	}
	if w, _ := st.Get(ctx, "org_a", w.ID); w.ConsecutiveFailures != 0 {
		t.Fatalf("failures after a success: %d", w.ConsecutiveFailures)
	}
	// A delivered delivery can be sent again.
	r, err := st.Retry(ctx, "org_a", w.ID, dlv)
	if err != nil || r.Status != StatusPending || r.NextAttemptAt == nil || r.DeliveredAt != nil {
		t.Fatalf("retry: %+v %v", r, err)
	}
	if _, err := st.Retry(ctx, "org_b", w.ID, dlv); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("retry as another org: %v", err)
	}
}

// The threshold-th consecutive failure switches the webhook off, exactly,
// and its other pending deliveries are paused until it is reactivated.
func TestDispatcherDeactivatesAtTheThreshold(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testdb.New(t)
	st := newStore(s)
	var code atomic.Int32
	code.Store(http.StatusBadGateway)
	var requests atomic.Int32
	ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		w.WriteHeader(int(code.Load()))
	}))
	t.Cleanup(ep.Close)
	w := mustCreate(t, st, "org_a", ep.URL, "*")
	// The first round sends all three at once (the webhook is not failing
	// yet); from then on a failing webhook gets one attempt at a time, so
	// the count stops at the threshold.
	for i := range 3 {
		addDelivery(t, s, w, fmt.Sprintf("evt_%d", i))
	}
	stop := runDispatcher(fastDispatcher(s, 5))
	eventually(t, "deactivation", func() bool { w, _ := st.Get(ctx, "org_a", w.ID); return !w.Active })
	stop()
	got, err := st.Get(ctx, "org_a", w.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ConsecutiveFailures != 5 || got.DeactivatedAt == nil || got.DeactivationReason == nil || *got.DeactivationReason != "5 consecutive failed delivery attempts" {
		t.Fatalf("deactivated: %+v", got)
	}
	if n := requests.Load(); n != 5 {
		t.Fatalf("%d attempts, want exactly 5", n)
	}
	for _, d := range deliveryStates(t, s, w.ID) {
		if d.Status != StatusPending || d.Next != nil || d.LeaseOwner != nil {
			t.Fatalf("a delivery of the inactive webhook: %+v", d)
		}
	}
	code.Store(http.StatusOK)
	if _, err := st.Update(ctx, "org_a", w.ID, Patch{Active: domain.Opt[bool]{Set: true, Value: true}}); err != nil {
		t.Fatal(err)
	}
	stop = runDispatcher(fastDispatcher(s, 5))
	defer stop()
	eventually(t, "every delivery delivered", func() bool { return statusCount(t, s, StatusDelivered) == 3 })
}

func TestSendTestIsRecordedButNotCounted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testdb.New(t)
	st := newStore(s)
	var code atomic.Int32
	code.Store(http.StatusOK)
	ep := statusEndpoint(t, &code)
	w := mustCreate(t, st, "org_a", ep.URL, "*")
	sender := NewSender(SenderConfig{AllowPrivate: true})
	ok, err := st.SendTest(ctx, sender, "org_a", w.ID)
	if err != nil || ok.Status != StatusDelivered || ok.DeliveredAt == nil || ok.Attempts != 1 || len(ok.AttemptHistory) != 1 || ok.EventType != TestEventType {
		t.Fatalf("test send: %+v %v", ok, err)
	}
	code.Store(http.StatusTeapot)
	bad, err := st.SendTest(ctx, sender, "org_a", w.ID)
	if err != nil || bad.Status != StatusFailed || bad.DeliveredAt != nil || bad.NextAttemptAt != nil || *bad.LastStatusCode != 418 {
		t.Fatalf("failed test send: %+v %v", bad, err)
	}
	if n, err := st.Recover(ctx, "org_a", w.ID, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("recover took up a test send: %d %v", n, err)
	}
	if got, _ := st.Get(ctx, "org_a", w.ID); got.ConsecutiveFailures != 0 {
		t.Fatalf("a test send counted: %+v", got)
	}
	p, err := st.ListDeliveries(ctx, "org_a", w.ID, StatusFailed, 10, nil)
	if err != nil || len(p.Data) != 1 || p.Data[0].ID != bad.ID {
		t.Fatalf("failed deliveries: %+v %v", p, err)
	}
	p, err = st.ListDeliveries(ctx, "org_a", w.ID, "", 1, nil)
	if err != nil || len(p.Data) != 1 || !p.HasMore {
		t.Fatalf("first page: %+v %v", p, err)
	}
	p, err = st.ListDeliveries(ctx, "org_a", w.ID, "", 1, p.NextCursor)
	if err != nil || len(p.Data) != 1 || p.HasMore || p.Data[0].ID != ok.ID {
		t.Fatalf("second page: %+v %v", p, err)
	}
}
