package drivertest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/internal/testdb"
)

func init() { areas = append(areas, area{"Webhooks", runWebhooks}) }

func runWebhooks(t *testing.T, d driver.Driver, open Open) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, w *webhookFixture)
	}{
		{"InsertWebhookOnce", testInsertWebhookOnce},
		{"UpdateWebhook", testUpdateWebhook},
		{"InsertFeedAndDeliveriesIdempotently", testInsertFeedAndDeliveries},
		{"ReadFeedByPattern", testReadFeed},
		{"ListDeliveriesInPages", testListDeliveries},
		{"ListDueWebhooks", testListDueWebhooks},
		{"LeaseDueQuota", testLeaseDue},
		{"CountForeignLeases", testCountForeignLeases},
		{"RenewOwnLeasesOnly", testRenewLeases},
		{"RecordAttemptsWhileLeaseHeld", testRecordAttempts},
		{"LockWebhookStatesThatChange", testLockWebhookStates},
		{"PauseAndResume", testPauseAndResume},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, &webhookFixture{t: t, d: d, s: open(t), ctx: context.Background()})
		})
	}
}

// webhookFixture builds webhook rows through the driver under test.
type webhookFixture struct {
	t   *testing.T
	d   driver.Driver
	s   *testdb.Schema
	ctx context.Context
	n   int
}

// past is a time well before the database's clock, so deliveries at it are
// due whichever clock (the database's or the caller's) a statement reads.
func past(ago time.Duration) time.Time {
	return time.Now().UTC().Add(-ago).Truncate(time.Microsecond)
}

func (f *webhookFixture) webhook(org string, events ...string) driver.Webhook {
	f.t.Helper()
	f.n++
	w, err := f.d.InsertWebhook(f.ctx, f.s.DB, driver.NewWebhook{
		ID: fmt.Sprintf("wh_%d", f.n), OrgID: org, URL: "https://example.com/hook", Events: events,
		Secret: "s3cret", Now: past(time.Hour),
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return w
}

// deliveries stores one feed event and delivery per time in at, each
// created and due then, and returns the delivery ids.
func (f *webhookFixture) deliveries(w driver.Webhook, at ...time.Time) []string {
	f.t.Helper()
	var feed []driver.FeedRow
	var dl []driver.NewDelivery
	var ids []string
	for _, t := range at {
		f.n++
		evt := fmt.Sprintf("evt_%d", f.n)
		feed = append(feed, driver.FeedRow{Position: int64(f.n), EventID: evt, OrgID: "org_a", Type: "lead.created",
			OccurredAt: t, Payload: fmt.Sprintf(`{"n":%d}`, f.n)})
		id := fmt.Sprintf("dlv_%d", f.n)
		dl = append(dl, driver.NewDelivery{ID: id, WebhookID: w.ID, OrgID: "org_a", EventID: evt, EventType: "lead.created", Now: t})
		ids = append(ids, id)
	}
	if err := f.d.InsertFeedAndDeliveries(f.ctx, f.s.DB, feed, dl); err != nil {
		f.t.Fatal(err)
	}
	return ids
}

func (f *webhookFixture) exec(q string, args ...any) {
	f.t.Helper()
	if _, err := f.s.DB.Exec(q, args...); err != nil {
		f.t.Fatal(err)
	}
}

func (f *webhookFixture) lease(p driver.LeaseDue) []driver.LeasedDelivery {
	f.t.Helper()
	got, err := f.d.LeaseDue(f.ctx, f.s.DB, p)
	if err != nil {
		f.t.Fatal(err)
	}
	return got
}

func leasedIDs(l []driver.LeasedDelivery) []string {
	var out []string
	for _, d := range l {
		out = append(out, d.ID)
	}
	slices.Sort(out)
	return out
}

func testInsertWebhookOnce(t *testing.T, f *webhookFixture) {
	w := f.webhook("org_a", "lead.*", "deal.won")
	if w.ID != "wh_1" || !w.Active || !slices.Equal(w.Events, []string{"lead.*", "deal.won"}) || w.Secret != "" {
		t.Fatalf("inserted %+v", w)
	}
	_, err := f.d.InsertWebhook(f.ctx, f.s.DB, driver.NewWebhook{ID: w.ID, OrgID: "org_b", URL: "https://example.com/b", Events: []string{"*"}, Secret: "x", Now: past(0)})
	if !errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("inserting a taken id: %v, want sql.ErrNoRows", err)
	}
	got, err := f.d.GetWebhookWithSecret(f.ctx, f.s.DB, "org_a", w.ID)
	if err != nil || got.Secret != "s3cret" || got.URL != w.URL {
		t.Fatalf("stored %+v (%v)", got, err)
	}
	if _, err := f.d.GetWebhook(f.ctx, f.s.DB, "org_b", w.ID); !errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("another organization's webhook: %v", err)
	}
}

