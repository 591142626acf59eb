// Package driver is the seam between the query side of SalesOS and the SQL
// database it runs on: read models, checkpoints, webhook subscriptions,
// deliveries and their leases, the event feed, idempotency keys.
//
// It follows River's riverdriver: the interfaces here are small and named
// for what they do; each database has one implementation in a package of
// its own (pgdriver for PostgreSQL, sqlitedriver for the embedded SQLite
// file) that is thin SQL and nothing else; the rules (retry schedules,
// fairness, version guards, what a record looks like) stay with the
// callers. The application picks the implementation once, when it opens
// the database (app.Database.Driver); outside the driver packages no code
// asks which database it runs on.
//
// Every operation is tested on every implementation by one shared suite,
// drivertest, so that a dialect bug names the operation that differs.
package driver

import (
	"context"
	"database/sql"

	"github.com/jmoiron/sqlx"
)

// Executor runs statements: a *sqlx.DB, or a *sqlx.Tx when the operation is
// part of a caller's transaction (a projection's batch, a claim).
type Executor interface {
	sqlx.ExtContext
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

// Driver is everything the query side stores, on one database.
type Driver interface {
	// Name is "postgres" or "sqlite".
	Name() string

	Webhooks
	Projections
	Idempotency
}
