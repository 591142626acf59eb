package webhooks

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/internal/dialect"
)

type outcomeRow struct {
	ID            string
	Status        string
	Attempts      int
	NextAttemptAt *time.Time
	StatusCode    *int
	Error         *string
	At            time.Time
	DurationMS    float64
	Response      *string
	Delivered     bool
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
	rows := make([]outcomeRow, len(batch))
	for i, r := range batch {
		next, _ := d.policy.Next(DeliveryState{Status: StatusPending, Attempts: r.d.Attempts}, EndpointState{}, r.outcome, time.Now().UTC())
		o := outcomeRow{
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
	var kept map[string]bool
	if dialect.IsSQLite(tx) {
		kept, err = recordAttemptsSQLite(ctx, tx, rows, d.cfg.Owner, now)
	} else {
		kept, err = recordAttemptsPostgres(ctx, tx, rows, d.cfg.Owner)
	}
	if err != nil {
		return fmt.Errorf("record attempts: %w", err)
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
	// webhooks, so two recorders cannot deadlock on each other; NO KEY
	// UPDATE, so the fan-out's foreign-key checks (KEY SHARE) on the same
	// webhooks neither wait for us nor make us wait.
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
	in, arg, err := dialect.InList(tx, "id", 1, ids)
	if err != nil {
		return err
	}
	alsoFailing, failingArg, err := dialect.InList(tx, "id", 2, failing)
	if err != nil {
		return err
	}
	lock := ` ORDER BY id FOR NO KEY UPDATE`
	if dialect.IsSQLite(tx) {
		lock = ` ORDER BY id`
	}
	var states []struct {
		ID         string     `db:"id"`
		Active     bool       `db:"active"`
		Failures   int        `db:"consecutive_failures"`
		ProbeAfter *time.Time `db:"probe_after"`
	}
	if err := tx.SelectContext(ctx, &states, `SELECT id, active AND deleted_at IS NULL AS active, consecutive_failures, probe_after
		FROM webhooks WHERE `+in+` AND (consecutive_failures <> 0 OR `+alsoFailing+`)`+lock, arg, failingArg); err != nil {
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
			if err := pauseIfInactive(ctx, tx, id, now); err != nil {
				return err
			}
		}
		if sameEndpointState(e, before[id]) {
			continue
		}
		switchedOff := e.DeactivatedAt != nil
		if _, err := tx.ExecContext(ctx, `
			UPDATE webhooks SET consecutive_failures = $2, probe_after = $6,
				active = CASE WHEN $3 THEN false ELSE active END,
				deactivated_at = CASE WHEN $3 THEN $4 ELSE deactivated_at END,
				deactivation_reason = CASE WHEN $3 THEN $5 ELSE deactivation_reason END,
				updated_at = $4
			WHERE id = $1`, id, e.ConsecutiveFailures, switchedOff, now, reason, e.ProbeAfter); err != nil {
			return fmt.Errorf("update webhook %s: %w", id, err)
		}
		if switchedOff {
			if err := pauseIfInactive(ctx, tx, id, now); err != nil {
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

// recordAttemptsPostgres logs the attempts and updates their deliveries in
// one statement, and returns the deliveries it updated: an outcome only
// changes a delivery whose lease this dispatcher still holds; the attempt
// is logged either way.
func recordAttemptsPostgres(ctx context.Context, tx *sqlx.Tx, rows []outcomeRow, owner string) (map[string]bool, error) {
	if err := customPlans(ctx, tx); err != nil {
		return nil, err
	}
	n := len(rows)
	var (
		ids, statuses   = make([]string, n), make([]string, n)
		attempts        = make([]int32, n)
		nexts           = make([]*time.Time, n)
		codes           = make([]*int32, n)
		errs, responses = make([]*string, n), make([]*string, n)
		ats             = make([]time.Time, n)
		durations       = make([]float64, n)
		delivered       = make([]bool, n)
	)
	for i, o := range rows {
		ids[i], statuses[i], attempts[i], nexts[i] = o.ID, o.Status, int32(o.Attempts), o.NextAttemptAt
		if o.StatusCode != nil {
			c := int32(*o.StatusCode)
			codes[i] = &c
		}
		errs[i], responses[i], ats[i], durations[i], delivered[i] = o.Error, o.Response, o.At, o.DurationMS, o.Delivered
	}
	// Parallel arrays, and "d.id = ANY($1)" so the deliveries are reached
	// through their primary key whatever the table's size.
	var updated []string
	err := tx.SelectContext(ctx, &updated, `
		WITH o AS (
			SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[], $5::int[], $6::text[],
				$7::timestamptz[], $8::double precision[], $9::text[], $10::bool[])
				AS x(id, status, attempts, next_attempt_at, status_code, error, at, duration_ms, response, delivered)
		), ins AS (
			INSERT INTO webhook_attempts (delivery_id, attempted_at, status_code, duration_ms, error, response_excerpt)
			SELECT id, at, status_code, duration_ms, error, response FROM o
		)
		UPDATE webhook_deliveries d SET
			status = o.status, attempts = o.attempts, next_attempt_at = o.next_attempt_at,
			last_status_code = o.status_code, last_error = o.error,
			delivered_at = CASE WHEN o.delivered THEN o.at ELSE d.delivered_at END,
			lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
		FROM o WHERE d.id = o.id AND d.id = ANY($1) AND d.lease_owner = $11
		RETURNING d.id`,
		ids, statuses, attempts, nexts, codes, errs, ats, durations, responses, delivered, owner)
	if err != nil {
		return nil, err
	}
	kept := make(map[string]bool, len(updated))
	for _, id := range updated {
		kept[id] = true
	}
	return kept, nil
}

// recordAttemptsSQLite does what recordAttemptsPostgres does with two
// prepared statements run per outcome (no unnest in SQLite; in-process
// statements are cheap).
func recordAttemptsSQLite(ctx context.Context, tx *sqlx.Tx, rows []outcomeRow, owner string, now time.Time) (map[string]bool, error) {
	logAttempt, err := tx.PrepareContext(ctx, `INSERT INTO webhook_attempts (delivery_id, attempted_at, status_code, duration_ms, error, response_excerpt)
		VALUES ($1, $2, $3, $4, $5, $6)`)
	if err != nil {
		return nil, err
	}
	defer logAttempt.Close()
	update, err := tx.PrepareContext(ctx, `UPDATE webhook_deliveries SET
			status = $2, attempts = $3, next_attempt_at = $4, last_status_code = $5, last_error = $6,
			delivered_at = COALESCE($7, delivered_at),
			lease_owner = NULL, lease_expires_at = NULL, updated_at = $8
		WHERE id = $1 AND lease_owner = $9`)
	if err != nil {
		return nil, err
	}
	defer update.Close()
	kept := make(map[string]bool, len(rows))
	for _, o := range rows {
		if _, err := logAttempt.ExecContext(ctx, o.ID, o.At, o.StatusCode, o.DurationMS, o.Error, o.Response); err != nil {
			return nil, err
		}
		var deliveredAt *time.Time
		if o.Delivered {
			deliveredAt = &o.At
		}
		res, err := update.ExecContext(ctx, o.ID, o.Status, o.Attempts, o.NextAttemptAt, o.StatusCode, o.Error, deliveredAt, now, owner)
		if err != nil {
			return nil, err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			kept[o.ID] = true
		}
	}
	return kept, nil
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
func pauseIfInactive(ctx context.Context, tx *sqlx.Tx, webhookID string, now time.Time) error {
	_, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET next_attempt_at = NULL, updated_at = $2
		WHERE webhook_id = $1 AND status = 'pending' AND lease_owner IS NULL AND next_attempt_at IS NOT NULL
		  AND EXISTS (SELECT 1 FROM webhooks w WHERE w.id = $1 AND NOT (w.active AND w.deleted_at IS NULL))`, webhookID, now)
	if err != nil {
		return fmt.Errorf("pause deliveries of %s: %w", webhookID, err)
	}
	return nil
}
