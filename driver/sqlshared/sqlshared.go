// Package sqlshared holds the statements of the query side that are the
// same on PostgreSQL and SQLite ("$1" placeholders bind by number on both,
// ON CONFLICT and RETURNING work on both, times come from Go). Both
// drivers embed Statements and declare only the operations whose SQL
// differs. The rest of the code reaches these through a driver.Driver;
// only projections.ListParked, kept for callers with no driver at hand,
// calls Statements directly.
package sqlshared

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
)

// Statements implements the operations of driver.Driver whose SQL is
// portable.
type Statements struct{}

// LeadColumns are the columns of the leads table, in the order of its
// rows' values.
const LeadColumns = `id, org_id, name, email, phone, company, title, source, status, owner_id, custom_fields, converted_deal_id, created_at, updated_at, version, deleted_at`

// DealColumns are the columns of the deals table, in the order of its
// rows' values.
const DealColumns = `id, org_id, name, amount, currency, stage, lead_id, owner_id, expected_close_date, lost_reason, custom_fields, created_at, updated_at, closed_at, version, deleted_at`

// ReadCheckpoint implements driver.Checkpoints.
func (Statements) ReadCheckpoint(ctx context.Context, e driver.Executor, name string) (driver.Checkpoint, error) {
	var cp driver.Checkpoint
	err := sqlx.GetContext(ctx, e, &cp, `SELECT position, generation FROM projection_checkpoints WHERE name = $1`, name)
	if errors.Is(err, sql.ErrNoRows) {
		return driver.Checkpoint{}, nil
	}
	return cp, err
}

// CreateCheckpoint inserts the projection's checkpoint row if it has none
// (the first half of LockCheckpoint on every driver).
func CreateCheckpoint(ctx context.Context, tx *sqlx.Tx, name string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING`, name)
	return err
}

// AdvanceCheckpoint implements driver.Checkpoints.
func (Statements) AdvanceCheckpoint(ctx context.Context, tx *sqlx.Tx, name string, position int64, at time.Time) error {
	_, err := tx.ExecContext(ctx, `UPDATE projection_checkpoints SET position = $2, updated_at = $3 WHERE name = $1`, name, position, at)
	return err
}

// RestartCheckpoint implements driver.Checkpoints.
func (Statements) RestartCheckpoint(ctx context.Context, tx *sqlx.Tx, name string, at time.Time) error {
	_, err := tx.ExecContext(ctx, `UPDATE projection_checkpoints SET position = 0, generation = generation + 1, updated_at = $2 WHERE name = $1`, name, at)
	return err
}

// BeginAttempt implements driver.ProjectionBatches.
func (Statements) BeginAttempt(ctx context.Context, tx *sqlx.Tx) error {
	_, err := tx.ExecContext(ctx, `SAVEPOINT projection_attempt`)
	return err
}

// KeepAttempt implements driver.ProjectionBatches.
func (Statements) KeepAttempt(ctx context.Context, tx *sqlx.Tx) error {
	_, err := tx.ExecContext(ctx, `RELEASE SAVEPOINT projection_attempt`)
	return err
}

// UndoAttempt implements driver.ProjectionBatches: the probe query runs
// last, so an error from any of the three says the connection is gone.
func (Statements) UndoAttempt(ctx context.Context, tx *sqlx.Tx) error {
	if _, err := tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT projection_attempt`); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `RELEASE SAVEPOINT projection_attempt`); err != nil {
		return err
	}
	var one int
	return tx.GetContext(ctx, &one, `SELECT 1`)
}

// GetLead implements driver.LeadRows.
func (Statements) GetLead(ctx context.Context, e driver.Executor, id string) (driver.LeadRow, error) {
	return Get[driver.LeadRow](ctx, e, `SELECT `+LeadColumns+` FROM leads WHERE id = $1`, id)
}

// Get reads the one row query returns.
func Get[T any](ctx context.Context, e driver.Executor, query string, args ...any) (T, error) {
	var r T
	err := sqlx.GetContext(ctx, e, &r, query, args...)
	return r, err
}

// Load reads the rows whose id is among ids with query, which binds the
// list as $1: as it is, or in the form bind gives it (nil: as it is). A
// failure says what was loaded.
func Load[T any](ctx context.Context, e driver.Executor, what, query string, ids []string, bind func([]string) (any, error)) ([]T, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	var arg any = ids
	if bind != nil {
		var err error
		if arg, err = bind(ids); err != nil {
			return nil, err
		}
	}
	var rows []T
	if err := sqlx.SelectContext(ctx, e, &rows, query, arg); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return rows, nil
}
