package drivertest

// The dispatcher's operations: claim with a lease, renew, record, lock
// the states that change.

import (
	"slices"
	"testing"
	"time"

	"github.com/salesos/salesos/driver"
)

func testListDueWebhooks(t *testing.T, f *webhookFixture) {
	oldest, middle, leased, probing, skipped, off, future := f.webhook("org_a", "*"), f.webhook("org_a", "*"), f.webhook("org_a", "*"),
		f.webhook("org_a", "*"), f.webhook("org_a", "*"), f.webhook("org_a", "*"), f.webhook("org_a", "*")
	f.deliveries(oldest, past(3*time.Hour))
	f.deliveries(middle, past(2*time.Hour), past(4*time.Hour))
	f.exec(`UPDATE webhook_deliveries SET status = 'delivered' WHERE webhook_id = $1 AND next_attempt_at < $2`, middle.ID, past(3*time.Hour))
	f.exec(`UPDATE webhook_deliveries SET lease_owner = 'x', lease_expires_at = $2 WHERE id = $1`, f.deliveries(leased, past(5*time.Hour))[0], time.Now().UTC().Add(time.Hour))
	f.deliveries(probing, past(5*time.Hour))
	f.exec(`UPDATE webhooks SET probe_after = $2 WHERE id = $1`, probing.ID, time.Now().UTC().Add(time.Hour))
	f.deliveries(skipped, past(5*time.Hour))
	f.deliveries(off, past(5*time.Hour))
	f.exec(`UPDATE webhooks SET active = false WHERE id = $1`, off.ID)
	f.deliveries(future, time.Now().UTC().Add(time.Hour))

	due, err := f.d.ListDueWebhooks(f.ctx, f.s.DB, past(0), 10, []string{skipped.ID})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range due {
		got = append(got, h.ID)
	}
	if !slices.Equal(got, []string{oldest.ID, middle.ID}) {
		t.Fatalf("due %v, want %v (oldest waiting first)", got, []string{oldest.ID, middle.ID})
	}
	if due[0].URL != oldest.URL || due[0].Secret != "s3cret" {
		t.Fatalf("due webhook %+v", due[0])
	}
	// An expired lease, a probe time passed, no skip list: due again.
	f.exec(`UPDATE webhook_deliveries SET lease_expires_at = $2 WHERE webhook_id = $1`, leased.ID, past(time.Minute))
	f.exec(`UPDATE webhooks SET probe_after = $2, consecutive_failures = 3 WHERE id = $1`, probing.ID, past(time.Minute))
	if due, err = f.d.ListDueWebhooks(f.ctx, f.s.DB, past(0), 3, nil); err != nil || len(due) != 3 {
		t.Fatalf("due %+v (%v)", due, err)
	}
	for _, h := range due {
		if h.ID == probing.ID && (h.Failures != 3 || h.ProbeAfter == nil) {
			t.Fatalf("probing webhook %+v", h)
		}
	}
}

func testLeaseDue(t *testing.T, f *webhookFixture) {
	a, b := f.webhook("org_a", "*"), f.webhook("org_a", "*")
	aIDs := f.deliveries(a, past(3*time.Hour), past(2*time.Hour), past(time.Hour))
	bIDs := f.deliveries(b, past(3*time.Hour), time.Now().UTC().Add(time.Hour))
	got := f.lease(driver.LeaseDue{Now: past(0), Owner: "me", Lease: time.Minute,
		Quotas: []driver.WebhookQuota{{WebhookID: a.ID, Quota: 2}, {WebhookID: b.ID, Quota: 5}}})
	want := []string{aIDs[0], aIDs[1], bIDs[0]} // a's two oldest, and b's one due
	slices.Sort(want)
	if !slices.Equal(leasedIDs(got), want) {
		t.Fatalf("leased %v, want %v", leasedIDs(got), want)
	}
	var owners []struct {
		Owner   *string    `db:"lease_owner"`
		Expires *time.Time `db:"lease_expires_at"`
	}
	if err := f.s.DB.Select(&owners, `SELECT lease_owner, lease_expires_at FROM webhook_deliveries WHERE lease_owner IS NOT NULL`); err != nil || len(owners) != 3 {
		t.Fatalf("leases %+v (%v)", owners, err)
	}
	for _, o := range owners {
		if *o.Owner != "me" || o.Expires.Before(past(-30*time.Second)) {
			t.Fatalf("lease %s until %v, want me for about a minute", *o.Owner, o.Expires)
		}
	}
	// Leased rows are not leased again.
	if again := f.lease(driver.LeaseDue{Now: past(0), Owner: "other", Lease: time.Minute,
		Quotas: []driver.WebhookQuota{{WebhookID: a.ID, Quota: 5}}}); !slices.Equal(leasedIDs(again), []string{aIDs[2]}) {
		t.Fatalf("leased again %v, want only %s", leasedIDs(again), aIDs[2])
	}
}

