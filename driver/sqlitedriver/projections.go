package sqlitedriver

import (
	"context"
	"database/sql"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/driver/sqlshared"
)

// LockCheckpoint implements driver.Checkpoints. SQLite has no row locks and
// none are needed: the transaction holds the database's only write lock
// from its first statement (BEGIN IMMEDIATE on OpenDB's writer; and the
// INSERT below would take it anyway), so the checkpoint read here cannot
// change until the commit, even when another process writes the same file.
func (Driver) LockCheckpoint(ctx context.Context, tx *sqlx.Tx, name string) (driver.Checkpoint, error) {
	var cp driver.Checkpoint
	if err := sqlshared.CreateCheckpoint(ctx, tx, name); err != nil {
		return cp, err
	}
	err := tx.GetContext(ctx, &cp, `SELECT position, generation FROM projection_checkpoints WHERE name = $1`, name)
	return cp, err
}

// TryLeaderLock implements driver.LeaderLocks: it takes nothing and
// reports the lock held. SQLite has no lock that outlives a transaction and
// dies with its holder, and the write handle is a single connection that a
// held lock would pin. Leadership is only an economy anyway: correctness
// comes from the checkpoint, which a batch re-reads inside its write
// transaction (exclusive on SQLite) to skip what is already applied. So two
// runners on one file, in one process or several, both follow the log and
// one of them wastes the work of a batch the other already applied; the
// tables stay exact.
func (Driver) TryLeaderLock(context.Context, *sqlx.DB, string) (*sql.Conn, bool, error) {
	return nil, true, nil
}

// ReleaseLeaderLock implements driver.LeaderLocks; there is nothing to
// release.
func (Driver) ReleaseLeaderLock(_ context.Context, conn *sql.Conn, _ string) error {
	if conn != nil {
		return conn.Close()
	}
	return nil
}

// BeginProjectionBatch implements driver.ProjectionBatches: SQLite plans
// every statement afresh, so there is nothing to set up.
func (Driver) BeginProjectionBatch(context.Context, *sqlx.Tx) error { return nil }

// EmptyReadModel implements driver.ProjectionBatches. SQLite has no
// TRUNCATE; a DELETE without WHERE is its fast path.
func (Driver) EmptyReadModel(ctx context.Context, tx *sqlx.Tx, table string) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM `+table)
	return err
}