func testUpdateWebhook(t *testing.T, f *webhookFixture) {
	w := f.webhook("org_a", "*")
	tx := f.s.DB.MustBegin()
	defer tx.Rollback()
	if _, err := f.d.LockWebhook(f.ctx, tx, "org_a", w.ID); err != nil {
		t.Fatal(err)
	}
	events, desc, now := []string{"deal.*"}, "described", past(0)
	off, err := f.d.UpdateWebhook(f.ctx, tx, driver.WebhookUpdate{OrgID: "org_a", ID: w.ID, Now: now, Events: &events,
		SetDescription: true, Description: &desc, Deactivate: true, DeactivationReason: "it's off"})
	if err != nil {
		t.Fatal(err)
	}
	if off.Active || off.DeactivatedAt == nil || *off.DeactivationReason != "it's off" || !slices.Equal(off.Events, events) || *off.Description != desc || !off.UpdatedAt.Equal(now) {
		t.Fatalf("deactivated: %+v", off)
	}
	on, err := f.d.UpdateWebhook(f.ctx, tx, driver.WebhookUpdate{OrgID: "org_a", ID: w.ID, Now: now, SetDescription: true, Activate: true})
	if err != nil {
		t.Fatal(err)
	}
	if !on.Active || on.DeactivatedAt != nil || on.DeactivationReason != nil || on.Description != nil || !slices.Equal(on.Events, events) {
		t.Fatalf("reactivated: %+v", on)
	}
}

