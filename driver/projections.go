package driver

import (
	"context"
	"database/sql"
	"time"

	"github.com/jmoiron/sqlx"
)

// Projections stores what the projections keep: their checkpoints and
// leader locks, the events they parked, and the leads and deals tables.
// Folding events, deciding what to park, retrying and catching up are the
// callers' (package projections); a driver only reads and writes rows.
type Projections interface {
	Checkpoints
	LeaderLocks
	ProjectionBatches
	ParkedEvents
	LeadRows
	DealRows
}

// Checkpoint is a projection's stored progress: the position of the last
// event applied, and the generation (bumped by every rebuild).
type Checkpoint struct {
	Position   int64 `db:"position"`
	Generation int64 `db:"generation"`
}

// Checkpoints reads and moves projection checkpoints (one row per
// projection name in projection_checkpoints).
type Checkpoints interface {
	// ReadCheckpoint returns the stored checkpoint, or the zero one when
	// the projection has none yet.
	ReadCheckpoint(ctx context.Context, e Executor, name string) (Checkpoint, error)
	// LockCheckpoint creates the checkpoint row if needed and reads it,
	// locked until tx ends.
	LockCheckpoint(ctx context.Context, tx *sqlx.Tx, name string) (Checkpoint, error)
	// AdvanceCheckpoint stores position as the last event applied.
	AdvanceCheckpoint(ctx context.Context, tx *sqlx.Tx, name string, position int64, at time.Time) error
	// RestartCheckpoint sets the position back to 0 and starts a new
	// generation.
	RestartCheckpoint(ctx context.Context, tx *sqlx.Tx, name string, at time.Time) error
}

// LeaderLocks elect one runner per projection among processes sharing the
// database.
type LeaderLocks interface {
	// TryLeaderLock tries once to take the projection's leader lock. When
	// held is true and conn is not nil, the lock lives on conn (taken from
	// db for the purpose) and dies with it: the caller keeps conn open,
	// may ping it to notice a loss, and gives it back with
	// ReleaseLeaderLock. held with a nil conn means the database needs no
	// lock (nothing to watch or release). When held is false, conn is nil.
	TryLeaderLock(ctx context.Context, db *sqlx.DB, name string) (conn *sql.Conn, held bool, err error)
	// ReleaseLeaderLock releases a lock taken by TryLeaderLock and closes
	// its connection.
	ReleaseLeaderLock(ctx context.Context, conn *sql.Conn, name string) error
}

// ProjectionBatches are the statements around a projection's batch.
type ProjectionBatches interface {
	// BeginProjectionBatch sets up a transaction that applies a batch
	// (before any other statement of it).
	BeginProjectionBatch(ctx context.Context, tx *sqlx.Tx) error
	// EmptyReadModel deletes every row of a query table, for a rebuild.
	EmptyReadModel(ctx context.Context, tx *sqlx.Tx, table string) error
	// BeginAttempt opens a savepoint inside tx.
	BeginAttempt(ctx context.Context, tx *sqlx.Tx) error
	// KeepAttempt releases the savepoint, keeping its work.
	KeepAttempt(ctx context.Context, tx *sqlx.Tx) error
	// UndoAttempt rolls the savepoint's work back, releases it and checks
	// that the database still answers.
	UndoAttempt(ctx context.Context, tx *sqlx.Tx) error
}

// ParkedEvent is an event a projection could not apply
// (projection_parked_events).
type ParkedEvent struct {
	Projection     string    `db:"projection"`
	Position       uint64    `db:"position"`
	StreamID       string    `db:"stream_id"`
	EventID        string    `db:"event_id"`
	EventType      string    `db:"event_type"`
	Error          string    `db:"error"`
	Attempts       int       `db:"attempts"` // 0: held back behind an earlier parked event of its stream
	FirstAttemptAt time.Time `db:"first_attempt_at"`
	LastAttemptAt  time.Time `db:"last_attempt_at"`
}

// ParkedEvents stores the events projections set aside.
type ParkedEvents interface {
	// Park records events; an event already parked keeps its first
	// attempt time and adds the new attempts to its count, and takes the
	// new error. Projection, Position, StreamID, EventID, EventType, Error,
	// Attempts and LastAttemptAt (the time of this attempt) are used.
	Park(ctx context.Context, tx *sqlx.Tx, events []ParkedEvent) error
	// ListParked returns the parked events of projection (of every
	// projection when it is empty), by projection and position, times in
	// UTC.
	ListParked(ctx context.Context, e Executor, projection string) ([]ParkedEvent, error)
	// ListParkedStream returns the parked events of one stream of
	// projection, by position.
	ListParkedStream(ctx context.Context, e Executor, projection, stream string) ([]ParkedEvent, error)
	// HeldStreams returns the streams of projection with parked events,
	// with the position of each one's first.
	HeldStreams(ctx context.Context, e Executor, projection string) (map[string]uint64, error)
	// CountParked returns how many events each projection has parked
	// (projections with none are absent).
	CountParked(ctx context.Context, e Executor) (map[string]int64, error)
	// RecordParkedAttempt counts one more failed attempt of a parked event,
	// with its error.
	RecordParkedAttempt(ctx context.Context, tx *sqlx.Tx, projection string, position uint64, errText string, at time.Time) error
	// HoldBackParked sets the error of the events of stream parked behind
	// position without being tried (attempts 0).
	HoldBackParked(ctx context.Context, tx *sqlx.Tx, projection, stream string, position uint64, errText string) error
	// Unpark forgets one parked event.
	Unpark(ctx context.Context, tx *sqlx.Tx, projection string, position uint64) error
	// UnparkAll forgets every parked event of projection.
	UnparkAll(ctx context.Context, tx *sqlx.Tx, projection string) error
}

// Keyset is a position in a list ordered newest first: (created_at, id)
// of the last row returned.
type Keyset struct {
	CreatedAt time.Time
	ID        string
}