func testCountForeignLeases(t *testing.T, f *webhookFixture) {
	a, b, c := f.webhook("org_a", "*"), f.webhook("org_a", "*"), f.webhook("org_a", "*")
	ids := f.deliveries(a, past(time.Hour), past(time.Hour), past(time.Hour), past(time.Hour))
	bIDs := f.deliveries(b, past(time.Hour))
	f.deliveries(c, past(time.Hour))
	later, earlier := time.Now().UTC().Add(time.Hour), past(time.Minute)
	f.exec(`UPDATE webhook_deliveries SET lease_owner = 'other', lease_expires_at = $1 WHERE id IN ($2, $3, $4)`, later, ids[0], ids[1], bIDs[0])
	f.exec(`UPDATE webhook_deliveries SET lease_owner = 'me', lease_expires_at = $1 WHERE id = $2`, later, ids[2])
	f.exec(`UPDATE webhook_deliveries SET lease_owner = 'gone', lease_expires_at = $1 WHERE id = $2`, earlier, ids[3])
	got, err := f.d.CountForeignLeases(f.ctx, f.s.DB, past(0), "me", []string{a.ID, c.ID})
	if err != nil {
		t.Fatal(err)
	}
	if got[a.ID] != 2 || got[b.ID] != 0 || got[c.ID] != 0 {
		t.Fatalf("foreign leases %v, want 2 on %s only", got, a.ID)
	}
}

func testRenewLeases(t *testing.T, f *webhookFixture) {
	w := f.webhook("org_a", "*")
	ids := f.deliveries(w, past(time.Hour), past(time.Hour), past(time.Hour))
	soon := time.Now().UTC().Add(time.Second).Truncate(time.Microsecond)
	f.exec(`UPDATE webhook_deliveries SET lease_owner = 'me', lease_expires_at = $1 WHERE id IN ($2, $3)`, soon, ids[0], ids[1])
	f.exec(`UPDATE webhook_deliveries SET status = 'delivered' WHERE id = $1`, ids[1])
	f.exec(`UPDATE webhook_deliveries SET lease_owner = 'other', lease_expires_at = $1 WHERE id = $2`, soon, ids[2])
	renewed, err := f.d.RenewLeases(f.ctx, f.s.DB, "me", ids, past(0), time.Hour)
	if err != nil || !slices.Equal(renewed, ids[:1]) {
		t.Fatalf("renewed %v (%v), want %v: own, pending leases only", renewed, err, ids[:1])
	}
	var until time.Time
	if err := f.s.DB.Get(&until, `SELECT lease_expires_at FROM webhook_deliveries WHERE id = $1`, ids[0]); err != nil || until.Before(soon.Add(30*time.Minute)) {
		t.Fatalf("renewed until %v (%v)", until, err)
	}
	if err := f.s.DB.Get(&until, `SELECT lease_expires_at FROM webhook_deliveries WHERE id = $1`, ids[2]); err != nil || !until.Equal(soon) {
		t.Fatalf("another owner's lease moved to %v (%v)", until, err)
	}
}

