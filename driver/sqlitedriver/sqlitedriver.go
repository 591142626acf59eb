// Package sqlitedriver is the SQLite implementation of driver.Driver, for
// the embedded default (see eventstore/sqlite.OpenDB for how the file is
// opened: one writer connection, a read-only pool).
package sqlitedriver

import (
	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/driver/internal/webhooksql"
	"github.com/salesos/salesos/driver/sqlshared"
)

// Driver implements driver.Driver on SQLite (database/sql driver
// "sqlite", modernc.org/sqlite). It holds no state: every operation runs
// on the Executor it is given.
type Driver struct {
	// The webhook statements both databases share.
	webhooksql.Shared[webhookDialect]
	// The projection and idempotency statements that are the same on
	// every database.
	sqlshared.Statements
}

var _ driver.Driver = Driver{}

// New returns the SQLite driver.
func New() Driver { return Driver{} }

// Name implements driver.Driver.
func (Driver) Name() string { return "sqlite" }
