package sqlshared

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
)

const parkedColumns = `projection, position, stream_id, event_id, event_type, error, attempts, first_attempt_at, last_attempt_at`

// Park implements driver.ParkedEvents. A redelivered event counts its
// attempts on top of those already stored.
func (Statements) Park(ctx context.Context, tx *sqlx.Tx, events []driver.ParkedEvent) error {
	if len(events) == 0 {
		return nil
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO projection_parked_events (`+parkedColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
		ON CONFLICT (projection, position) DO UPDATE SET error = excluded.error,
			attempts = projection_parked_events.attempts + excluded.attempts, last_attempt_at = excluded.last_attempt_at`)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, e := range events {
		if _, err := st.ExecContext(ctx, e.Projection, int64(e.Position), e.StreamID, e.EventID, e.EventType,
			e.Error, e.Attempts, e.LastAttemptAt); err != nil {
			return fmt.Errorf("park event %d: %w", e.Position, err)
		}
	}
	return nil
}

// ListParked implements driver.ParkedEvents.
func (Statements) ListParked(ctx context.Context, e driver.Executor, projection string) ([]driver.ParkedEvent, error) {
	var out []driver.ParkedEvent
	err := sqlx.SelectContext(ctx, e, &out, `SELECT `+parkedColumns+` FROM projection_parked_events
		WHERE $1 = '' OR projection = $1 ORDER BY projection, position`, projection)
	for i := range out {
		out[i].FirstAttemptAt, out[i].LastAttemptAt = out[i].FirstAttemptAt.UTC(), out[i].LastAttemptAt.UTC()
	}
	return out, err
}

// ListParkedStream implements driver.ParkedEvents.
func (Statements) ListParkedStream(ctx context.Context, e driver.Executor, projection, stream string) ([]driver.ParkedEvent, error) {
	var rows []driver.ParkedEvent
	err := sqlx.SelectContext(ctx, e, &rows, `SELECT `+parkedColumns+` FROM projection_parked_events
		WHERE projection = $1 AND stream_id = $2 ORDER BY position`, projection, stream)
	return rows, err
}

// HeldStreams implements driver.ParkedEvents.
func (Statements) HeldStreams(ctx context.Context, e driver.Executor, projection string) (map[string]uint64, error) {
	var rows []struct {
		Stream string `db:"stream_id"`
		First  int64  `db:"first"`
	}
	if err := sqlx.SelectContext(ctx, e, &rows, `SELECT stream_id, min(position) AS first FROM projection_parked_events
		WHERE projection = $1 GROUP BY stream_id`, projection); err != nil {
		return nil, err
	}
	out := make(map[string]uint64, len(rows))
	for _, r := range rows {
		out[r.Stream] = uint64(r.First)
	}
	return out, nil
}

// CountParked implements driver.ParkedEvents.
func (Statements) CountParked(ctx context.Context, e driver.Executor) (map[string]int64, error) {
	var rows []struct {
		Projection string `db:"projection"`
		N          int64  `db:"n"`
	}
	if err := sqlx.SelectContext(ctx, e, &rows, `SELECT projection, count(*) AS n FROM projection_parked_events GROUP BY projection`); err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(rows))
	for _, r := range rows {
		out[r.Projection] = r.N
	}
	return out, nil
}

// RecordParkedAttempt implements driver.ParkedEvents.
func (Statements) RecordParkedAttempt(ctx context.Context, tx *sqlx.Tx, projection string, position uint64, errText string, at time.Time) error {
	_, err := tx.ExecContext(ctx, `UPDATE projection_parked_events SET attempts = attempts + 1, error = $3, last_attempt_at = $4
				WHERE projection = $1 AND position = $2`, projection, int64(position), errText, at)
	return err
}

// HoldBackParked implements driver.ParkedEvents.
func (Statements) HoldBackParked(ctx context.Context, tx *sqlx.Tx, projection, stream string, position uint64, errText string) error {
	_, err := tx.ExecContext(ctx, `UPDATE projection_parked_events SET error = $4
				WHERE projection = $1 AND stream_id = $2 AND position > $3 AND attempts = 0`,
		projection, stream, int64(position), errText)
	return err
}

// Unpark implements driver.ParkedEvents.
func (Statements) Unpark(ctx context.Context, tx *sqlx.Tx, projection string, position uint64) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM projection_parked_events WHERE projection = $1 AND position = $2`,
		projection, int64(position))
	return err
}

// UnparkAll implements driver.ParkedEvents.
func (Statements) UnparkAll(ctx context.Context, tx *sqlx.Tx, projection string) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM projection_parked_events WHERE projection = $1`, projection)
	return err
}