func testRecordAttempts(t *testing.T, f *webhookFixture) {
	w := f.webhook("org_a", "*")
	ids := f.deliveries(w, past(time.Hour), past(time.Hour))
	f.lease(driver.LeaseDue{Now: past(0), Owner: "me", Lease: time.Minute, Quotas: []driver.WebhookQuota{{WebhookID: w.ID, Quota: 2}}})
	f.exec(`UPDATE webhook_deliveries SET lease_owner = 'heir' WHERE id = $1`, ids[1]) // taken over
	at, next, code, msg := past(time.Second), time.Now().UTC().Add(time.Minute).Truncate(time.Microsecond), 503, "endpoint answered 503"
	tx := f.s.DB.MustBegin()
	defer tx.Rollback()
	if err := f.d.PrepareRecord(f.ctx, tx); err != nil {
		t.Fatal(err)
	}
	kept, err := f.d.RecordAttempts(f.ctx, tx, "me", past(0), []driver.AttemptOutcome{
		{ID: ids[0], Status: "delivered", Attempts: 1, StatusCode: &code, At: at, DurationMS: 1.5, Delivered: true},
		{ID: ids[1], Status: "pending", Attempts: 1, NextAttemptAt: &next, StatusCode: &code, Error: &msg, At: at, DurationMS: 2},
	})
	if err != nil || !slices.Equal(kept, ids[:1]) {
		t.Fatalf("kept %v (%v), want %v", kept, err, ids[:1])
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	d, err := f.d.GetDelivery(f.ctx, f.s.DB, "org_a", w.ID, ids[0])
	if err != nil || d.Status != "delivered" || d.Attempts != 1 || d.DeliveredAt == nil || !d.DeliveredAt.Equal(at) {
		t.Fatalf("recorded %+v (%v)", d, err)
	}
	var owner *string
	if err := f.s.DB.Get(&owner, `SELECT lease_owner FROM webhook_deliveries WHERE id = $1`, ids[0]); err != nil || owner != nil {
		t.Fatalf("lease after recording: %v (%v)", owner, err)
	}
	if other, err := f.d.GetDelivery(f.ctx, f.s.DB, "org_a", w.ID, ids[1]); err != nil || other.Attempts != 0 || other.Status != "pending" {
		t.Fatalf("a delivery leased by another changed: %+v (%v)", other, err)
	}
	// Both attempts are logged.
	for _, id := range ids {
		attempts, err := f.d.ListAttempts(f.ctx, f.s.DB, id)
		if err != nil || len(attempts) != 1 || *attempts[0].StatusCode != 503 || !attempts[0].AttemptedAt.Equal(at) {
			t.Fatalf("attempts of %s: %+v (%v)", id, attempts, err)
		}
	}
}

func testLockWebhookStates(t *testing.T, f *webhookFixture) {
	healthy, counting, failingNow := f.webhook("org_a", "*"), f.webhook("org_a", "*"), f.webhook("org_a", "*")
	f.exec(`UPDATE webhooks SET consecutive_failures = 2 WHERE id = $1`, counting.ID)
	tx := f.s.DB.MustBegin()
	defer tx.Rollback()
	states, err := f.d.LockWebhookStates(f.ctx, tx, []string{healthy.ID, counting.ID, failingNow.ID}, []string{failingNow.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 2 || states[0].ID != counting.ID || states[0].Failures != 2 || !states[0].Active || states[1].ID != failingNow.ID {
		t.Fatalf("locked %+v, want %s and %s in id order", states, counting.ID, failingNow.ID)
	}
	now := past(0)
	if err := f.d.UpdateWebhookState(f.ctx, tx, driver.WebhookStateUpdate{ID: failingNow.ID, Failures: 10, SwitchOff: true, Reason: "10 failures", Now: now}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	off, err := f.d.GetWebhook(f.ctx, f.s.DB, "org_a", failingNow.ID)
	if err != nil || off.Active || off.ConsecutiveFailures != 10 || off.DeactivatedAt == nil || !off.DeactivatedAt.Equal(now) || *off.DeactivationReason != "10 failures" {
		t.Fatalf("switched off: %+v (%v)", off, err)
	}
}

func testPauseAndResume(t *testing.T, f *webhookFixture) {
	w := f.webhook("org_a", "*")
	ids := f.deliveries(w, past(time.Hour))
	now := past(0)
	if err := f.d.PauseInactive(f.ctx, f.s.DB, w.ID, now); err != nil {
		t.Fatal(err)
	}
	if d, _ := f.d.GetDelivery(f.ctx, f.s.DB, "org_a", w.ID, ids[0]); d.NextAttemptAt == nil {
		t.Fatal("an active webhook's delivery was paused")
	}
	if found, err := f.d.DeleteWebhook(f.ctx, f.s.DB, "org_a", w.ID, now); err != nil || !found {
		t.Fatalf("delete: %v %v", found, err)
	}
	f.exec(`UPDATE webhooks SET deleted_at = NULL WHERE id = $1`, w.ID) // still inactive
	if err := f.d.PauseInactive(f.ctx, f.s.DB, w.ID, now); err != nil {
		t.Fatal(err)
	}
	if d, _ := f.d.GetDelivery(f.ctx, f.s.DB, "org_a", w.ID, ids[0]); d.NextAttemptAt != nil {
		t.Fatalf("an inactive webhook's delivery stayed due: %+v", d)
	}
	if err := f.d.ResumePaused(f.ctx, f.s.DB, w.ID, now); err != nil {
		t.Fatal(err)
	}
	if d, _ := f.d.GetDelivery(f.ctx, f.s.DB, "org_a", w.ID, ids[0]); d.NextAttemptAt == nil || !d.NextAttemptAt.Equal(now) {
		t.Fatalf("resumed: %+v", d)
	}
}
