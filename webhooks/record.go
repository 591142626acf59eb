package webhooks

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
)

// record writes outcomes in batches: one transaction for whatever results
// have arrived, so recording keeps up with many concurrent attempts.
func (d *Dispatcher) record() {
	for first := range d.results {
		batch := []result{first}
	drain:
		for len(batch) < 256 {
			select {
			case r, ok := <-d.results:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		for {
			err := d.recordBatch(batch)
			if err == nil {
				d.succeeded("record")
				d.forget(batch)
				select {
				case d.recorded <- struct{}{}:
				default:
				}
				break
			}
			select {
			case <-d.interrupted:
				// Shutting down: the leases run out and another dispatcher
				// sends these deliveries again (same webhook-id).
				d.cfg.Logger.Error("webhooks: outcomes not recorded at shutdown; the deliveries will be sent again", "error", err, "count", len(batch))
				d.forget(batch)
				batch = nil
			default:
				// The database is away. Keep the outcomes and try again:
				// the leases keep other dispatchers off these deliveries
				// meanwhile (renewals fail too, so no new attempt starts
				// for them here).
				d.failed("record", err)
				d.cfg.Logger.Error("webhooks: recording attempts failed; retrying", "error", err, "count", len(batch))
				t := time.NewTimer(time.Second)
				select {
				case <-t.C:
				case <-d.interrupted:
				}
				t.Stop()
				continue
			}
			break
		}
		if d.cfg.OnOutcome != nil {
			for _, r := range batch {
				d.cfg.OnOutcome(d.outcomeLabel(r))
			}
		}
	}
}

func (d *Dispatcher) outcomeLabel(r result) string {
	switch r.outcome {
	case Delivered:
		return StatusDelivered
	case Interrupted:
		return "interrupted"
	}
	if r.d.Attempts < len(d.cfg.Schedule) {
		return "retry"
	}
	return StatusFailed
}

// recordBatch stores a batch of outcomes in one transaction: every attempt
// in the log, and for each delivery whose lease this dispatcher still
// holds, the state Policy.Next gives. Only those outcomes move their
// webhook's count: an attempt that ended after another dispatcher took the
// delivery over is history, not news about the endpoint (the other
// dispatcher's attempt will be counted).
func (d *Dispatcher) recordBatch(batch []result) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows := make([]driver.AttemptOutcome, len(batch))
	for i, r := range batch {
		next, _ := d.policy.Next(DeliveryState{Status: StatusPending, Attempts: r.d.Attempts}, EndpointState{}, r.outcome, time.Now().UTC())
		o := driver.AttemptOutcome{
			ID: r.d.ID, Status: next.Status, Attempts: next.Attempts, NextAttemptAt: next.NextAttemptAt,
			At: r.at.UTC(), DurationMS: float64(r.attempt.Duration.Microseconds()) / 1000, Delivered: r.outcome == Delivered,
		}
		if r.attempt.StatusCode != 0 {
			sc := r.attempt.StatusCode
			o.StatusCode = &sc
		}
		if r.attempt.ResponseExcerpt != "" {
			ex := r.attempt.ResponseExcerpt
			o.Response = &ex
		}
		if r.outcome != Delivered {
			msg := failureMessage(r.attempt)
			o.Error = &msg
		}
		rows[i] = o
	}
	tx, err := d.db.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	now := dbNow()
	if err := d.drv.PrepareRecord(ctx, tx); err != nil {
		return fmt.Errorf("record attempts: %w", err)
	}
	// An outcome only changes a delivery whose lease this dispatcher still
	// holds; the attempt is logged either way.
	keptIDs, err := d.drv.RecordAttempts(ctx, tx, d.cfg.Owner, now, rows)
	if err != nil {
		return fmt.Errorf("record attempts: %w", err)
	}
	kept := make(map[string]bool, len(keptIDs))
	for _, id := range keptIDs {
		kept[id] = true
	}
	if err := d.recordEndpoints(ctx, tx, batch, kept, now); err != nil {
		return err
	}
	return tx.Commit()
}

// recordEndpoints folds the batch's outcomes, in the order they arrived,
// into each webhook's state under its row lock, and stores the result.
func (d *Dispatcher) recordEndpoints(ctx context.Context, tx *sqlx.Tx, batch []result, kept map[string]bool, now time.Time) error {
	var ids, failing []string
	seen, failed := map[string]bool{}, map[string]bool{}
	for _, r := range batch {
		if !kept[r.d.ID] || r.outcome == Interrupted {
			continue
		}
		if !seen[r.d.WebhookID] {
			seen[r.d.WebhookID] = true
			ids = append(ids, r.d.WebhookID)
		}
		if r.outcome != Delivered && !failed[r.d.WebhookID] {
			failed[r.d.WebhookID] = true
			failing = append(failing, r.d.WebhookID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	// Lock in id order, like every other transaction that locks several
	// webhooks, so two recorders cannot deadlock on each other.
	//
	// Only the webhooks whose state these outcomes change are locked: those
	// with a failure among them, and those with a count to reset. Successes
	// on a webhook whose count is already zero change nothing (see
	// Policy.Next), and a healthy webhook is all of those; locking it
	// anyway made every claim that ran meanwhile skip it (SKIP LOCKED), so
	// the healthy endpoints waited for the recorder all the time. A failure
	// committed by another recorder after this statement's snapshot is
	// concurrent with our successes, and counting it after them is one of
	// the orders they may have happened in.
	sort.Strings(ids)
	states, err := d.drv.LockWebhookStates(ctx, tx, ids, failing)
	if err != nil {
		return err
	}
	endpoints := make(map[string]EndpointState, len(states))
	before := make(map[string]EndpointState, len(states))
	for _, st := range states {
		e := EndpointState{Active: st.Active, ConsecutiveFailures: st.Failures, ProbeAfter: st.ProbeAfter}
		endpoints[st.ID], before[st.ID] = e, e
	}
	for _, r := range batch {
		e, ok := endpoints[r.d.WebhookID]
		if !ok || !kept[r.d.ID] {
			continue
		}
		_, endpoints[r.d.WebhookID] = d.policy.Next(DeliveryState{Attempts: r.d.Attempts}, e, r.outcome, now)
	}
	reason := fmt.Sprintf("%d consecutive failed delivery attempts", d.cfg.DeactivateAfter)
	for _, id := range ids {
		e, ok := endpoints[id]
		if !ok {
			continue
		}
		if !e.Active {
			// Switched off now, or before these attempts ended: their
			// deliveries wait for a reactivation.
			if err := pauseIfInactive(ctx, d.drv, tx, id, now); err != nil {
				return err
			}
		}
		if sameEndpointState(e, before[id]) {
			continue
		}
		switchedOff := e.DeactivatedAt != nil
		if err := d.drv.UpdateWebhookState(ctx, tx, driver.WebhookStateUpdate{
			ID: id, Failures: e.ConsecutiveFailures, ProbeAfter: e.ProbeAfter, SwitchOff: switchedOff, Reason: reason, Now: now,
		}); err != nil {
			return fmt.Errorf("update webhook %s: %w", id, err)
		}
		if switchedOff {
			if err := pauseIfInactive(ctx, d.drv, tx, id, now); err != nil {
				return err
			}
		}
	}
	return nil
}

func sameEndpointState(a, b EndpointState) bool {
	return a.Active == b.Active && a.ConsecutiveFailures == b.ConsecutiveFailures &&
		sameTimePtr(a.DeactivatedAt, b.DeactivatedAt) && sameTimePtr(a.ProbeAfter, b.ProbeAfter)
}

func sameTimePtr(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

func failureMessage(a Attempt) string {
	if a.Err != nil {
		return a.Err.Error()
	}
	return fmt.Sprintf("endpoint answered %d %s", a.StatusCode, http.StatusText(a.StatusCode))
}

// pauseIfInactive takes the pending deliveries of a webhook that is not
// active off the schedule (next_attempt_at NULL) so dispatchers never look
// at them; reactivation puts them back (Store.Update).
func pauseIfInactive(ctx context.Context, drv driver.Webhooks, e driver.Executor, webhookID string, now time.Time) error {
	if err := drv.PauseInactive(ctx, e, webhookID, now); err != nil {
		return fmt.Errorf("pause deliveries of %s: %w", webhookID, err)
	}
	return nil
}
