package pgdriver

import (
	"context"
	"database/sql"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/driver/sqlshared"
)

// LockCheckpoint implements driver.Checkpoints: FOR UPDATE holds the row
// until tx ends, so even two runners that both believe they lead cannot
// apply a batch twice, and a rebuild waits for the batch being applied.
func (Driver) LockCheckpoint(ctx context.Context, tx *sqlx.Tx, name string) (driver.Checkpoint, error) {
	var cp driver.Checkpoint
	if err := sqlshared.CreateCheckpoint(ctx, tx, name); err != nil {
		return cp, err
	}
	err := tx.GetContext(ctx, &cp, `SELECT position, generation FROM projection_checkpoints WHERE name = $1 FOR UPDATE`, name)
	return cp, err
}

// TryLeaderLock implements driver.LeaderLocks with a session-level
// advisory lock, keyed by the schema too so that schemas sharing a server
// (tests, tenants) do not contend. The lock lives on a dedicated
// connection and goes away with it, so a crashed instance frees its
// projections at once.
func (Driver) TryLeaderLock(ctx context.Context, db *sqlx.DB, name string) (*sql.Conn, bool, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, false, err
	}
	var ok bool
	err = conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock(hashtext(current_schema() || ':salesos:projection:' || $1))`, name).Scan(&ok)
	if err != nil || !ok {
		conn.Close()
		return nil, false, err
	}
	return conn, true, nil
}

// ReleaseLeaderLock implements driver.LeaderLocks. Closing the connection
// would return it to the pool with the lock still held; it is unlocked
// explicitly first.
func (Driver) ReleaseLeaderLock(ctx context.Context, conn *sql.Conn, name string) error {
	if conn == nil {
		return nil
	}
	_, err := conn.ExecContext(ctx, `SELECT pg_advisory_unlock(hashtext(current_schema() || ':salesos:projection:' || $1))`, name)
	conn.Close()
	return err
}

// BeginProjectionBatch implements driver.ProjectionBatches: it makes the
// transaction plan each statement with its actual parameters. pgx caches
// prepared statements per connection, and PostgreSQL may settle on a
// generic plan made while a table was empty (after a TRUNCATE, or before
// the first ANALYZE): for "id = ANY($1)" that is a scan of the whole table
// on every batch. Batch statements are few and heavy, so planning them each
// time is cheap; simple reads keep their cached plans.
func (Driver) BeginProjectionBatch(ctx context.Context, tx *sqlx.Tx) error {
	_, err := tx.ExecContext(ctx, `SELECT set_config('plan_cache_mode', 'force_custom_plan', true)`)
	return err
}

// EmptyReadModel implements driver.ProjectionBatches with TRUNCATE.
func (Driver) EmptyReadModel(ctx context.Context, tx *sqlx.Tx, table string) error {
	_, err := tx.ExecContext(ctx, `TRUNCATE `+table)
	return err
}