func testInsertFeedAndDeliveries(t *testing.T, f *webhookFixture) {
	w := f.webhook("org_a", "*")
	at := past(time.Minute)
	feed := []driver.FeedRow{{Position: 7, EventID: "evt_7", OrgID: "org_a", Type: "lead.created", OccurredAt: at, Payload: `{"a":1}`}}
	dl := []driver.NewDelivery{{ID: "dlv_first", WebhookID: w.ID, OrgID: "org_a", EventID: "evt_7", EventType: "lead.created", Now: at}}
	for _, id := range []string{"dlv_first", "dlv_again"} {
		dl[0].ID = id
		if err := f.d.InsertFeedAndDeliveries(f.ctx, f.s.DB, feed, dl); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.d.InsertFeedAndDeliveries(f.ctx, f.s.DB, feed, nil); err != nil {
		t.Fatal(err)
	}
	rows, err := f.d.ListDeliveries(f.ctx, f.s.DB, driver.DeliveryList{OrgID: "org_a", WebhookID: w.ID, Limit: 10})
	if err != nil || len(rows) != 1 || rows[0].ID != "dlv_first" || rows[0].Status != "pending" || rows[0].NextAttemptAt == nil || !rows[0].NextAttemptAt.Equal(at) {
		t.Fatalf("deliveries %+v (%v)", rows, err)
	}
	items, err := f.d.ReadFeed(f.ctx, f.s.DB, driver.FeedRead{OrgID: "org_a", Limit: 10})
	if err != nil || len(items) != 1 || items[0].Payload != `{"a":1}` {
		t.Fatalf("feed %+v (%v)", items, err)
	}
	// The lease hands out the feed's payload, the delivery having none.
	got := f.lease(driver.LeaseDue{Now: past(0), Owner: "a", Lease: time.Minute, Quotas: []driver.WebhookQuota{{WebhookID: w.ID, Quota: 1}}})
	if len(got) != 1 || got[0].Payload != `{"a":1}` || got[0].EventID != "evt_7" {
		t.Fatalf("leased %+v", got)
	}
	if err := f.d.ResetFeed(f.ctx, f.s.DB); err != nil {
		t.Fatal(err)
	}
	if items, err := f.d.ReadFeed(f.ctx, f.s.DB, driver.FeedRead{OrgID: "org_a", Limit: 10}); err != nil || len(items) != 0 {
		t.Fatalf("feed after reset %+v (%v)", items, err)
	}
}

func testReadFeed(t *testing.T, f *webhookFixture) {
	var feed []driver.FeedRow
	for i, typ := range []string{"lead.created", "deal.won", "leads_x.created", "lead.updated", "deal.created"} {
		feed = append(feed, driver.FeedRow{Position: int64(i + 1), EventID: fmt.Sprint("evt_", i), OrgID: "org_a", Type: typ, OccurredAt: past(0), Payload: typ})
	}
	feed = append(feed, driver.FeedRow{Position: 9, EventID: "evt_b", OrgID: "org_b", Type: "lead.created", OccurredAt: past(0), Payload: "b"})
	if err := f.d.InsertFeedAndDeliveries(f.ctx, f.s.DB, feed, nil); err != nil {
		t.Fatal(err)
	}
	read := func(p driver.FeedRead) []string {
		t.Helper()
		p.OrgID = "org_a"
		items, err := f.d.ReadFeed(f.ctx, f.s.DB, p)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, it := range items {
			out = append(out, it.Payload)
		}
		return out
	}
	if got := read(driver.FeedRead{Limit: 10}); len(got) != 5 {
		t.Fatalf("unfiltered: %v", got)
	}
	// "lead." is plain text: leads_x does not match, nor would a LIKE wildcard.
	if got := read(driver.FeedRead{Limit: 10, Exact: []string{"deal.won"}, Prefixes: []string{"lead."}}); !slices.Equal(got, []string{"lead.created", "deal.won", "lead.updated"}) {
		t.Fatalf("filtered: %v", got)
	}
	if got := read(driver.FeedRead{Limit: 1, After: 1, Prefixes: []string{"lead."}}); !slices.Equal(got, []string{"lead.updated"}) {
		t.Fatalf("after 1, limit 1: %v", got)
	}
}

func testListDeliveries(t *testing.T, f *webhookFixture) {
	w := f.webhook("org_a", "*")
	same := past(time.Minute)
	ids := f.deliveries(w, past(time.Hour), same, same, same, past(time.Second))
	f.exec(`UPDATE webhook_deliveries SET status = 'failed' WHERE id = $1`, ids[2])
	var seen []string
	var after *driver.ListAfter
	for {
		rows, err := f.d.ListDeliveries(f.ctx, f.s.DB, driver.DeliveryList{OrgID: "org_a", WebhookID: w.ID, Limit: 2, After: after})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			seen = append(seen, r.ID)
		}
		if len(rows) < 2 {
			break
		}
		last := rows[len(rows)-1]
		after = &driver.ListAfter{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	want := []string{ids[4], ids[3], ids[2], ids[1], ids[0]} // newest first, then by id
	if !slices.Equal(seen, want) {
		t.Fatalf("pages %v, want %v", seen, want)
	}
	failed, err := f.d.ListDeliveries(f.ctx, f.s.DB, driver.DeliveryList{OrgID: "org_a", WebhookID: w.ID, Status: "failed", Limit: 10})
	if err != nil || len(failed) != 1 || failed[0].ID != ids[2] {
		t.Fatalf("failed ones %+v (%v)", failed, err)
	}
	if other, err := f.d.ListDeliveries(f.ctx, f.s.DB, driver.DeliveryList{OrgID: "org_b", WebhookID: w.ID, Limit: 10}); err != nil || len(other) != 0 {
		t.Fatalf("another organization's deliveries %+v (%v)", other, err)
	}
}
